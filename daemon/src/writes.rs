//! The write and read-barrier paths every node offers: to the leader, under one deadline,
//! retried until it or a final answer comes.
//!
//! ```text
//!  Node::write(cmd) ─▶ Request { id (new), at_ms, cmd }  ── over MAX_ENTRY_BYTES? 413
//!        │
//!        └─▶ try: leader here? proposer (ATTEMPT_TIMEOUT) : forward over peer RPC
//!              ├─ answered ───────────────────────────────▶ wait for the local replica
//!              └─ no leader, not committed in time, the connection broke, no answer
//!                   ─▶ wait for a leader (or a moment) ─▶ try again, same id
//! ```
//!
//! A write carries its request id to the leader and the state machine applies an id once
//! (see `shoal_protocol::requests`), so sending it again after an answer was lost cannot
//! apply it twice. Every wait on Raft here has a deadline; none can hold its caller longer
//! than [`WRITE_TIMEOUT`] plus the wait for the local replica.
//!
//! Request ids need protocol level 3: in a fleet below it (a rolling upgrade) a write goes
//! bare, and is sent again only when it surely did not reach Raft (no leader yet, or the
//! leader said it is not the leader); an answer lost or late is an error saying the write
//! may or may not have been applied.

use std::time::Duration;

use shoal_protocol::levels::{BATCH_AUDIT_LEVEL, PEER_AUTH_LEVEL};
use shoal_protocol::requests::{REQUEST_LEVEL, RequestId};
use shoal_protocol::{ApiError, Command, ErrorCode, Response};
use tokio::time::{Instant, timeout};

use crate::keys::Caller;
use crate::node::{Node, WRITE_TIMEOUT, now_ms};
use crate::p2p::{Credential, P2pError, PeerRequest, PeerResponse, WriteOutcome};
use crate::proposer;
use crate::rpc::{read_index_as_leader, write_as_leader};

/// How long one try may take: a proposal here, or a write forwarded to the leader. A
/// try that takes longer goes to whoever leads by then.
pub const ATTEMPT_TIMEOUT: Duration = proposer::COMMIT_TIMEOUT;
/// How much longer a forward waits than the leader spends on it, for the way back.
const FORWARD_SLACK: Duration = Duration::from_secs(1);
/// The longest pause between tries, when no leader is known or the same one failed.
const MAX_PAUSE: Duration = Duration::from_millis(250);

/// `cmd` under a new request id, stamped now: the form every write travels in once the
/// fleet (as this replica knows it) is at level 3; before that, `cmd` as it is.
pub fn request(node: &Node, cmd: Command) -> Command {
    let fleet_level = node.fleet.read(|state| state.fleet_level);
    match cmd {
        request @ Command::Request { .. } => request,
        cmd if fleet_level < REQUEST_LEVEL => cmd,
        cmd => Command::Request {
            id: RequestId(rand::random()),
            at_ms: now_ms(),
            command: Box::new(cmd),
        },
    }
}

/// How many commands, of these encoded sizes in order, go in each part: as many as keep
/// a part within [`proposer::BATCH_BYTES`] (a command larger than that goes alone).
fn parts(sizes: &[usize]) -> Vec<usize> {
    let mut parts = Vec::new();
    let (mut count, mut bytes) = (0, 0);
    for &size in sizes {
        if count > 0 && bytes + size > proposer::BATCH_BYTES {
            parts.push(count);
            (count, bytes) = (0, 0);
        }
        count += 1;
        bytes += size;
    }
    if count > 0 {
        parts.push(count);
    }
    parts
}

/// How one try ended.
enum Try<T> {
    /// An answer to pass on, success or not.
    Done(Result<T, ApiError>),
    /// Nothing committed that we know of: try again while there is time.
    Again(ApiError),
}

/// An answer: `NoLeader` (nothing was proposed) is tried again; `Unavailable` (it may
/// have been proposed) too when `resend` is safe.
fn settle<T>(result: Result<T, ApiError>, resend: bool) -> Try<T> {
    match result {
        Err(err) if err.code == ErrorCode::NoLeader => Try::Again(err),
        Err(err) if err.code == ErrorCode::Unavailable => unsure(err, resend),
        done => Try::Done(done),
    }
}

