//! `GET /v1/events`: what changed in the fleet, from any node, as NDJSON or over a
//! WebSocket. Every node derives the same events from the log (`shoal_raft::events`), so a
//! client may resume on another node with the last index it saw.
//!
//! ```text
//!  ?since=N            the events kept after log index N; 409 if this node no longer has
//!                      all of them (the message names the oldest index it can resume);
//!                      without since: every event kept, or with follow, none (from now on)
//!  ?follow=true        then every new event, until the client leaves
//!  ?topic=job,machine  only these topics (a comma list)
//!
//!  plain GET  ─▶ application/x-ndjson, one event per line
//!  WebSocket  ─▶ one event per text message; closes normally after the backlog without
//!                follow
//!  a follow the node must end (the client fell behind, the node caught up from a
//!  snapshot, shutdown) ends with {"error": "...", "resume_from": N}: reconnect with since=N;
//!  so does one whose key was revoked (within a second; a WebSocket closes with 1008)
//! ```
//!
//! The events of one applied batch are written together, so a stream never stops between
//! the events of one entry except when the connection itself breaks.
//!
//! A key sees what the rest of the API shows it: its own org's jobs, every machine, the
//! membership and the kill switch; the audit log and key and token changes need `admin`
//! (as `/v1/audit` and `/v1/keys` do).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use futures::future::BoxFuture;
use shoal_protocol::events::{Event, EventLine, StreamEnd, Topic, kind};
use shoal_protocol::keys::Scope;
use shoal_protocol::params::EventParams;
use shoal_protocol::{ApiError, ErrorCode};
use shoal_raft::{FollowError, Follower, Gone};

use super::{ApiQuery, Failure};
use crate::keys::{self, Caller};
use crate::node::Node;

/// The media type of a stream of JSON lines.
pub const NDJSON: &str = "application/x-ndjson";

/// The events one client gets: of the topics it asked for (all when `None`), those its
/// key may see.
#[derive(Debug, Clone)]
struct Topics {
    asked: Option<Vec<Topic>>,
    caller: Caller,
}

impl Topics {
    fn wants(&self, event: &Event) -> bool {
        self.asked.as_ref().is_none_or(|t| t.contains(&event.topic)) && visible(&self.caller, event)
    }

    /// The wanted events, one JSON line each.
    fn lines(&self, events: &[Event]) -> Vec<String> {
        events
            .iter()
            .filter(|e| self.wants(e))
            .map(|e| serde_json::to_string(e).expect("an event serializes"))
            .collect()
    }
}

/// Whether `caller` may see `event`.
pub(crate) fn visible(caller: &Caller, event: &Event) -> bool {
    let admin = caller.scope >= Scope::Admin;
    match event.topic {
        Topic::Machine => true,
        // Pruning names jobs of every org: admins only.
        Topic::Job | Topic::Session => event.detail.org().map_or(admin, |org| org == caller.org),
        Topic::Audit => admin,
        Topic::Fleet => {
            admin
                || ![
                    kind::KEY_CREATED,
                    kind::KEY_REVOKED,
                    kind::TOKEN_CREATED,
                    kind::TOKEN_USED,
                    kind::TOKEN_REVOKED,
                ]
                .contains(&event.kind.as_str())
        }
    }
}

/// `GET /v1/events[?since=N][&follow=true][&topic=T,...]`, NDJSON or a WebSocket.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventParams),
    responses(
        (status = OK, content((EventLine = "application/x-ndjson")), description = "One event per line (with follow=true the stream stays open; it ends early with a StreamEnd line); a WebSocket sends each line as a text message"),
        (status = CONFLICT, body = ApiError, description = "since is older than the oldest event kept: the answer names it"),
    ))]
