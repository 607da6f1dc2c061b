//! The typed HTTP client of the admin API: one method per endpoint, returning the
//! protocol types or a [`ClientError`] that says whether the node answered at all.
//! Following a job's output is a WebSocket, in [`logstream`].

mod attach;
pub use attach::TerminalInput;
mod eventstream;
mod logstream;
mod snapshot;
pub mod tls;
pub use tls::Trust;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_protocol::api::{
    ClusterStatus, FleetSummary, GossipKeyRotation, Health, JobLogs, LabelRequest, MachineApproved,
    MachineHistory, MachineList, MachineRemoved, MachineView,
};
use shoal_protocol::audit::AuditList;
use shoal_protocol::batch::{BatchAction, BatchReport};
use shoal_protocol::costs::{BudgetList, BudgetView, CostSheet, SetBudgetRequest};
use shoal_protocol::keys::{CreateKeyRequest, CreatedKey, KeyList};
use shoal_protocol::operate::{DrainRequest, DrainResponse, KillSwitchRequest, KillSwitchState};
use shoal_protocol::params::{
    AuditParams, CostParams, HistoryParams, JobListParams, LogParams, SessionParams,
};
use shoal_protocol::policies::{PolicyList, PolicyRequest, PolicyView};
use shoal_protocol::registries::{RegistryEntry, RegistryList, RegistryLogin};
use shoal_protocol::sessions::{
    CreateSessionRequest, ExecRequest, ExecResult, SessionList, SessionView,
};
use shoal_protocol::settings::{FleetSettingsRequest, FleetSettingsView};
use shoal_protocol::templates::{RollbackRequest, TemplateList, TemplateRequest, TemplateView};
use shoal_protocol::tokens::{CreateTokensRequest, CreatedTokens, TokenList};
use shoal_protocol::{
    ApiError, ErrorCode, JobId, JobList, JobRequest, JobView, MachineId, SubmitJobResponse,
};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node answered with an error body (or the CLI refused a request the same way).
    #[error("{} ({})", .0.message, code_str(.0.code))]
    Api(ApiError),
    /// No answer: connection refused, DNS failure or timeout.
    #[error("cannot reach the shoal node at {addr}: {detail}")]
    Unreachable { addr: String, detail: String },
    /// The node answered with something that is not the expected JSON.
    #[error("unexpected answer from {url}: {detail}")]
    BadResponse { url: String, detail: String },
}

impl From<ApiError> for ClientError {
    fn from(err: ApiError) -> Self {
        ClientError::Api(err)
    }
}

/// The stable wire name of an error code, e.g. `not_found`.
pub fn code_str(code: ErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{code:?}"),
    }
}

/// A client of one node's admin API.
pub struct Client {
    http: reqwest::Client,
    addr: String,
    timeout: Duration,
    /// `Authorization: Bearer <key>` when a key was given.
    auth: Option<reqwest::header::HeaderValue>,
    /// The CA an `https://` node's certificate must come from.
    trust: Trust,
}

impl Client {
    /// A client of the node at `addr` (`http://host:port`) with a per-request deadline,
    /// sending `key` (an API key) with every request, trusting no CA for `https://`.
    #[cfg(test)]
    pub fn new(addr: &str, timeout: Duration, key: Option<&str>) -> Result<Self, ClientError> {
        Client::trusting(addr, timeout, key, Trust::find(None, None)?)
    }

    /// A client of the node at `addr` (`https://host:port`, or `http://` for a node that
    /// serves plain HTTP) that trusts `trust` for HTTPS.
    pub fn trusting(
        addr: &str,
        timeout: Duration,
        key: Option<&str>,
        trust: Trust,
    ) -> Result<Self, ClientError> {
        let auth = key
            .map(|key| reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")))
            .transpose()
            .map_err(|_| ClientError::Unreachable {
                addr: addr.to_string(),
                detail: "the API key holds characters a header cannot".to_string(),
            })?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(value) = &auth {
            headers.insert(reqwest::header::AUTHORIZATION, value.clone());
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*trust.config).clone())
            .timeout(timeout)
            .connect_timeout(timeout)
            .default_headers(headers)
            .build()
            .map_err(|e| ClientError::Unreachable {
                addr: addr.to_string(),
                detail: error_chain(&e),
            })?;
        Ok(Client {
            http,
            addr: addr.trim_end_matches('/').to_string(),
            timeout,
            auth,
            trust,
        })
    }

