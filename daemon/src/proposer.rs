//! Batches the leader's proposals: writes that arrive while earlier ones are being
//! committed travel together as one [`Command::Batch`] log entry, so many concurrent
//! clients cost one Raft round, not one each.
//!
//! ```text
//!  write ─┐                      ┌─▶ client_write(cmd)             (one waiting)
//!  write ─┼─▶ queue ─▶ proposer ─┤
//!  write ─┘   (up to MAX_BATCH)  └─▶ client_write(Batch[cmd, ...])  (many waiting)
//! ```

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use shoal_protocol::{ApiError, Command, ErrorCode, Response};
use shoal_raft::Raft;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::p2p::WriteOutcome;

/// Most commands in one entry.
pub const MAX_BATCH: usize = 512;
/// Entries proposed and not yet committed at once; commands queue behind them and batch.
pub const IN_FLIGHT: usize = 4;

type Reply = oneshot::Sender<Result<WriteOutcome, ApiError>>;

/// Hands commands to the proposer task.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::UnboundedSender<(Command, Reply)>,
}

impl Proposer {
    /// Starts the proposer task for `raft`; it ends when every `Proposer` is dropped.
    pub fn start(raft: Raft) -> Proposer {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, pending));
        Proposer { queue }
    }

    /// Proposes `cmd` and waits for it to be committed and applied.
    pub async fn propose(&self, cmd: Command) -> Result<WriteOutcome, ApiError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || ApiError::new(ErrorCode::Unavailable, "this node is shutting down");
        self.queue.send((cmd, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(raft: Raft, mut pending: mpsc::UnboundedReceiver<(Command, Reply)>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // Waiting for a free slot first lets commands pile up into a batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = pending.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match pending.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            commit(&raft, batch).await;
            drop(slot);
        });
    }
}

async fn commit(raft: &Raft, mut batch: Vec<(Command, Reply)>) {
    if batch.len() == 1 {
        let (cmd, reply) = batch.pop().expect("one command");
        let _ = reply.send(write(raft, cmd).await);
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
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

/// One `client_write`: `NoLeader` when this node is not the leader, so callers retry.
async fn write(raft: &Raft, cmd: Command) -> Result<WriteOutcome, ApiError> {
    match raft.client_write(cmd.into()).await {
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
