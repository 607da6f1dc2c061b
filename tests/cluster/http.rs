//! Small HTTP helpers that assert what a client of the admin API sees.

use serde::de::DeserializeOwned;
use shoal_protocol::api::{LabelRequest, MachineList, MachineView};
use shoal_protocol::{Labels, MachineId};

pub async fn get<T: DeserializeOwned>(url: String) -> T {
    let response = shoal_daemon::testsuite::http_client()
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

pub async fn machines(api: &str) -> Vec<MachineView> {
    get::<MachineList>(format!("{api}/v1/machines"))
        .await
        .machines
}

/// `PUT /v1/machines/{id}/labels`, returning the status and the body as JSON.
pub async fn put_labels(api: &str, id: MachineId, pairs: &[&str]) -> (u16, serde_json::Value) {
    let body = LabelRequest {
        set: Labels::from_pairs(pairs.iter().copied()).unwrap(),
        remove: vec![],
    };
    let response = shoal_daemon::testsuite::http_client()
        .put(format!("{api}/v1/machines/{id}/labels"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Sends `body` as JSON with the test key, returning the status and the body as JSON
/// (`null` when it is not JSON).
pub async fn send(
    method: reqwest::Method,
    url: String,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = shoal_daemon::testsuite::http_client()
        .request(method, &url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|err| panic!("{url}: {err}"));
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}

/// `POST` of `body` with the test key; see [`send`].
pub async fn post(url: String, body: serde_json::Value) -> (u16, serde_json::Value) {
    send(reqwest::Method::POST, url, body).await
}

/// A WebSocket request for `url` carrying every header the test client sends.
pub fn keyed(url: &str) -> tokio_tungstenite::tungstenite::http::Request<()> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    for (name, value) in &shoal_daemon::testsuite::keyed_headers() {
        request.headers_mut().insert(name, value.clone());
    }
    request
}

/// What job `id` printed, as `GET /v1/jobs/{id}/logs` through `api` answers it.
pub async fn job_output(api: &str, id: impl std::fmt::Display) -> String {
    let logs: serde_json::Value = get(format!("{api}/v1/jobs/{id}/logs")).await;
    logs["chunks"]
        .as_array()
        .unwrap_or_else(|| panic!("no output of job {id}: {logs}"))
        .iter()
        .map(|c| c["text"].as_str().unwrap_or_default())
        .collect()
}