    /// No answer from the node; a refused certificate says which CA was used and how
    /// to give another.
    pub(crate) fn unreachable(&self, detail: String) -> ClientError {
        let detail = if tls::is_certificate_error(&detail) {
            format!("{detail}; {}", self.trust.hint())
        } else {
            detail
        };
        ClientError::Unreachable {
            addr: self.addr.clone(),
            detail,
        }
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.call(Method::GET, "/health", None::<&()>).await
    }

    /// `GET /v1/machines`.
    pub async fn machines(&self) -> Result<MachineList, ClientError> {
        self.call(Method::GET, "/v1/machines", None::<&()>).await
    }

    /// `GET /v1/machines` with filters and a sort, e.g. `[("provider", "vps"), ("sort", "cpu")]`
    /// (pairs, since `label` may repeat).
    pub async fn machines_where(
        &self,
        query: &[(&str, String)],
    ) -> Result<MachineList, ClientError> {
        self.call(Method::GET, &with_query("/v1/machines", query), None::<&()>)
            .await
    }

    /// `GET /v1/fleet/summary`.
    pub async fn fleet_summary(&self) -> Result<FleetSummary, ClientError> {
        self.call(Method::GET, "/v1/fleet/summary", None::<&()>)
            .await
    }

    /// `GET /v1/fleet/settings`.
    pub async fn fleet_settings(&self) -> Result<FleetSettingsView, ClientError> {
        self.call(Method::GET, "/v1/fleet/settings", None::<&()>)
            .await
    }

    /// `PUT /v1/fleet/settings`.
    pub async fn set_fleet_settings(
        &self,
        request: &FleetSettingsRequest,
    ) -> Result<FleetSettingsView, ClientError> {
        self.call(Method::PUT, "/v1/fleet/settings", Some(request))
            .await
    }

    /// `GET /v1/machines/{id}`.
    pub async fn machine(&self, id: MachineId) -> Result<MachineView, ClientError> {
        self.call(Method::GET, &format!("/v1/machines/{id}"), None::<&()>)
            .await
    }

