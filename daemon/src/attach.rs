//! `GET /v1/sessions/{id}/attach`: an interactive shell in a session over a WebSocket.
//!
//! Binary messages carry the terminal's bytes both ways. The client may send a text message
//! [`AttachMessage::Resize`]; the node ends with [`AttachMessage::Exit`] (or
//! [`AttachMessage::Error`]) and a normal close. The machine that runs the session starts
//! the shell (`docker exec -it`); any other node relays the socket to that machine's API,
//! with the caller's own key.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use bollard::container::LogOutput;
use futures::{SinkExt, StreamExt};
use shoal_protocol::sessions::{AttachMessage, TERMINAL_SIZE_RANGE};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite;

use crate::keys::{self, Caller};
use crate::node::Node;

/// Set on a relayed attach, so a node that does not run the session never relays again.
pub const RELAYED_HEADER: &str = "x-shoal-relayed";
/// The shell an attach starts.
pub const SHELL: &str = "sh";

type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// The attach URL on the machine at `api_addr`: always `wss://`, since the caller's key
/// goes with it.
pub fn relay_url(api_addr: &str, id: shoal_protocol::JobId, cols: u16, rows: u16) -> String {
    format!("wss://{api_addr}/v1/sessions/{id}/attach?cols={cols}&rows={rows}")
}

async fn finish(socket: &mut WebSocket, last: AttachMessage) {
    let text = serde_json::to_string(&last).expect("an attach message serializes");
    let _ = socket.send(Message::Text(text.into())).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: close_code::NORMAL,
            reason: "".into(),
        })))
        .await;
}

/// On the machine that runs the session: a shell in its container, pumped both ways, until
/// the shell exits, the client leaves or the caller's key no longer holds.
pub async fn local(
    node: Arc<Node>,
    caller: Caller,
    mut socket: WebSocket,
    job: u64,
    attempt: u32,
    size: (u16, u16),
) {
    let command = [SHELL.to_string()];
    let mut shell = match node
        .runner
        .docker()
        .shell(job, attempt, &command, size)
        .await
    {
        Ok(shell) => shell,
        Err(err) => {
            let message = format!("cannot start a shell in session {job}: {err}");
            return finish(&mut socket, AttachMessage::Error { message }).await;
        }
    };
    let mut revoked = keys::revoked(node.clone(), &caller);
    loop {
        tokio::select! {
            message = &mut revoked => {
                return finish(&mut socket, AttachMessage::Error { message }).await;
            }
            out = shell.output.next() => match out {
                Some(Ok(LogOutput::Console { message } | LogOutput::StdOut { message } | LogOutput::StdErr { message })) => {
                    if socket.send(Message::Binary(message)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(err)) => {
                    let message = format!("the shell's output broke: {err}");
                    return finish(&mut socket, AttachMessage::Error { message }).await;
                }
                None => break,
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    if shell.input.write_all(&bytes).await.is_err() {
                        break;
                    }
                    let _ = shell.input.flush().await;
                }
                Some(Ok(Message::Text(text))) => {
                    if let Ok(AttachMessage::Resize { cols, rows }) = serde_json::from_str(text.as_str())
                        && TERMINAL_SIZE_RANGE.contains(&cols)
                        && TERMINAL_SIZE_RANGE.contains(&rows)
                    {
                        let _ = shell.control.resize(cols, rows).await;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let exit_code = shell.control.exit_code().await.unwrap_or(-1);
    finish(&mut socket, AttachMessage::Exit { exit_code }).await;
}

/// Opens the attach on the machine's API at `url` (`wss://` only), with the caller's
/// `key`, over TLS that must prove the fleet CA (`tls` trusts it alone): the machine is
/// asked for its fleet certificate by name (`tls::FLEET_SERVER_NAME`), whatever
/// certificate it shows browsers.
pub async fn connect(
    url: &str,
    key: &str,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<Upstream, String> {
    use tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    if request.uri().scheme_str() != Some("wss") {
        return Err(format!("{url}: a relayed attach goes over wss:// only"));
    }
    let authority = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .ok_or("an attach URL without a host")?;
    let headers = request.headers_mut();
    let bearer = format!("Bearer {key}");
    headers.insert("authorization", bearer.parse().map_err(|_| "a bad key")?);
    headers.insert(RELAYED_HEADER, "1".parse().expect("a valid header"));
    let tcp = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from(crate::tls::FLEET_SERVER_NAME)
        .expect("a valid server name");
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with the machine failed: {e}"))?;
    let (upstream, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| e.to_string())?;
    Ok(upstream)
}

/// On any other node: every message one way is sent on the other, until either ends.
pub async fn relay(socket: WebSocket, upstream: Upstream) {
    let (mut to_client, mut from_client) = socket.split();
    let (mut to_machine, mut from_machine) = upstream.split();
    let up = async {
        while let Some(Ok(message)) = from_client.next().await {
            let message = match message {
                Message::Binary(bytes) => tungstenite::Message::Binary(bytes),
                Message::Text(text) => tungstenite::Message::Text(text.as_str().into()),
                Message::Close(_) => break,
                _ => continue,
            };
            if to_machine.send(message).await.is_err() {
                break;
            }
        }
        let _ = to_machine.close().await;
    };
    let down = async {
        while let Some(Ok(message)) = from_machine.next().await {
            let message = match message {
                tungstenite::Message::Binary(bytes) => Message::Binary(bytes),
                tungstenite::Message::Text(text) => Message::Text(text.as_str().into()),
                tungstenite::Message::Close(_) => break,
                _ => continue,
            };
            if to_client.send(message).await.is_err() {
                break;
            }
        }
        let _ = to_client
            .send(Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: "".into(),
            })))
            .await;
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}
