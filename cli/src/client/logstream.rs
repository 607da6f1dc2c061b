//! Following a job's output: `GET /v1/jobs/{id}/logs?follow=true` upgraded to a WebSocket,
//! one [`LogChunk`] as JSON per text message, closed normally once the attempt has ended.

use futures::StreamExt;
use shoal_protocol::api::LogChunk;
use shoal_protocol::{ApiError, JobId};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message, protocol::frame::coding::CloseCode};

use shoal_protocol::params::LogParams;

use super::{Client, ClientError, decode, error_chain, logs_query, with_query};

pub(super) type WebSocket = tokio_tungstenite::WebSocketStream<Box<dyn Stream>>;

/// A connection to a node: TLS for `https://`, plain TCP for an `http://` node.
pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Client {
    /// `GET /v1/jobs/{id}/logs?follow=true` over a WebSocket: hands each chunk to `on_chunk`
    /// until the node closes the stream normally, which it does once the attempt has ended
    /// and everything was sent. A stream that breaks is [`ClientError::Unreachable`].
    pub async fn follow_job_logs(
        &self,
        id: JobId,
        attempt: Option<u32>,
        offset: u64,
        mut on_chunk: impl FnMut(LogChunk),
    ) -> Result<(), ClientError> {
        let query = LogParams {
            follow: true,
            ..logs_query(attempt, offset)
        };
        let path = with_query(&format!("/v1/jobs/{id}/logs"), &query);
        let (mut stream, url) = self.websocket(&path).await?;
        while let Some(message) = stream.next().await {
            match message.map_err(|e| self.ws_error(&url, e))? {
                Message::Text(text) => {
                    let chunk =
                        serde_json::from_str(&text).map_err(|e| ClientError::BadResponse {
                            url: url.clone(),
                            detail: format!("a log message is not a chunk: {e}"),
                        })?;
                    on_chunk(chunk);
                }
                Message::Close(frame) => return closed(&url, frame, |d| self.broken(d)),
                _ => {}
            }
        }
        Err(self.broken("the log stream ended without a close"))
    }

    /// Opens a WebSocket to `path` on the node, with the client's key.
    pub(super) async fn websocket(&self, path: &str) -> Result<(WebSocket, String), ClientError> {
        let url = match self.addr.strip_prefix("http") {
            Some(rest) => format!("ws{rest}{path}"),
            None => format!("{}{path}", self.addr),
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| self.ws_error(&url, e))?;
        if let Some(auth) = &self.auth {
            request.headers_mut().insert("authorization", auth.clone());
        }
        let connect = async {
            let stream = self.connect(&request).await?;
            tokio_tungstenite::client_async(request, stream)
                .await
                .map_err(|err| self.ws_error(&url, err))
        };
        match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok((stream, _))) => Ok((stream, url)),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(self.broken("timed out connecting")),
        }
    }

    /// A connection to the node `request` names: TLS checked against the fleet CA for
    /// `wss://`, plain TCP for `ws://`.
    async fn connect(
        &self,
        request: &tungstenite::handshake::client::Request,
    ) -> Result<Box<dyn Stream>, ClientError> {
        let uri = request.uri();
        let secure = uri.scheme_str() == Some("wss");
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|err| self.broken(&format!("log stream: {}", error_chain(&err))))?;
        let _ = tcp.set_nodelay(true);
        if !secure {
            return Ok(Box::new(tcp));
        }
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|err| self.broken(&format!("{host}: {err}")))?;
        let tls = tokio_rustls::TlsConnector::from(self.trust.config.clone())
            .connect(name, tcp)
            .await
            .map_err(|err| self.unreachable(error_chain(&err)))?;
        Ok(Box::new(tls))
    }

    pub(super) fn broken(&self, detail: &str) -> ClientError {
        ClientError::Unreachable {
            addr: self.addr.clone(),
            detail: detail.to_string(),
        }
    }

    /// A failed upgrade carries the usual JSON error; anything else is a lost connection.
    pub(super) fn ws_error(&self, url: &str, err: tungstenite::Error) -> ClientError {
        match err {
            tungstenite::Error::Http(response) => {
                let body = response.body().as_deref().unwrap_or_default();
                match decode::<serde_json::Value>(url, response.status(), body) {
                    Err(err) => err,
                    Ok(_) => ClientError::BadResponse {
                        url: url.to_string(),
                        detail: format!("HTTP {} instead of a WebSocket", response.status()),
                    },
                }
            }
            tungstenite::Error::Url(_) | tungstenite::Error::HttpFormat(_) => {
                ClientError::BadResponse {
                    url: url.to_string(),
                    detail: error_chain(&err),
                }
            }
            err => self.broken(&format!("log stream: {}", error_chain(&err))),
        }
    }
}