/// A try that may or may not have reached Raft: tried again when `resend` is safe (a
/// request id, or a read), else an error that says so.
fn unsure<T>(err: ApiError, resend: bool) -> Try<T> {
    if resend {
        return Try::Again(err);
    }
    Try::Done(Err(ApiError::new(
        ErrorCode::Unavailable,
        format!(
            "{}; the write may or may not have been applied",
            err.message
        ),
    )))
}

/// Sends a peer request to the current leader, or runs `ask_local` when this node leads,
/// trying again while the answer is "not now", or (when `resend` is safe) lost, until
/// [`WRITE_TIMEOUT`].
async fn to_leader<T, F, Fut>(
    node: &Node,
    resend: bool,
    request: impl Fn() -> PeerRequest,
    ask_local: F,
    unpack: impl Fn(PeerResponse) -> Option<Result<T, ApiError>>,
) -> Result<T, ApiError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let deadline = Instant::now() + WRITE_TIMEOUT;
    let mut pause = Duration::from_millis(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let tried = node.leader();
        let outcome = match tried {
            Some(leader) if leader == node.id => {
                match timeout(left.min(ATTEMPT_TIMEOUT), ask_local()).await {
                    Ok(result) => settle(result, resend),
                    Err(_) => unsure(
                        ApiError::new(
                            ErrorCode::Unavailable,
                            "this node leads but its proposal was not answered in time",
                        ),
                        resend,
                    ),
                }
            }
            Some(leader) => match node.member_addr(leader) {
                Some(addr) => {
                    let wait = left.min(ATTEMPT_TIMEOUT + FORWARD_SLACK);
                    let answer = node
                        .p2p
                        .request(&addr.peer_id, &addr.p2p_addr, request(), wait)
                        .await;
                    match answer {
                        Ok(PeerResponse::Refused(reason)) => Try::Again(ApiError::new(
                            ErrorCode::Unavailable,
                            format!("the leader refused the request: {reason}"),
                        )),
                        Ok(response) => match unpack(response) {
                            Some(result) => settle(result, resend),
                            None => Try::Done(Err(ApiError::new(
                                ErrorCode::Internal,
                                "the leader answered with another kind of message",
                            ))),
                        },
                        Err(err @ P2pError::Closed) => Try::Done(Err(ApiError::new(
                            ErrorCode::Unavailable,
                            format!("this node is shutting down: {err}"),
                        ))),
                        Err(err @ P2pError::TooLarge { .. }) => Try::Done(Err(ApiError::new(
                            ErrorCode::PayloadTooLarge,
                            err.to_string(),
                        ))),
                        // Sent or not, answered or not: the same id makes the retry safe.
                        Err(err) => unsure(
                            ApiError::new(
                                ErrorCode::Unavailable,
                                format!("no answer from the leader: {err}"),
                            ),
                            resend,
                        ),
                    }
                }
                None => Try::Again(ApiError::new(
                    ErrorCode::NoLeader,
                    format!("no address known for leader {leader}"),
                )),
            },
            None => Try::Again(ApiError::new(
                ErrorCode::NoLeader,
                "no leader is elected yet",
            )),
        };
        let err = match outcome {
            Try::Done(result) => return result,
            Try::Again(err) => err,
        };
        let mut metrics = node.raft.metrics();
        if metrics.borrow().running_state.is_err() {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                "this node is shutting down",
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(err);
        }
        tracing::debug!(error = %err.message, "trying the leader again");
        // At once when another leader is known; otherwise after a pause.
        let moved = |m: &openraft::RaftMetrics<_, _>| {
            m.current_leader.is_some() && m.current_leader != tried
        };
        let _ = timeout(pause.min(left), metrics.wait_for(moved)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

impl Node {
    /// Commits `cmd`, a write this machine makes on its own (its reports, the leader's
    /// passes), through the leader under a new request id and returns the state
    /// machine's answer once this replica has applied it too, so a read here right after
    /// sees the write.
    pub async fn write(&self, cmd: Command) -> Result<WriteOutcome, ApiError> {
        self.send_write(request(self, cmd), None).await
    }

    /// [`Node::write`] for a user's change: recorded in the audit log under the caller's
    /// key, which travels with it so the leader checks it again.
    pub async fn write_as(&self, caller: &Caller, cmd: Command) -> Result<WriteOutcome, ApiError> {
        let cmd = request(self, caller.audited(cmd));
        self.send_write(cmd, Some(caller.credential.clone())).await
    }

    /// [`Node::write_as`] for many changes at once, and the answer to each in order. They
    /// go as few writes as keep each log entry within the proposer's batch size (one request
    /// id, one entry and one audit entry per part, the parts proposed together): an entry
    /// must reach a follower within one Raft heartbeat. A fleet below
    /// [`BATCH_AUDIT_LEVEL`] audits each change on its own.
    pub async fn write_each_as(
        &self,
        caller: &Caller,
        cmds: Vec<Command>,
    ) -> Result<Vec<Response>, ApiError> {
        let one_entry = self.fleet.read(|state| state.fleet_level) >= BATCH_AUDIT_LEVEL;
        let cmds: Vec<Command> = match one_entry {
            true => cmds,
            false => cmds.into_iter().map(|cmd| caller.audited(cmd)).collect(),
        };
        // Each part is measured again (and refused when too large) as it is sent.
        let sizes = cmds
            .iter()
            .map(proposer::encoded_len)
            .collect::<Result<Vec<_>, _>>()?;
        let mut cmds = cmds.into_iter();
        let writes = parts(&sizes).into_iter().map(|count| {
            let part: Vec<Command> = cmds.by_ref().take(count).collect();
            let size = part.len();
            let part = match one_entry {
                true => caller.audited(Command::Batch(part)),
                false => Command::Batch(part),
            };
            let write = request(self, part);
            async move {
                let outcome = self
                    .send_write(write, Some(caller.credential.clone()))
                    .await?;
                match outcome.response {
                    Response::Batch(answers) if answers.len() == size => Ok(answers),
                    Response::Rejected { code, message } => Err(ApiError::new(code, message)),
                    other => Err(ApiError::new(
                        ErrorCode::Internal,
                        format!("{size} writes were answered with {other:?}"),
                    )),
                }
            }
        });
        let answers = futures::future::try_join_all(writes.collect::<Vec<_>>()).await?;
        Ok(answers.into_iter().flatten().collect())
    }

    /// [`Node::write`] for a write another party vouches for with `credential` (a job
    /// token, a registration token), which the leader checks again.
    pub async fn write_with(
        &self,
        cmd: Command,
        credential: Credential,
    ) -> Result<WriteOutcome, ApiError> {
        self.send_write(request(self, cmd), Some(credential)).await
    }

    /// [`Node::write`] for a command already made a [`request`]: sending the same request
    /// again (after an error, say) applies it at most once. A command that is not a
    /// request yet is made one here.
    pub async fn write_request(&self, req: Command) -> Result<WriteOutcome, ApiError> {
        self.send_write(request(self, req), None).await
    }

    async fn send_write(
        &self,
        cmd: Command,
        credential: Option<Credential>,
    ) -> Result<WriteOutcome, ApiError> {
        let bytes = proposer::measure(&cmd)?;
        crate::levels::check_before_forwarding(self, &cmd).await?;
        let resend = matches!(cmd, Command::Request { .. });
        // A build below the level reads no credential: send it the older form. Asked at
        // each try, as the leader sends a write in that form back once the level is raised.
        let forward = || match self.fleet.read(|state| state.fleet_level) >= PEER_AUTH_LEVEL {
            true => PeerRequest::ForwardAs {
                command: cmd.clone(),
                credential: credential.clone(),
            },
            false => PeerRequest::Forward(cmd.clone()),
        };
        let outcome = to_leader(
            self,
            resend,
            forward,
            || write_as_leader(self, cmd.clone(), bytes),
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
            true,
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
        timeout(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_writes_go_in_parts_within_the_batch_size() {
        let batch = proposer::BATCH_BYTES;
        assert_eq!(parts(&[10]), [1]);
        assert_eq!(parts(&[batch / 1000; 1000]), [1000]);
        // 1,000 commands of a 500th of a batch: 500 a part.
        assert_eq!(parts(&[batch / 500; 1000]), [500, 500]);
        // Sizes as they come: big ones are not packed with what would overflow the part.
        assert_eq!(parts(&[batch / 2, batch / 4, batch / 2, 10]), [2, 2]);
        // A command larger than a batch goes alone, and never makes an empty part.
        assert_eq!(parts(&[5 * batch]), [1]);
        assert_eq!(parts(&[10, 5 * batch, 10]), [1, 1, 1]);
        assert!(parts(&[]).is_empty());
    }
}
