//! `/ui/live`: one WebSocket per page. It forwards the fleet's event stream (what the key
//! may see, as `/v1/events` does) and, about once a second, the figures of the machines
//! that changed and the summary bar when it changed. Each tick checks the session again:
//! a revoked key or an expired session closes the socket.
//!
//! ```text
//!  server ─▶ {"type":"event","event":{..}}           each event (resume with ?since=index)
//!         ─▶ {"type":"figures","machines":[..],"summary":{..}|null}   changed cards, ~1/s
//!         ─▶ {"type":"ended","reason":".."} + close   the session ended
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use shoal_protocol::ApiError;
use shoal_protocol::params::ReadParams;
use shoal_raft::Follower;

use super::gate::cookie_key;
use super::pages::namer;
use super::views::{Card, Summary};
use crate::api::{ApiQuery, Failure, caller_of, events, fleet, machines};
use crate::keys::Caller;
use crate::node::Node;

/// How often the figures are sent (when something changed) and the session checked.
const TICK: Duration = Duration::from_secs(1);
/// The close code that tells the page to log in again.
const SESSION_ENDED: u16 = 4401;

/// `GET /ui/live[?since=N]` as a WebSocket, with the session cookie.
pub async fn live(
    State(node): State<Arc<Node>>,
    uri: Uri,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, Failure> {
    let key = cookie_key(&node, &Method::GET, &uri, &headers)?.ok_or_else(|| {
        ApiError::new(
            shoal_protocol::ErrorCode::Unauthorized,
            "the live feed needs a dashboard session: log in at /login",
        )
    })?;
    let caller = caller_of(&node, &key).await?;
    let since = pairs
        .iter()
        .find(|(name, _)| name == "since")
        .map(|(_, value)| {
            value.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("since must be a log index, got {value:?}"))
            })
        })
        .transpose()?;
    // A resume point the node no longer holds: follow from now (the page reloads what it
    // shows from the figures anyway).
    let feed = node.fleet.events();
    let (backlog, follower) = match feed.follow(since) {
        Ok(followed) => followed,
        Err(_) => feed
            .follow(None)
            .map_err(|err| ApiError::bad_request(err.to_string()))?,
    };
    let backlog: Vec<_> = backlog
        .into_iter()
        .filter(|e| events::visible(&caller, e))
        .collect();
    Ok(upgrade
        .on_upgrade(move |socket| serve(node, socket, key, caller, backlog, follower))
        .into_response())
}

async fn serve(
    node: Arc<Node>,
    mut socket: WebSocket,
    key: String,
    caller: Caller,
    backlog: Vec<shoal_protocol::events::Event>,
    mut follower: Follower,
) {
    for event in backlog {
        if send(&mut socket, json!({"type": "event", "event": event}))
            .await
            .is_err()
        {
            return;
        }
    }
    let mut sent_cards: HashMap<String, Card> = HashMap::new();
    let mut sent_summary: Option<Summary> = None;
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let caller = match caller_of(&node, &key).await {
                    Ok(caller) => caller,
                    Err(failure) => return end(socket, &failure.0.message).await,
                };
                let update = figures(&node, &caller, &mut sent_cards, &mut sent_summary).await;
                if let Some(update) = update
                    && send(&mut socket, update).await.is_err()
                {
                    return;
                }
            }
            next = follower.next() => match next {
                Ok(batch) => {
                    for event in batch.into_iter().filter(|e| events::visible(&caller, e)) {
                        if send(&mut socket, json!({"type": "event", "event": event})).await.is_err() {
                            return;
                        }
                    }
                }
                Err(err) => {
                    // The page reconnects with since=resume_from.
                    let reason = err.to_string();
                    let _ = send(&mut socket, json!({"type": "resume", "from": err.resume_from(), "reason": reason})).await;
                    let _ = socket.send(Message::Close(Some(CloseFrame { code: 1011, reason: "resume".into() }))).await;
                    return;
                }
            },
            message = socket.recv() => {
                if matches!(message, None | Some(Err(_)) | Some(Ok(Message::Close(_)))) {
                    return;
                }
            }
        }
    }
}

/// The cards that changed since the last tick and the summary if it changed, or `None`.
async fn figures(
    node: &Arc<Node>,
    caller: &Caller,
    sent_cards: &mut HashMap<String, Card>,
    sent_summary: &mut Option<Summary>,
) -> Option<serde_json::Value> {
    let all = machines::views(node);
    let mut changed = Vec::new();
    for machine in &all {
        let card = Card::of(machine);
        if sent_cards.get(&card.id) != Some(&card) {
            sent_cards.insert(card.id.clone(), card.clone());
            changed.push(card);
        }
    }
    let summary = fleet::summary(
        State(node.clone()),
        Extension(caller.clone()),
        ApiQuery(ReadParams::default()),
    )
    .await
    .ok()
    .map(|Json(summary)| Summary::of(&summary, namer(&all)));
    let summary = match summary {
        Some(summary) if sent_summary.as_ref() != Some(&summary) => {
            let value = serde_json::to_value(&summary).ok();
            *sent_summary = Some(summary);
            value
        }
        _ => None,
    };
    if changed.is_empty() && summary.is_none() {
        return None;
    }
    Some(json!({"type": "figures", "machines": changed, "summary": summary}))
}

async fn send(socket: &mut WebSocket, value: serde_json::Value) -> Result<(), axum::Error> {
    socket.send(Message::Text(value.to_string().into())).await
}

async fn end(mut socket: WebSocket, reason: &str) {
    let _ = send(&mut socket, json!({"type": "ended", "reason": reason})).await;
    let frame = CloseFrame {
        code: SESSION_ENDED,
        reason: "session ended".into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}
