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
use shoal_protocol::{ApiError, Command, ErrorCode};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

use crate::node::Node;
use crate::p2p::{Inbound, PeerRequest, PeerResponse, WriteOutcome};
use crate::writes::ATTEMPT_TIMEOUT;
use crate::{history, logs, proposer};

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
                        let forward = matches!(req.request, PeerRequest::Forward(_));
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
        PeerRequest::Forward(cmd) => {
            let checked = check_reporter(node, from, &cmd).and_then(|()| proposer::measure(&cmd));
            match checked {
                Ok(bytes) => PeerResponse::Write(write_as_leader(node, cmd, bytes).await),
                Err(err) => PeerResponse::Write(Err(err)),
            }
        }
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
        PeerRequest::Batch { action } => {
            PeerResponse::Batch(crate::batch::local(node, action).await)
        }
        PeerRequest::Exec {
            job,
            attempt,
            command,
            timeout_ms,
        } => {
            let limit = Duration::from_millis(timeout_ms);
            PeerResponse::Exec(crate::sessions::local(node, job, attempt, &command, limit).await)
        }
        PeerRequest::Join { token } => crate::join::answer(node, from, &token).await,
        PeerRequest::Hello => PeerResponse::Hello {
            gossip_addr: node.info.borrow().addr.gossip_addr.clone(),
        },
    };
    Some(response)
}

/// A job report must come from the machine its attempt was dispatched to.
fn check_reporter(node: &Node, from: PeerId, cmd: &Command) -> Result<(), ApiError> {
    let Command::ReportJob { job, attempt, .. } = cmd.inner() else {
        return Ok(());
    };
    let holder = node.fleet.read(|state| {
        let job = state.jobs.get(job)?;
        job.attempts
            .iter()
            .find(|a| a.number == *attempt)
            .map(|a| a.machine)
    });
    let Some(holder) = holder else {
        return Ok(()); // The state machine refuses it with the reason.
    };
    let holder_peer = node.member_addr(holder).map(|addr| addr.peer_id);
    if holder_peer.as_deref() == Some(from.to_string().as_str()) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Conflict,
            format!("job {job} attempt {attempt} runs on machine {holder}; only it reports on it"),
        ))
    }
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