    /// `DELETE /v1/machines/{id}`.
    pub async fn remove_machine(&self, id: MachineId) -> Result<MachineRemoved, ClientError> {
        let path = format!("/v1/machines/{id}");
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    /// `POST /v1/machines/{id}/approve`.
    pub async fn approve_machine(&self, id: MachineId) -> Result<MachineApproved, ClientError> {
        let path = format!("/v1/machines/{id}/approve");
        self.call(Method::POST, &path, None::<&()>).await
    }

    /// `POST /v1/fleet/rotate-key` (admin).
    pub async fn rotate_gossip_key(&self) -> Result<GossipKeyRotation, ClientError> {
        self.call(Method::POST, "/v1/fleet/rotate-key", None::<&()>)
            .await
    }

    /// `PUT /v1/machines/{id}/labels`.
    pub async fn set_labels(
        &self,
        id: MachineId,
        request: &LabelRequest,
    ) -> Result<MachineView, ClientError> {
        let path = format!("/v1/machines/{id}/labels");
        self.call(Method::PUT, &path, Some(request)).await
    }

    /// `GET /v1/machines/{id}/history`, only samples after `since_ms` when given.
    pub async fn machine_history(
        &self,
        id: MachineId,
        since_ms: Option<u64>,
    ) -> Result<MachineHistory, ClientError> {
        let path = with_query(
            &format!("/v1/machines/{id}/history"),
            &HistoryParams { since_ms },
        );
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/cluster`.
    pub async fn cluster(&self) -> Result<ClusterStatus, ClientError> {
        self.call(Method::GET, "/v1/cluster", None::<&()>).await
    }

    /// `POST /v1/jobs`.
    pub async fn submit_job(&self, request: &JobRequest) -> Result<SubmitJobResponse, ClientError> {
        self.call(Method::POST, "/v1/jobs", Some(request)).await
    }

    /// `GET /v1/jobs` with filters and paging.
    pub async fn jobs(&self, params: &JobListParams) -> Result<JobList, ClientError> {
        self.call(Method::GET, &with_query("/v1/jobs", params), None::<&()>)
            .await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn job(&self, id: JobId) -> Result<JobView, ClientError> {
        self.call(Method::GET, &format!("/v1/jobs/{id}"), None::<&()>)
            .await
    }

    /// `POST /v1/jobs/{id}/cancel`.
    pub async fn cancel_job(&self, id: JobId) -> Result<JobView, ClientError> {
        self.call(Method::POST, &format!("/v1/jobs/{id}/cancel"), None::<&()>)
            .await
    }

    /// `GET /v1/jobs/{id}/logs`: the output of `attempt` (the latest if `None`) from `offset`.
    pub async fn job_logs(
        &self,
        id: JobId,
        attempt: Option<u32>,
        offset: u64,
    ) -> Result<JobLogs, ClientError> {
        let path = with_query(&format!("/v1/jobs/{id}/logs"), &logs_query(attempt, offset));
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `POST /v1/drain` (`drain`) or `POST /v1/undrain`.
    pub async fn set_drain(
        &self,
        drain: bool,
        request: &DrainRequest,
    ) -> Result<DrainResponse, ClientError> {
        let path = if drain { "/v1/drain" } else { "/v1/undrain" };
        self.call(Method::POST, path, Some(request)).await
    }

    /// `GET /v1/killswitch`.
    pub async fn kill_switch(&self) -> Result<KillSwitchState, ClientError> {
        self.call(Method::GET, "/v1/killswitch", None::<&()>).await
    }

    /// `PUT /v1/killswitch`.
    pub async fn set_kill_switch(
        &self,
        request: &KillSwitchRequest,
    ) -> Result<KillSwitchState, ClientError> {
        self.call(Method::PUT, "/v1/killswitch", Some(request))
            .await
    }

    /// `GET /v1/audit` with filters.
    pub async fn audit(&self, params: &AuditParams) -> Result<AuditList, ClientError> {
        self.call(Method::GET, &with_query("/v1/audit", params), None::<&()>)
            .await
    }

    /// `POST /v1/tokens/registration`.
    pub async fn create_tokens(
        &self,
        request: &CreateTokensRequest,
    ) -> Result<CreatedTokens, ClientError> {
        self.call(Method::POST, "/v1/tokens/registration", Some(request))
            .await
    }

    /// `GET /v1/tokens/registration`.
    pub async fn tokens(&self) -> Result<TokenList, ClientError> {
        self.call(Method::GET, "/v1/tokens/registration", None::<&()>)
            .await
    }

    /// `DELETE /v1/tokens/registration/{id}`.
    pub async fn revoke_token(&self, id: &str) -> Result<TokenList, ClientError> {
        let path = format!("/v1/tokens/registration/{id}");
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    /// `POST /v1/batch/{action}`.
    pub async fn batch(
        &self,
        action: BatchAction,
        request: &DrainRequest,
    ) -> Result<BatchReport, ClientError> {
        let path = format!("/v1/batch/{}", action.as_str());
        // Each machine has up to 30 s to answer (an update pulls images first).
        let within = self.timeout.max(Duration::from_secs(45));
        self.call_within(Method::POST, &path, Some(request), within)
            .await
    }

    /// `PUT /v1/templates/{name}`.
    pub async fn put_template(
        &self,
        name: &str,
        spec: &TemplateRequest,
    ) -> Result<TemplateView, ClientError> {
        let path = format!("/v1/templates/{name}");
        self.call(Method::PUT, &path, Some(spec)).await
    }

    /// `GET /v1/templates`.
    pub async fn templates(&self) -> Result<TemplateList, ClientError> {
        self.call(Method::GET, "/v1/templates", None::<&()>).await
    }

    /// `GET /v1/templates/{name}`.
    pub async fn template(&self, name: &str) -> Result<TemplateView, ClientError> {
        let path = format!("/v1/templates/{name}");
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `POST /v1/templates/{name}/rollback`.
    pub async fn rollback_template(
        &self,
        name: &str,
        version: u32,
    ) -> Result<TemplateView, ClientError> {
        let path = format!("/v1/templates/{name}/rollback");
        self.call(Method::POST, &path, Some(&RollbackRequest { version }))
            .await
    }

    /// `POST /v1/sessions`.
    pub async fn create_session(
        &self,
        request: &CreateSessionRequest,
    ) -> Result<SessionView, ClientError> {
        self.call(Method::POST, "/v1/sessions", Some(request)).await
    }

    /// `GET /v1/sessions`.
    pub async fn sessions(&self, params: &SessionParams) -> Result<SessionList, ClientError> {
        self.call(
            Method::GET,
            &with_query("/v1/sessions", params),
            None::<&()>,
        )
        .await
    }

    /// `GET /v1/sessions/{id}`.
    pub async fn session(&self, id: JobId) -> Result<SessionView, ClientError> {
        self.call(Method::GET, &format!("/v1/sessions/{id}"), None::<&()>)
            .await
    }

    /// `POST /v1/sessions/{id}/exec`.
    pub async fn exec(&self, id: JobId, request: &ExecRequest) -> Result<ExecResult, ClientError> {
        let path = format!("/v1/sessions/{id}/exec");
        self.call(Method::POST, &path, Some(request)).await
    }

    /// `POST /v1/sessions/{id}/terminate`.
    pub async fn terminate_session(&self, id: JobId) -> Result<SessionView, ClientError> {
        let path = format!("/v1/sessions/{id}/terminate");
        self.call(Method::POST, &path, None::<&()>).await
    }

    /// `PUT /v1/policies/{name}`.
    pub async fn put_policy(
        &self,
        name: &str,
        spec: &PolicyRequest,
    ) -> Result<PolicyView, ClientError> {
        let path = format!("/v1/policies/{name}");
        self.call(Method::PUT, &path, Some(spec)).await
    }

    /// `GET /v1/policies`.
    pub async fn policies(&self) -> Result<PolicyList, ClientError> {
        self.call(Method::GET, "/v1/policies", None::<&()>).await
    }

    /// `DELETE /v1/policies/{name}`.
    pub async fn remove_policy(&self, name: &str) -> Result<PolicyList, ClientError> {
        let path = format!("/v1/policies/{name}");
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    /// `PUT /v1/registries/{registry}`.
    pub async fn registry_login(
        &self,
        registry: &str,
        login: &RegistryLogin,
    ) -> Result<RegistryEntry, ClientError> {
        let path = format!("/v1/registries/{registry}");
        self.call(Method::PUT, &path, Some(login)).await
    }

    /// `GET /v1/registries`.
    pub async fn registries(&self) -> Result<RegistryList, ClientError> {
        self.call(Method::GET, "/v1/registries", None::<&()>).await
    }

    /// `DELETE /v1/registries/{registry}`.
    pub async fn registry_logout(&self, registry: &str) -> Result<RegistryList, ClientError> {
        let path = format!("/v1/registries/{registry}");
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    /// `PUT /v1/budgets/{org}`.
    pub async fn set_budget(
        &self,
        org: &str,
        request: &SetBudgetRequest,
    ) -> Result<BudgetView, ClientError> {
        let path = format!("/v1/budgets/{org}");
        self.call(Method::PUT, &path, Some(request)).await
    }

    /// `GET /v1/budgets`.
    pub async fn budgets(&self) -> Result<BudgetList, ClientError> {
        self.call(Method::GET, "/v1/budgets", None::<&()>).await
    }

    /// `DELETE /v1/budgets/{org}`.
    pub async fn remove_budget(&self, org: &str) -> Result<BudgetList, ClientError> {
        let path = format!("/v1/budgets/{org}");
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    /// `GET /v1/costs`.
    pub async fn costs(&self, params: &CostParams) -> Result<CostSheet, ClientError> {
        self.call(Method::GET, &with_query("/v1/costs", params), None::<&()>)
            .await
    }

    /// `POST /v1/keys`.
    pub async fn create_key(&self, request: &CreateKeyRequest) -> Result<CreatedKey, ClientError> {
        self.call(Method::POST, "/v1/keys", Some(request)).await
    }

    /// `GET /v1/keys`.
    pub async fn keys(&self) -> Result<KeyList, ClientError> {
        self.call(Method::GET, "/v1/keys", None::<&()>).await
    }

    /// `DELETE /v1/keys/{id}`.
    pub async fn revoke_key(&self, id: &str) -> Result<KeyList, ClientError> {
        self.call(Method::DELETE, &format!("/v1/keys/{id}"), None::<&()>)
            .await
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.call_within(method, path, body, self.timeout).await
    }

    /// [`Self::call`], giving up after `within` instead of the client's timeout.
    async fn call_within<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        within: Duration,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.addr);
        let mut request = self.http.request(method, &url).timeout(within);
        if let Some(body) = body {
            request = request.json(body);
        }
        let unreachable = |e: reqwest::Error| self.unreachable(error_chain(&e));
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        decode(&url, status, &bytes)
    }
}

fn logs_query(attempt: Option<u32>, offset: u64) -> LogParams {
    LogParams {
        attempt,
        offset: (offset > 0).then_some(offset),
        follow: false,
    }
}

/// `path?k=v&...` of a query type (or a list of pairs), each value percent-encoded.
fn with_query(path: &str, query: &(impl Serialize + ?Sized)) -> String {
    let query = serde_urlencoded::to_string(query).expect("query parameters encode");
    if query.is_empty() {
        return path.to_string();
    }
    format!("{path}?{query}")
}

/// Turns an answer into the expected type, or into the API error it carries.
fn decode<T: DeserializeOwned>(
    url: &str,
    status: StatusCode,
    body: &[u8],
) -> Result<T, ClientError> {
    if status.is_success() {
        return serde_json::from_slice(body).map_err(|e| ClientError::BadResponse {
            url: url.to_string(),
            detail: e.to_string(),
        });
    }
    match serde_json::from_slice::<ApiError>(body) {
        Ok(err) => Err(ClientError::Api(err)),
        Err(_) => Err(ClientError::BadResponse {
            url: url.to_string(),
            detail: format!("HTTP {status}: {}", String::from_utf8_lossy(body).trim()),
        }),
    }
}

/// An error and its causes, e.g. "error sending request: ...: Connection refused".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Serves one canned HTTP answer on a fresh port and returns the request it got.
    pub(super) async fn serve_once(
        status: &'static str,
        body: &'static str,
    ) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Read until the headers end and the announced body has arrived.
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length || n == 0 {
                        break;
                    }
                }
            }
            let answer = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(request).unwrap()
        });
        (addr, task)
    }

    pub(super) fn client(addr: &str) -> Client {
        Client::new(addr, Duration::from_secs(5), None).unwrap()
    }

    #[tokio::test]
    async fn decodes_health() {
        let body =
            r#"{"status":"ok","machine_id":"00000000000000aa","leader":null,"version":"0.1.0"}"#;
        let (addr, server) = serve_once("200 OK", body).await;
        let health = client(&addr).health().await.unwrap();
        assert_eq!(health.status, "ok");
        assert_eq!(health.machine_id, MachineId(0xaa));
        assert!(server.await.unwrap().starts_with("GET /health HTTP/1.1"));
    }

    #[tokio::test]
    async fn api_errors_keep_code_and_message() {
        let body = r#"{"code":"not_found","message":"no machine 00000000000000aa"}"#;
        let (addr, _server) = serve_once("404 Not Found", body).await;
        let err = client(&addr).machine(MachineId(0xaa)).await.unwrap_err();
        assert_eq!(err.to_string(), "no machine 00000000000000aa (not_found)");
        assert!(matches!(err, ClientError::Api(e) if e.code == ErrorCode::NotFound));
    }

    #[tokio::test]
    async fn label_request_is_a_json_put() {
        let (addr, server) =
            serve_once("400 Bad Request", r#"{"code":"bad_request","message":"x"}"#).await;
        let request = LabelRequest {
            set: shoal_protocol::Labels::from_pairs(["zone=attic"]).unwrap(),
            remove: vec!["gpu".into()],
        };
        let err = client(&addr)
            .set_labels(MachineId(1), &request)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Api(e) if e.code == ErrorCode::BadRequest));
        let sent = server.await.unwrap();
        assert!(sent.starts_with("PUT /v1/machines/0000000000000001/labels HTTP/1.1"));
        assert!(
            sent.ends_with(r#"{"set":{"zone":"attic"},"remove":["gpu"]}"#),
            "{sent}"
        );
    }

    #[tokio::test]
    async fn history_asks_for_samples_since_a_time() {
        let body = r#"{"machine":"0000000000000001","interval_ms":5000,"samples":[{"at_ms":7,"cpu_usage":0.5,"load":0.25,"memory_used_bytes":1,"memory_total_bytes":2,"disk_free_bytes":3}]}"#;
        let (addr, server) = serve_once("200 OK", body).await;
        let history = client(&addr)
            .machine_history(MachineId(1), Some(1_700_000_000_000))
            .await
            .unwrap();
        assert_eq!((history.interval_ms, history.samples[0].at_ms), (5000, 7));
        let sent = server.await.unwrap();
        assert!(
            sent.starts_with(
                "GET /v1/machines/0000000000000001/history?since_ms=1700000000000 HTTP/1.1"
            ),
            "{sent}"
        );
    }

    #[tokio::test]
    async fn non_json_errors_are_bad_responses() {
        let (addr, _server) = serve_once("502 Bad Gateway", "upstream down").await;
        let err = client(&addr).cluster().await.unwrap_err();
        assert!(
            err.to_string()
                .contains("HTTP 502 Bad Gateway: upstream down"),
            "{err}"
        );
    }

    #[test]
    fn query_values_are_encoded() {
        let query = [
            ("label", "zone=a b".to_string()),
            ("state", "queued".to_string()),
        ];
        assert_eq!(
            with_query("/v1/jobs", &query),
            "/v1/jobs?label=zone%3Da+b&state=queued"
        );
        assert_eq!(
            with_query("/v1/jobs", &JobListParams::default()),
            "/v1/jobs"
        );
        let params = JobListParams {
            order: shoal_protocol::params::JobOrder::Newest,
            before: Some(9),
            ..JobListParams::default()
        };
        assert_eq!(
            with_query("/v1/jobs", &params),
            "/v1/jobs?order=newest&before=9"
        );
    }

    #[tokio::test]
    async fn submit_is_a_json_post_of_the_request() {
        let job = shoal_protocol::JobRecord::queued(
            JobId(7),
            shoal_protocol::JobSpec::new(["true"]),
            shoal_protocol::JobTarget::Any,
            1,
            7,
        );
        let answer = SubmitJobResponse {
            job: JobView::from(job),
            created: true,
        };
        let body = serde_json::to_string(&answer).unwrap();
        let (addr, server) = serve_once("201 Created", Box::leak(body.into_boxed_str())).await;
        let got = client(&addr)
            .submit_job(&JobRequest::new(["true"]))
            .await
            .unwrap();
        assert_eq!(got, answer);
        let sent = server.await.unwrap();
        assert!(sent.starts_with("POST /v1/jobs HTTP/1.1"), "{sent}");
        assert!(sent.contains(r#"{"command":["true"],"#), "{sent}");
    }

    #[tokio::test]
    async fn closed_port_is_unreachable_and_names_the_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = client(&addr).health().await.unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
        assert!(err.to_string().contains(&addr), "{err}");
    }
}
