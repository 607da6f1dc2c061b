//! `GET /v1/jobs/{id}/logs`: a job attempt's output from any node, at once or followed
//! over a WebSocket (`follow=true`) until the attempt ends.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use shoal_protocol::ApiError;
use shoal_protocol::api::JobLogs;

use super::jobs::{parse_job_id, visible_job};
use super::{ApiQuery, Failure};
use crate::keys::Caller;
use crate::logs::{self, FOLLOW_WAIT};
use crate::node::Node;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// The attempt to read; the latest when absent.
    attempt: Option<u32>,
    /// Only output from this byte on (the `total` of an earlier answer).
    offset: Option<u64>,
    /// Stream over a WebSocket until the attempt ends.
    #[serde(default)]
    follow: bool,
}

/// `GET /v1/jobs/{id}/logs[?attempt=N][&offset=K][&follow=true]`.
pub async fn logs(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<LogParams>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Failure> {
    let job = parse_job_id(&id)?;
    visible_job(&node, &caller, job)?;
    if params.attempt == Some(0) {
        return Err(Failure(ApiError::bad_request("attempt numbers start at 1")));
    }
    let from = params.offset.unwrap_or(0);
    // Read once before any upgrade, so a missing job or machine is a plain JSON error.
    let first = logs::read(&node, job, params.attempt, from, Duration::ZERO).await?;
    if !params.follow {
        return Ok(Json(first).into_response());
    }
    let upgrade = upgrade.map_err(|_| {
        Failure(ApiError::bad_request(
            "follow=true streams over a WebSocket: connect with a WebSocket client (ws://)",
        ))
    })?;
    Ok(upgrade.on_upgrade(move |socket| follow(node, socket, first)))
}

/// Sends each chunk as one JSON text message, reading on until the attempt has ended and
/// everything was sent, then closes normally. A read error closes with the message.
async fn follow(node: Arc<Node>, mut socket: WebSocket, mut logs: JobLogs) {
    let (job, attempt) = (logs.job, logs.attempt);
    loop {
        for chunk in &logs.chunks {
            let text = serde_json::to_string(chunk).expect("a log chunk serializes");
            if socket.send(Message::Text(text.into())).await.is_err() {
                return;
            }
        }
        if logs.complete {
            return close(socket, close_code::NORMAL, "the attempt has ended").await;
        }
        let from = logs.total;
        tokio::select! {
            next = logs::read(&node, job, Some(attempt), from, FOLLOW_WAIT) => match next {
                Ok(next) => logs = next,
                Err(err) => return close(socket, close_code::ERROR, &err.message).await,
            },
            // The client only ever closes; anything else it sends is ignored.
            message = socket.recv() => {
                if matches!(message, None | Some(Err(_)) | Some(Ok(Message::Close(_)))) {
                    return;
                }
            }
        }
    }
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    // A close reason is at most 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: reason[..end].into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}
