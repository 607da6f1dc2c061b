//! `/ui/live`: one WebSocket per page. It forwards the fleet's event stream (what the key
//! may see, as `/v1/events` does) and, every quarter second, the figures of the machines
//! that changed and the summary bar when it changed (a card whose only change is its last
//! heartbeat's time, once a second). Once a second it checks the session again: a revoked
//! key or an expired session closes the socket.
//!
//! ```text
//!  server ─▶ {"type":"event","event":{..}}           each event (resume with ?since=index)
//!         ─▶ {"type":"figures","machines":[..],"summary":{..}|null}   changed cards, <= 4/s
//!         ─▶ {"type":"ended","reason":".."} + close   the session ended
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use shoal_protocol::ApiError;
use shoal_protocol::params::ReadParams;
use shoal_raft::Follower;

use super::gate::{cookie_key, keys, session_cookie};
use super::pages::namer;
use super::views::{Card, Summary};
use crate::api::{ApiQuery, Failure, caller_of, events, fleet, machines};
use crate::keys::Caller;
use crate::node::{Node, now_ms};

/// How often the figures that changed are sent.
const TICK: Duration = Duration::from_millis(250);
/// How often the session is checked again (a revoked key or an expired session).
const SESSION_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often a card whose only change is its last heartbeat's time is sent again (the
/// page counts the seconds since it by itself).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
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
    let cookie = session_cookie(&headers).unwrap_or_default().to_string();
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
        .on_upgrade(move |socket| serve(node, socket, cookie, caller, backlog, follower))
        .into_response())
}

async fn serve(
    node: Arc<Node>,
    mut socket: WebSocket,
    cookie: String,
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
    let mut sent_cards: HashMap<String, Sent> = HashMap::new();
    let mut sent_summary: Option<Summary> = None;
    let mut tick = tokio::time::interval(TICK);
    let mut caller = caller;
    let mut checked = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // The session again, once a second: expired, or its key revoked, ends
                // the socket.
                if checked.elapsed() >= SESSION_CHECK_EVERY {
                    checked = Instant::now();
                    let key = match keys(&node).open(&cookie, now_ms()) {
                        Ok(key) => key,
                        Err(err) => return end(socket, &err.to_string()).await,
                    };
                    caller = match caller_of(&node, &key).await {
                        Ok(caller) => caller,
                        Err(failure) => return end(socket, &failure.0.message).await,
                    };
                }
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

/// A card as last sent, and when.
struct Sent {
    card: Card,
    at: Instant,
}

impl Sent {
    /// Whether `card` is worth sending: a figure changed, or only its heartbeat time did
    /// and [`HEARTBEAT_EVERY`] has passed.
    fn stale(&self, card: &Card) -> bool {
        let beat_only = Card {
            last_heartbeat_ms: self.card.last_heartbeat_ms,
            ..card.clone()
        };
        beat_only != self.card
            || (card.last_heartbeat_ms != self.card.last_heartbeat_ms
                && self.at.elapsed() >= HEARTBEAT_EVERY)
    }
}

/// The cards that changed since they were last sent and the summary if it changed, or
/// `None`.
async fn figures(
    node: &Arc<Node>,
    caller: &Caller,
    sent_cards: &mut HashMap<String, Sent>,
    sent_summary: &mut Option<Summary>,
) -> Option<serde_json::Value> {
    let all = machines::views(node);
    let mut changed = Vec::new();
    for machine in &all {
        let card = Card::of(machine);
        if sent_cards
            .get(&card.id)
            .is_none_or(|sent| sent.stale(&card))
        {
            let sent = Sent {
                card: card.clone(),
                at: Instant::now(),
            };
            sent_cards.insert(card.id.clone(), sent);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_goes_again_when_a_figure_changes_and_for_its_heartbeat_once_a_second() {
        let card = Card {
            id: "m1".into(),
            cpu: 10,
            last_heartbeat_ms: 1_000,
            ..Card::default()
        };
        let sent = Sent {
            card: card.clone(),
            at: Instant::now(),
        };
        assert!(!sent.stale(&card));
        let busier = Card {
            cpu: 90,
            ..card.clone()
        };
        assert!(sent.stale(&busier), "a figure changed: sent at once");
        let beat = Card {
            last_heartbeat_ms: 1_500,
            ..card.clone()
        };
        assert!(!sent.stale(&beat), "only the heartbeat, within the second");
        let old = Sent {
            card,
            at: Instant::now() - HEARTBEAT_EVERY,
        };
        assert!(old.stale(&beat), "only the heartbeat, a second later");
    }
}
