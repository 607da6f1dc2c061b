//! `GET /v1/jobs/{id}/logs`: a job attempt's output from any node, at once or followed
//! over a WebSocket (`follow=true`) until the attempt ends, or the caller's key is revoked.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::future::BoxFuture;
use shoal_protocol::ApiError;
use shoal_protocol::api::JobLogs;
use shoal_protocol::params::LogParams;

use super::events::close;
use super::jobs::{parse_job_id, visible_job};
use super::{ApiQuery, Failure};
use crate::keys::{self, Caller};
use crate::logs::{self, FOLLOW_WAIT};
use crate::node::Node;

/// `GET /v1/jobs/{id}/logs[?attempt=N][&offset=K][&follow=true]`.
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs",
    params(("id" = u64, Path, description = "The job"), LogParams),
    responses(
        (status = OK, body = JobLogs, description = "The attempt's output so far (with follow=true, a WebSocket of LogChunk messages)"),
        (status = NOT_FOUND, body = ApiError, description = "No such job in the caller's org, or no such attempt"),
        (status = CONFLICT, body = ApiError, description = "The job has not run anywhere yet, so it has no output"),
    ))]
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
            "follow=true streams over a WebSocket: connect with a WebSocket client (wss://)",
        ))
    })?;
    let revoked = keys::revoked(node.clone(), &caller);
    Ok(upgrade.on_upgrade(move |socket| follow(node, socket, first, revoked)))
}

/// Sends each chunk as one JSON text message, reading on until the attempt has ended and
/// everything was sent, then closes normally. A read error closes with the message; a key
/// that no longer holds (`revoked`) closes with 1008 and the reason.
async fn follow(
    node: Arc<Node>,
    mut socket: WebSocket,
    mut logs: JobLogs,
    mut revoked: BoxFuture<'static, String>,
) {
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
            reason = &mut revoked => return close(socket, close_code::POLICY, &reason).await,
            // The client only ever closes; anything else it sends is ignored.
            message = socket.recv() => {
                if matches!(message, None | Some(Err(_)) | Some(Ok(Message::Close(_)))) {
                    return;
                }
            }
        }
    }
}
