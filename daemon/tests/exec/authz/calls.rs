//! Requests with a given key (or none): plain HTTP, and WebSocket upgrades, each reduced to
//! the status it got and what it said.

use std::sync::LazyLock;

use reqwest::Method;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Error;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// One client for every call: no default key, each request sends its own.
static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    shoal_daemon::testsuite::http_client_builder()
        .build()
        .expect("an HTTP client")
});

/// What a request got back.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The JSON body; NDJSON as an array of its lines; anything else as a string.
    pub body: Value,
}

/// `method base+path` with `key` (none when `None`) and a JSON body.
pub async fn send(
    base: &str,
    key: Option<&str>,
    method: &Method,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    let url = format!("{base}{path}");
    let mut request = CLIENT.request(method.clone(), &url);
    if let Some(key) = key {
        request = request.header("x-shoal-key", key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|err| panic!("{method} {url}: {err}"));
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    Answer {
        status,
        body: parse_body(&String::from_utf8_lossy(&bytes)),
    }
}

fn parse_body(text: &str) -> Value {
    if let Ok(json) = serde_json::from_str(text) {
        return json;
    }
    let lines: Result<Vec<Value>, _> = text.lines().map(serde_json::from_str).collect();
    lines.map_or_else(|_| Value::String(text.to_string()), Value::Array)
}

/// Opens `path` on the node at `base` (`https://...`) as a WebSocket with `key`, closes it
/// again, and returns the status of the handshake's answer (101 when it upgraded).
pub async fn upgrade(base: &str, key: Option<&str>, path: &str) -> u16 {
    let url = format!("{}{path}", base.replace("https://", "wss://"));
    let mut request = url.as_str().into_client_request().unwrap();
    if let Some(key) = key {
        request
            .headers_mut()
            .insert("x-shoal-key", key.parse().unwrap());
    }
    match shoal_daemon::testsuite::ws_connect(request).await {
        Ok((mut socket, response)) => {
            let _ = socket.close(None).await;
            response.status().as_u16()
        }
        Err(Error::Http(response)) => response.status().as_u16(),
        Err(err) => panic!("WebSocket {url}: {err}"),
    }
}
