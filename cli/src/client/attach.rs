//! `GET /v1/sessions/{id}/attach`: a terminal in a session over a WebSocket. Bytes typed go
//! up as binary messages, the terminal's bytes come down the same way, and the node's last
//! text message says how the shell ended.

use futures::{SinkExt, StreamExt};
use shoal_protocol::sessions::AttachMessage;
use shoal_protocol::{ApiError, ErrorCode, JobId};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::{Client, ClientError};

/// What the local terminal sends.
pub enum TerminalInput {
    Typed(Vec<u8>),
    Resized { cols: u16, rows: u16 },
}

impl Client {
    /// Attaches to session `id` with a `cols` x `rows` terminal: sends what `input` yields
    /// (typed bytes, new sizes), hands what the shell writes to `output`, and returns the
    /// shell's exit code.
    pub async fn attach(
        &self,
        id: JobId,
        (cols, rows): (u16, u16),
        mut input: mpsc::Receiver<TerminalInput>,
        mut output: impl FnMut(&[u8]),
    ) -> Result<i64, ClientError> {
        let path = format!("/v1/sessions/{id}/attach?cols={cols}&rows={rows}");
        let (stream, url) = self.websocket(&path).await?;
        let (mut up, mut down) = stream.split();
        let mut input_open = true;
        loop {
            tokio::select! {
                typed = input.recv(), if input_open => {
                    let message = match typed {
                        Some(TerminalInput::Typed(bytes)) => Message::Binary(bytes.into()),
                        Some(TerminalInput::Resized { cols, rows }) => {
                            let resize = AttachMessage::Resize { cols, rows };
                            let text = serde_json::to_string(&resize).expect("a resize serializes");
                            Message::Text(text.into())
                        }
                        None => {
                            input_open = false;
                            continue;
                        }
                    };
                    up.send(message).await.map_err(|e| self.ws_error(&url, e))?;
                }
                message = down.next() => match message {
                    Some(Ok(Message::Binary(bytes))) => output(&bytes),
                    Some(Ok(Message::Text(text))) => {
                        return match serde_json::from_str(text.as_str()) {
                            Ok(AttachMessage::Exit { exit_code }) => Ok(exit_code),
                            Ok(AttachMessage::Error { message }) => {
                                Err(ClientError::Api(ApiError::new(ErrorCode::Unavailable, message)))
                            }
                            _ => Err(self.broken(&format!("unexpected message {text}"))),
                        };
                    }
                    Some(Ok(Message::Close(_))) | None => {
                        return Err(self.broken("the node closed the terminal"));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return Err(self.ws_error(&url, err)),
                },
            }
        }
    }
}
