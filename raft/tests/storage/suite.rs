//! openraft's own storage test suite against a fresh temporary directory per test.

use std::io::Cursor;

use openraft::testing::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError, StorageIOError, TokioRuntime};
use shoal_protocol::{LogCommand, MemberAddr, Response};
use shoal_raft::{LogStore, StateMachineStore};
use tempfile::TempDir;

// The suite builds node ids from u64, which MachineId does not convert from; this config
// differs from shoal's only in the node id type.
openraft::declare_raft_types!(
    pub SuiteConfig:
        D = LogCommand,
        R = Response,
        NodeId = u64,
        Node = MemberAddr,
        Entry = openraft::Entry<SuiteConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = TokioRuntime,
);

struct TempStores;

impl StoreBuilder<SuiteConfig, LogStore<SuiteConfig>, StateMachineStore<SuiteConfig>, TempDir>
    for TempStores
{
    async fn build(
        &self,
    ) -> Result<
        (
            TempDir,
            LogStore<SuiteConfig>,
            StateMachineStore<SuiteConfig>,
        ),
        StorageError<u64>,
    > {
        let dir = tempfile::tempdir()
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        let (log, sm) = shoal_raft::open_with(dir.path()).map_err(|e| {
            StorageIOError::new(
                ErrorSubject::Store,
                ErrorVerb::Read,
                openraft::AnyError::new(&e),
            )
        })?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    if let Err(err) = Suite::test_all(TempStores) {
        panic!("storage suite failed: {err}");
    }
}