pub async fn events(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<EventParams>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Failure> {
    let asked = match params.topic.as_deref() {
        Some(text) => Some(Topic::parse_list(text).map_err(ApiError::bad_request)?),
        None => None,
    };
    if asked.as_ref().is_some_and(|t| t.contains(&Topic::Audit)) {
        caller.require(Scope::Admin).map_err(|mut err| {
            err.message = format!("the audit topic: {}", err.message);
            Failure(err)
        })?;
    }
    let topics = Topics { asked, caller };
    // Taken before any upgrade, so a gap is a plain 409 answer.
    let feed = node.fleet.events();
    let (backlog, follower) = if params.follow {
        let (backlog, follower) = feed.follow(params.since).map_err(gone)?;
        (backlog, Some(follower))
    } else {
        let backlog = match params.since {
            Some(since) => feed.since(since).map_err(gone)?,
            None => feed.kept(),
        };
        (backlog, None)
    };
    let backlog = topics.lines(&backlog);
    Ok(match upgrade {
        Ok(upgrade) => upgrade
            .on_upgrade(move |socket| websocket(node, socket, topics, backlog, follower))
            .into_response(),
        Err(_) => ndjson(node, topics, backlog, follower),
    })
}

fn gone(err: Gone) -> Failure {
    Failure(ApiError::new(ErrorCode::Conflict, err.to_string()))
}

/// Why a follow ends before the client leaves.
enum Ended {
    /// The node could not go on (it fell behind, or caught up from a snapshot).
    Follow(FollowError),
    /// The caller's key no longer holds.
    Revoked { reason: String, resume_from: u64 },
}

impl Ended {
    fn reason(&self) -> String {
        match self {
            Ended::Follow(err) => err.to_string(),
            Ended::Revoked { reason, .. } => reason.clone(),
        }
    }

    /// The stream's last line.
    fn line(&self) -> String {
        let end = StreamEnd {
            error: self.reason(),
            resume_from: match self {
                Ended::Follow(err) => err.resume_from(),
                Ended::Revoked { resume_from, .. } => *resume_from,
            },
        };
        serde_json::to_string(&end).expect("a stream end serializes")
    }

    /// The WebSocket close code that goes with it.
    fn close_code(&self) -> u16 {
        match self {
            Ended::Follow(_) => close_code::ERROR,
            Ended::Revoked { .. } => close_code::POLICY,
        }
    }
}

/// The next followed events the client wants, as lines; an empty batch is skipped. Ends
/// when the follow does or the caller's key no longer holds (`revoked`, made once per
/// stream by [`keys::revoked`]).
async fn next_lines(
    follower: &mut Follower,
    topics: &Topics,
    revoked: &mut BoxFuture<'static, String>,
) -> Result<Vec<String>, Ended> {
    let wanted = async {
        loop {
            let lines = topics.lines(&follower.next().await.map_err(Ended::Follow)?);
            if !lines.is_empty() {
                return Ok(lines);
            }
        }
    };
    tokio::select! {
        next = wanted => next,
        reason = revoked => {
            Err(Ended::Revoked { reason, resume_from: follower.position() })
        }
    }
}

fn chunk(lines: Vec<String>) -> Bytes {
    let mut text = lines.join("\n");
    text.push('\n');
    Bytes::from(text)
}

enum Step {
    Backlog(Vec<String>, Option<Follower>),
    Live(Follower),
    Done,
}

/// The backlog, then (following) each batch as one body chunk until the client leaves or
/// the follow ends.
fn ndjson(
    node: Arc<Node>,
    topics: Topics,
    backlog: Vec<String>,
    follower: Option<Follower>,
) -> Response {
    let revoked = keys::revoked(node, &topics.caller);
    let start = (Step::Backlog(backlog, follower), revoked);
    let stream = futures::stream::unfold(start, move |(step, mut revoked)| {
        let topics = topics.clone();
        async move {
            let mut follower = match step {
                Step::Backlog(lines, follower) if !lines.is_empty() => {
                    let next = follower.map_or(Step::Done, Step::Live);
                    return Some((chunk(lines), (next, revoked)));
                }
                Step::Backlog(_, follower) => follower?,
                Step::Live(follower) => follower,
                Step::Done => return None,
            };
            match next_lines(&mut follower, &topics, &mut revoked).await {
                Ok(lines) => Some((chunk(lines), (Step::Live(follower), revoked))),
                Err(ended) => Some((chunk(vec![ended.line()]), (Step::Done, revoked))),
            }
        }
    });
    let body = Body::from_stream(stream.map(Ok::<_, Infallible>));
    ([(header::CONTENT_TYPE, NDJSON)], body).into_response()
}

/// The backlog, then (following) each event as one text message until the client closes
/// or the follow ends: then the end line and a close saying why (1011, or 1008 for a key
/// that no longer holds).
async fn websocket(
    node: Arc<Node>,
    mut socket: WebSocket,
    topics: Topics,
    backlog: Vec<String>,
    follower: Option<Follower>,
) {
    if send_all(&mut socket, backlog).await.is_err() {
        return;
    }
    let Some(mut follower) = follower else {
        return close(socket, close_code::NORMAL, "sent every event asked for").await;
    };
    let mut revoked = keys::revoked(node, &topics.caller);
    loop {
        tokio::select! {
            next = next_lines(&mut follower, &topics, &mut revoked) => match next {
                Ok(lines) => {
                    if send_all(&mut socket, lines).await.is_err() {
                        return;
                    }
                }
                Err(ended) => {
                    tracing::debug!(reason = %ended.reason(), "event stream ended");
                    if socket.send(Message::Text(ended.line().into())).await.is_ok() {
                        close(socket, ended.close_code(), &ended.reason()).await;
                    }
                    return;
                }
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

async fn send_all(socket: &mut WebSocket, lines: Vec<String>) -> Result<(), axum::Error> {
    for line in lines {
        socket.send(Message::Text(line.into())).await?;
    }
    Ok(())
}

/// Closes `socket` with `code` and `reason`, cut to the 123 bytes a close frame holds.
pub(super) async fn close(mut socket: WebSocket, code: u16, reason: &str) {
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
