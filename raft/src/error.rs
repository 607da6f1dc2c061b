//! The crate's errors: [`StoreError`] for the on-disk stores, [`RaftError`] for Raft config.
//!
//! Inside the openraft traits a [`StoreError`] is wrapped in openraft's own `StorageError`,
//! with the subject (vote, logs, snapshot...) and verb (read, write, delete) of the failed I/O.

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};

/// The Raft log or the state machine's snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("raft log database: {0}")]
    Redb(#[from] redb::Error),
    #[error("stored record: {0}")]
    Frame(#[from] shoal_protocol::frame::FrameError),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("storage task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// A snapshot file that is not whole.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// The state machine met an entry it cannot apply and stopped.
    #[error("{0}")]
    Halted(String),
}

impl StoreError {
    /// An I/O error on `path` while doing `action` ("write", "rename"...).
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        StoreError::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }

    /// Wraps the error for openraft, naming what was being done to what.
    pub(crate) fn into_storage<NID: openraft::NodeId>(
        self,
        subject: ErrorSubject<NID>,
        verb: ErrorVerb,
    ) -> StorageError<NID> {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }
}

/// redb has one error type per operation; they all land in [`StoreError::Redb`].
macro_rules! from_redb {
    ($($error:ty),*) => {
        $(impl From<$error> for StoreError {
            fn from(error: $error) -> Self {
                StoreError::Redb(error.into())
            }
        })*
    };
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Raft timings that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("raft timing `{field}` {reason}")]
    Timing {
        field: &'static str,
        reason: &'static str,
    },
    /// openraft's own check failed (the timing checks above should catch it first).
    #[error("raft config rejected: {0}")]
    Config(#[from] Box<openraft::ConfigError>),
}
