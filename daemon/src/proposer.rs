//! Batches the leader's proposals: writes that arrive while earlier ones are being
//! committed travel together as one [`Command::Batch`] log entry, so many concurrent
//! clients cost one Raft round, not one each.
//!
//! ```text
//!  write ─┐                      ┌─▶ client_write(cmd)             (one waiting)
//!  write ─┼─▶ queue ─▶ proposer ─┤
//!  write ─┘   (up to MAX_BATCH   └─▶ client_write(Batch[cmd, ...])  (many waiting)
//!              and BATCH_BYTES)
//! ```
//!
//! A batch closes at [`MAX_BATCH`] commands or [`BATCH_BYTES`] encoded bytes, and no
//! command over [`MAX_ENTRY_BYTES`] is taken at all, so every entry fits a peer message
//! with room to spare and crosses a modest link within one Raft heartbeat. A proposal openraft does not answer within [`COMMIT_TIMEOUT`]
//! (leadership lost, the entry overwritten by a snapshot) fails back to its callers, who
//! retry it under the same request id.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use shoal_protocol::{ApiError, Command, ErrorCode, Response, frame};
use shoal_raft::Raft;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::p2p::{MAX_MESSAGE_BYTES, WriteOutcome};

/// Most commands in one entry.
pub const MAX_BATCH: usize = 512;
/// A batch takes no more commands once it holds this many encoded bytes.
pub const BATCH_BYTES: usize = 256 * 1024;
/// The largest command accepted, so the largest entry: twice a batch. A follower must take
/// an entry in within one Raft heartbeat (openraft's deadline for an append): 512 KiB in
/// 100 ms is about 45 Mbit/s. It fits a peer message 128 times over.
pub const MAX_ENTRY_BYTES: usize = 2 * BATCH_BYTES;
const _: () = assert!(MAX_ENTRY_BYTES <= MAX_MESSAGE_BYTES / 16);
/// Entries proposed and not yet committed at once; commands queue behind them and batch.
pub const IN_FLIGHT: usize = 4;
/// How long one proposal may wait for openraft before its callers hear it failed.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(2);

type Reply = oneshot::Sender<Result<WriteOutcome, ApiError>>;

/// One command waiting to be proposed, with its encoded size.
struct Pending {
    cmd: Command,
    bytes: usize,
    reply: Reply,
}

/// Hands commands to the proposer task.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::UnboundedSender<Pending>,
}

/// The encoded size of `cmd` (or of many commands) without keeping the encoding.
pub fn encoded_len<T: serde::Serialize + ?Sized>(cmd: &T) -> Result<usize, ApiError> {
    frame::body_len(cmd)
        .map_err(|err| ApiError::new(ErrorCode::Internal, format!("unencodable write: {err}")))
}

/// The encoded size of `cmd`, or a 413 naming it and the limit when it may not become a
/// log entry.
pub fn measure(cmd: &Command) -> Result<usize, ApiError> {
    let bytes = encoded_len(cmd)?;
    if bytes > MAX_ENTRY_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the write encodes to {bytes} bytes, over the {MAX_ENTRY_BYTES} byte limit of one log entry"
            ),
        ));
    }
    Ok(bytes)
}

impl Proposer {
    /// Starts the proposer task for `raft`; it ends when every `Proposer` is dropped.
    pub fn start(raft: Raft) -> Proposer {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, pending));
        Proposer { queue }
    }

    /// Proposes `cmd`, whose encoded size [`measure`] gave as `bytes`, and waits for it to
    /// be committed and applied (or to fail, at most [`COMMIT_TIMEOUT`] after it is proposed).
    pub async fn propose(&self, cmd: Command, bytes: usize) -> Result<WriteOutcome, ApiError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || ApiError::new(ErrorCode::Unavailable, "this node is shutting down");
        self.queue
            .send(Pending { cmd, bytes, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(raft: Raft, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    // A command that did not fit the last batch opens the next one.
    let mut carried: Option<Pending> = None;
    loop {
        // Waiting for a free slot first lets commands pile up into a batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(first) => first,
            None => match queue.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < BATCH_BYTES {
            let Ok(next) = queue.try_recv() else { break };
            if bytes + next.bytes > BATCH_BYTES {
                carried = Some(next);
                break;
            }
            bytes += next.bytes;
            batch.push(next);
        }
        // A caller that gave up retries elsewhere under the same request id.
        batch.retain(|pending| !pending.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            commit(&raft, batch).await;
            drop(slot);
        });
    }
}

async fn commit(raft: &Raft, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        let pending = batch.pop().expect("one command");
        let _ = pending.reply.send(write(raft, pending.cmd).await);
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<Reply>) =
        batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    match write(raft, Command::Batch(commands)).await {
        Ok(WriteOutcome {
            index,
            response: Response::Batch(responses),
        }) if responses.len() == replies.len() => {
            for (reply, response) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok(WriteOutcome { index, response }));
            }
        }
        Ok(other) => {
            let err = ApiError::new(
                ErrorCode::Internal,
                format!("a batch was answered with {:?}", other.response),
            );
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
        Err(err) => {
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

/// One `client_write`: `NoLeader` when this node is not the leader, `Unavailable` when
/// openraft did not answer in time; callers retry both.
async fn write(raft: &Raft, cmd: Command) -> Result<WriteOutcome, ApiError> {
    let written = tokio::time::timeout(COMMIT_TIMEOUT, raft.client_write(cmd.into()))
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "the write was not committed within {COMMIT_TIMEOUT:?} (leadership may have moved)"
                ),
            )
        })?;
    match written {
        Ok(written) => Ok(WriteOutcome {
            index: written.log_id.index,
            response: written.data,
        }),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(ApiError::new(
            ErrorCode::NoLeader,
            "this node is not the leader",
        )),
        Err(err) => Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("write failed: {err}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::{Labels, MachineId};

    #[test]
    fn a_command_over_the_entry_limit_is_a_413_naming_both_sizes() {
        let small = Command::RemoveMachine { id: MachineId(1) };
        assert!(measure(&small).unwrap() < 64);

        let huge = Command::LabelMachine {
            id: MachineId(1),
            set: Labels::default(),
            remove: vec!["y".repeat(MAX_ENTRY_BYTES)],
        };
        let err = measure(&huge).unwrap_err();
        assert_eq!(err.code, ErrorCode::PayloadTooLarge);
        assert!(
            err.message.contains(&MAX_ENTRY_BYTES.to_string()),
            "{}",
            err.message
        );
    }
}
