//! The answers to peer requests, and the leader's side of forwarded writes and reads.
//!
//! A forwarded write is proposed here when this node leads (batched with concurrent
//! writes); a read-index request is answered with `ensure_linearizable`. Each waits on Raft
//! for at most [`ATTEMPT_TIMEOUT`] and the sender tries again (see `writes.rs`); appends,
//! votes and snapshots for at most [`RAFT_ANSWER_TIMEOUT`]. No answer is owed forever.

use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use openraft::error::RaftError;
use openraft::raft::AppendEntriesResponse;
use shoal_protocol::keys::Scope;
use shoal_protocol::{ApiError, Command, ErrorCode, MachineId};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

use crate::node::Node;
use crate::p2p::{Credential, Inbound, PeerRequest, PeerResponse, WriteOutcome};
use crate::writes::ATTEMPT_TIMEOUT;
use crate::{history, identity, logs, peer_auth, proposer};

/// How long Raft may take over an append, vote or snapshot a peer sent; past it the
/// request goes unanswered (the sender's own timeout has run out by then).
const RAFT_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers peer requests until shutdown, each in its own task.
pub async fn serve_inbound(
    node: Arc<Node>,
    mut inbound: mpsc::Receiver<Inbound>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Answers in flight end with the node: none may outlive it holding its store.
    let mut answering = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            Some(_) = answering.join_next(), if !answering.is_empty() => {}
            next = inbound.recv() => match next {
                Some(req) => {
                    let node = node.clone();
                    answering.spawn(async move {
                        #[cfg(feature = "testsuite")]
                        let forward = matches!(
                            req.request,
                            PeerRequest::Forward(_) | PeerRequest::ForwardAs { .. }
                        );
                        let Some(response) = answer(&node, req.from, req.request).await else {
                            return; // unanswered: the sender sees the stream close
                        };
                        #[cfg(feature = "testsuite")]
                        if forward && node.faults.drop_forward_answer() {
                            return; // applied, but the answer is lost on the way back
                        }
                        let _ = req.reply.send(response);
                    });
                }
                None => break,
            },
        }
    }
    answering.shutdown().await;
}

/// What Raft answered a peer's request, if it did within [`RAFT_ANSWER_TIMEOUT`].
async fn bounded<T>(answer: impl std::future::Future<Output = T>) -> Option<T> {
    timeout(RAFT_ANSWER_TIMEOUT, answer).await.ok()
}

/// The answer to one peer request; `None` leaves it unanswered.
async fn answer(node: &Node, from: PeerId, request: PeerRequest) -> Option<PeerResponse> {
    if let Some(claims) = raft_sender_claimed(&request, &from)
        && let Err(why) = peer_auth::raft_sender(node, &from, claims)
    {
        return refused(from, why);
    }
    let response = match request {
        PeerRequest::Append(req) => {
            // Its arrival is news of a leader already: a large append applied slowly
            // under load must not make this voter stand for election meanwhile.
            if req.vote.leader_id().term >= node.raft.metrics().borrow().current_term {
                node.leadership.heard_from_leader();
            }
            let answer = bounded(node.raft.append_entries(req)).await?;
            if matches!(&answer, Ok(reply) if !matches!(reply, AppendEntriesResponse::HigherVote(_)))
            {
                node.leadership.heard_from_leader();
            }
            PeerResponse::Append(answer)
        }
        PeerRequest::Vote(req) => {
            let answer = bounded(node.raft.vote(req)).await?;
            if matches!(&answer, Ok(reply) if reply.vote_granted) {
                node.leadership.heard_from_leader();
            }
            PeerResponse::Vote(answer)
        }
        PeerRequest::Snapshot(req) => {
            let answer = bounded(node.raft.install_snapshot(req)).await?;
            if answer.is_ok() {
                node.leadership.heard_from_leader();
            }
            PeerResponse::Snapshot(answer)
        }
        PeerRequest::Forward(cmd) => forwarded(node, from, cmd, None, true).await,
        PeerRequest::ForwardAs {
            command,
            credential,
        } => forwarded(node, from, command, credential, false).await,
        PeerRequest::ReadIndex => PeerResponse::ReadIndex(read_index_as_leader(node).await),
        PeerRequest::PreVote(ask) => PeerResponse::PreVote {
            granted: crate::leadership::answer_pre_vote(node, from, &ask),
        },
        PeerRequest::Logs {
            job,
            attempt,
            from,
            wait_ms,
        } => {
            let wait = Duration::from_millis(wait_ms).min(logs::FOLLOW_WAIT);
            PeerResponse::Logs(logs::local(node, job, attempt, from, wait).await)
        }
        PeerRequest::History { since_ms } => {
            PeerResponse::History(Ok(history::local(node, since_ms)))
        }
        PeerRequest::Batch { action, credential } => {
            match peer_auth::user_behind(node, credential.as_ref(), Scope::Admin).await {
                Ok(_) => PeerResponse::Batch(crate::batch::local(node, action).await),
                Err(err) => PeerResponse::Batch(Err(refusal(from, "a batch action", err))),
            }
        }
        PeerRequest::Exec {
            job,
            attempt,
            command,
            timeout_ms,
            credential,
        } => {
            let limit = Duration::from_millis(timeout_ms);
            let allowed = peer_auth::user_behind(node, credential.as_ref(), Scope::Operate)
                .await
                .and_then(|caller| crate::sessions::check_owner(node, job, caller.as_ref()));
            match allowed {
                Ok(()) => PeerResponse::Exec(
                    crate::sessions::local(node, job, attempt, &command, limit).await,
                ),
                Err(err) => PeerResponse::Exec(Err(refusal(from, "an exec", err))),
            }
        }
        PeerRequest::Join { token, name } => {
            crate::join::answer(node, from, &token, name.as_deref()).await
        }
        PeerRequest::FleetCa => crate::tls::fetch::answer(node, &from),
        PeerRequest::JoinChallenge { token_id, nonce } => {
            crate::join::prove(node, from, &token_id, &nonce)
        }
        PeerRequest::Hello => PeerResponse::Hello {
            gossip_addr: node.info.borrow().addr.gossip_addr.clone(),
        },
    };
    Some(response)
}

