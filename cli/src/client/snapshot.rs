//! `GET /v1/snapshot`: the fleet state's bytes rather than JSON.

use reqwest::Method;

use super::{Client, ClientError, decode, error_chain};

impl Client {
    /// `GET /v1/snapshot`: a consistent copy of the fleet state in the snapshot format.
    pub async fn snapshot(&self) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}/v1/snapshot", self.addr);
        let unreachable = |e: reqwest::Error| self.unreachable(error_chain(&e));
        let response = self
            .http
            .request(Method::GET, &url)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        // An error answer is JSON; `decode` turns it into the API error it carries.
        decode::<serde_json::Value>(&url, status, &bytes).and(Err(ClientError::BadResponse {
            url,
            detail: format!("HTTP {status} without an error body"),
        }))
    }
}