/// How a log stream ended: normally, or with an error the node put in the close frame
/// (an [`ApiError`] as JSON, or plain text). A node going away counts as a lost connection.
fn closed(
    url: &str,
    frame: Option<tungstenite::protocol::CloseFrame>,
    broken: impl Fn(&str) -> ClientError,
) -> Result<(), ClientError> {
    let Some(frame) = frame else {
        return Ok(());
    };
    match frame.code {
        CloseCode::Normal => Ok(()),
        CloseCode::Away => Err(broken("the node closed the log stream")),
        code => Err(match serde_json::from_str::<ApiError>(&frame.reason) {
            Ok(err) => ClientError::Api(err),
            Err(_) => ClientError::BadResponse {
                url: url.to_string(),
                detail: format!(
                    "the log stream ended with an error ({}): {}",
                    u16::from(code),
                    frame.reason
                ),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::tests::{client, serve_once};
    use shoal_protocol::ErrorCode;
    use tokio::net::TcpListener;

    /// A WebSocket server for one connection: records the request path, sends `chunks` as
    /// text messages, then ends with `close` (or drops the connection when `None`).
    async fn serve_ws(
        chunks: Vec<LogChunk>,
        close: Option<(CloseCode, &'static str)>,
    ) -> (String, tokio::task::JoinHandle<String>) {
        use futures::SinkExt;
        use tungstenite::handshake::server::{Request, Response};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut path = String::new();
            // The callback's signature is tungstenite's, large error type and all.
            #[allow(clippy::result_large_err)]
            let record = |request: &Request, response: Response| {
                path = request.uri().to_string();
                Ok(response)
            };
            let mut ws = tokio_tungstenite::accept_hdr_async(socket, record)
                .await
                .unwrap();
            for chunk in chunks {
                let text = serde_json::to_string(&chunk).unwrap();
                ws.send(Message::text(text)).await.unwrap();
            }
            if let Some((code, reason)) = close {
                let frame = tungstenite::protocol::CloseFrame {
                    code,
                    reason: reason.into(),
                };
                ws.send(Message::Close(Some(frame))).await.unwrap();
                // Let the client answer the close before the socket goes.
                while ws.next().await.is_some_and(|m| m.is_ok()) {}
            }
            path
        });
        (addr, task)
    }

    fn chunk(stream: shoal_protocol::api::LogStream, offset: u64, text: &str) -> LogChunk {
        LogChunk {
            stream,
            offset,
            text: text.into(),
        }
    }

    #[tokio::test]
    async fn following_reads_chunks_until_a_normal_close() {
        use shoal_protocol::api::LogStream;
        let sent = vec![
            chunk(LogStream::Stdout, 5, "hi\n"),
            chunk(LogStream::Stderr, 8, "oops\n"),
        ];
        let (addr, server) = serve_ws(sent.clone(), Some((CloseCode::Normal, "ended"))).await;
        let mut got = Vec::new();
        client(&addr)
            .follow_job_logs(JobId(7), Some(2), 5, |c| got.push(c))
            .await
            .unwrap();
        assert_eq!(got, sent);
        assert_eq!(
            server.await.unwrap(),
            "/v1/jobs/7/logs?attempt=2&offset=5&follow=true"
        );
    }

    #[tokio::test]
    async fn a_log_stream_that_breaks_is_unreachable_and_an_error_close_is_not() {
        let (addr, _server) = serve_ws(vec![], None).await;
        let err = client(&addr)
            .follow_job_logs(JobId(7), None, 0, |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");

        let closing = Some((CloseCode::Error, "machine 00aa is unreachable"));
        let (addr, _server) = serve_ws(vec![], closing).await;
        let err = client(&addr)
            .follow_job_logs(JobId(7), None, 0, |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::BadResponse { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("(1011): machine 00aa is unreachable"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_error_before_the_upgrade_is_the_api_error() {
        let body =
            r#"{"code":"conflict","message":"job 7 is queued and has not run anywhere yet"}"#;
        let (addr, server) = serve_once("409 Conflict", body).await;
        let err = client(&addr)
            .follow_job_logs(JobId(7), None, 0, |_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::Api(e) if e.code == ErrorCode::Conflict),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("job 7 is queued"), "{err}");
        let request = server.await.unwrap();
        assert!(
            request.starts_with("GET /v1/jobs/7/logs?follow=true HTTP/1.1"),
            "{request}"
        );
    }
}