/// For Raft traffic, the machine the sender says it is (the candidate or leader its vote
/// names; for a pre-vote, itself).
fn raft_sender_claimed(request: &PeerRequest, from: &PeerId) -> Option<MachineId> {
    let vote = match request {
        PeerRequest::Append(req) => &req.vote,
        PeerRequest::Vote(req) => &req.vote,
        PeerRequest::Snapshot(req) => &req.vote,
        PeerRequest::PreVote(_) => return Some(identity::machine_id(from)),
        _ => return None,
    };
    // A vote that names no one claims no one this node knows.
    Some(vote.leader_id().voted_for().unwrap_or(MachineId(0)))
}

/// A write another machine forwarded: proposed if it may cause it (see [`peer_auth`]),
/// refused with the reason otherwise, and the refusal logged with who tried.
async fn forwarded(
    node: &Node,
    from: PeerId,
    cmd: Command,
    credential: Option<Credential>,
    legacy: bool,
) -> PeerResponse {
    let checked = node.fleet.read(|state| {
        peer_auth::Forwarded {
            state,
            cluster_secret: &node.cluster_secret,
            from: identity::machine_id(&from),
            credential: credential.as_ref(),
            legacy,
        }
        .check(&cmd)
    });
    let checked = checked
        .map_err(|err| refusal(from, cmd.inner().tag(), err))
        .and_then(|()| proposer::measure(&cmd));
    match checked {
        Ok(bytes) => PeerResponse::Write(write_as_leader(node, cmd, bytes).await),
        Err(err) => PeerResponse::Write(Err(err)),
    }
}

/// `err`, logged as a refusal of what `from` asked.
fn refusal(from: PeerId, what: &str, err: ApiError) -> ApiError {
    tracing::warn!(machine = %identity::machine_id(&from), peer = %from, reason = %err.message, "refused {what} from another machine");
    err
}

/// An unanswerable request, logged: the sender sees it refused.
fn refused(from: PeerId, why: String) -> Option<PeerResponse> {
    tracing::warn!(machine = %identity::machine_id(&from), peer = %from, reason = %why, "refused a peer request");
    Some(PeerResponse::Refused(why))
}

fn not_leader() -> ApiError {
    ApiError::new(ErrorCode::NoLeader, "this node is not the leader")
}

fn not_in_time(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Unavailable,
        format!("{what} was not answered within {ATTEMPT_TIMEOUT:?}; retry"),
    )
}

/// Proposes `cmd` (`bytes` long, encoded) if this node leads, batched with concurrent
/// writes; `NoLeader` otherwise, and `Unavailable` when it is not committed in time, so
/// the sender retries. Every write passes here: a command the fleet's protocol level does
/// not allow yet is refused before it is proposed.
pub(crate) async fn write_as_leader(
    node: &Node,
    cmd: Command,
    bytes: usize,
) -> Result<WriteOutcome, ApiError> {
    crate::levels::check_write(node, &cmd)?;
    #[cfg(feature = "testsuite")]
    if node.faults.unanswered(&cmd) {
        return std::future::pending().await;
    }
    timeout(ATTEMPT_TIMEOUT, node.proposer.propose(cmd, bytes))
        .await
        .map_err(|_| not_in_time("the write"))?
}

/// The leader's read index; `NoLeader` on a follower, `Unavailable` when the leader
/// cannot confirm it still leads in time.
pub(crate) async fn read_index_as_leader(node: &Node) -> Result<u64, ApiError> {
    let confirmed = timeout(ATTEMPT_TIMEOUT, node.raft.ensure_linearizable())
        .await
        .map_err(|_| not_in_time("the read index"))?;
    match confirmed {
        Ok(log_id) => Ok(log_id.map(|id| id.index).unwrap_or(0)),
        Err(RaftError::APIError(_)) => Err(not_leader()),
        Err(err) => Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("read index failed: {err}"),
        )),
    }
}
