//! The write and read paths every node offers, and the answers to peer requests.
//!
//! A write goes to the leader: proposed locally when this node leads, forwarded over
//! peer RPC otherwise. A linearizable read asks the leader for a read index and waits
//! until the local replica has applied it.

use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use openraft::error::RaftError;
use shoal_protocol::{ApiError, Command, ErrorCode};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::node::{Node, WRITE_TIMEOUT};
use crate::p2p::{Inbound, P2pError, PeerRequest, PeerResponse, WriteOutcome};
use crate::{history, logs};

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
                        let response = answer(&node, req.from, req.request).await;
                        let _ = req.reply.send(response);
                    });
                }
                None => break,
            },
        }
    }
    answering.shutdown().await;
}

async fn answer(node: &Node, from: PeerId, request: PeerRequest) -> PeerResponse {
    match request {
        PeerRequest::Append(req) => PeerResponse::Append(node.raft.append_entries(req).await),
        PeerRequest::Vote(req) => PeerResponse::Vote(node.raft.vote(req).await),
        PeerRequest::Snapshot(req) => PeerResponse::Snapshot(node.raft.install_snapshot(req).await),
        PeerRequest::Forward(cmd) => match check_reporter(node, from, &cmd) {
            Ok(()) => PeerResponse::Write(write_as_leader(node, cmd).await),
            Err(err) => PeerResponse::Write(Err(err)),
        },
        PeerRequest::ReadIndex => PeerResponse::ReadIndex(read_index_as_leader(node).await),
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
    }
}

/// A job report must come from the machine its attempt was dispatched to.
fn check_reporter(node: &Node, from: PeerId, cmd: &Command) -> Result<(), ApiError> {
    let Command::ReportJob { job, attempt, .. } = cmd else {
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

/// Proposes `cmd` if this node leads (batched with concurrent writes); `NoLeader`
/// otherwise so the sender retries. Every write passes here: a command the fleet's
/// protocol level does not allow yet is refused before it is proposed.
async fn write_as_leader(node: &Node, cmd: Command) -> Result<WriteOutcome, ApiError> {
    crate::levels::check_write(node, &cmd)?;
    node.proposer.propose(cmd).await
}

async fn read_index_as_leader(node: &Node) -> Result<u64, ApiError> {
    match node.raft.ensure_linearizable().await {
        Ok(log_id) => Ok(log_id.map(|id| id.index).unwrap_or(0)),
        Err(RaftError::APIError(_)) => Err(not_leader()),
        Err(err) => Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("read index failed: {err}"),
        )),
    }
}

/// Sends a peer request to the current leader, retrying while there is none or the
/// request provably did not reach it. `ask_local` runs when this node leads.
async fn to_leader<T, F, Fut>(
    node: &Node,
    request: impl Fn() -> PeerRequest,
    ask_local: F,
    unpack: impl Fn(PeerResponse) -> Option<Result<T, ApiError>>,
) -> Result<T, ApiError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let deadline = Instant::now() + WRITE_TIMEOUT;
    loop {
        let attempt = match node.leader() {
            Some(leader) if leader == node.id => ask_local().await,
            Some(leader) => match node.member_addr(leader) {
                Some(addr) => {
                    let left = deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(100));
                    match node
                        .p2p
                        .request(&addr.peer_id, &addr.p2p_addr, request(), left)
                        .await
                    {
                        Ok(response) => unpack(response).unwrap_or_else(|| {
                            Err(ApiError::new(
                                ErrorCode::Unavailable,
                                "the leader refused or misunderstood the request",
                            ))
                        }),
                        Err(P2pError::Timeout(_)) => {
                            return Err(ApiError::new(
                                ErrorCode::Unavailable,
                                "the leader did not answer in time; the write may or may not have been applied",
                            ));
                        }
                        Err(err) => Err(ApiError::new(
                            ErrorCode::NoLeader,
                            format!("cannot reach the leader: {err}"),
                        )),
                    }
                }
                None => Err(ApiError::new(
                    ErrorCode::NoLeader,
                    format!("no address known for leader {leader}"),
                )),
            },
            None => Err(ApiError::new(
                ErrorCode::NoLeader,
                "no leader is elected yet",
            )),
        };
        match attempt {
            Err(err) if err.code == ErrorCode::NoLeader && Instant::now() < deadline => {
                let mut metrics = node.raft.metrics();
                let _ = tokio::time::timeout(Duration::from_millis(50), metrics.changed()).await;
            }
            other => return other,
        }
    }
}

impl Node {
    /// Commits `cmd` through the leader and returns the state machine's answer once this
    /// replica has applied it too, so a read here right after sees the write.
    pub async fn write(&self, cmd: Command) -> Result<WriteOutcome, ApiError> {
        crate::levels::check_before_forwarding(self, &cmd).await?;
        let outcome = to_leader(
            self,
            || PeerRequest::Forward(cmd.clone()),
            || write_as_leader(self, cmd.clone()),
            |response| match response {
                PeerResponse::Write(result) => Some(result),
                _ => None,
            },
        )
        .await?;
        self.wait_applied(outcome.index).await?;
        Ok(outcome)
    }

    /// Waits until this replica has applied everything committed before the call,
    /// so a read after it is linearizable.
    pub async fn read_barrier(&self) -> Result<(), ApiError> {
        let index = to_leader(
            self,
            || PeerRequest::ReadIndex,
            || read_index_as_leader(self),
            |response| match response {
                PeerResponse::ReadIndex(result) => Some(result),
                _ => None,
            },
        )
        .await?;
        self.wait_applied(index).await
    }

    /// Waits until this replica has applied the log up to `index`.
    async fn wait_applied(&self, index: u64) -> Result<(), ApiError> {
        let mut applied = self.fleet.applied();
        tokio::time::timeout(
            WRITE_TIMEOUT,
            applied.wait_for(|at| at.unwrap_or(0) >= index),
        )
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Unavailable,
                "this replica did not catch up in time",
            )
        })?
        .map_err(|_| ApiError::new(ErrorCode::Unavailable, "this replica is shutting down"))?;
        Ok(())
    }
}
