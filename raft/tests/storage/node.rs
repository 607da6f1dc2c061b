//! A one-node Raft over the real stores: it commits, snapshots, and after a restart comes
//! back with the same fleet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use shoal_protocol::{MachineId, MemberAddr, Response};
use shoal_raft::{Raft, RaftTimings, TypeConfig};

use crate::upsert;

const ME: MachineId = MachineId(1);
const WAIT: Option<Duration> = Some(Duration::from_secs(10));

/// A lone node never sends anything; every call is a failure.
struct NoPeers;

type RpcResult<T, E = RaftError<MachineId>> = Result<T, RPCError<MachineId, MemberAddr, E>>;

fn unreachable<E: std::error::Error>() -> RPCError<MachineId, MemberAddr, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other("no peers here")))
}

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;

    async fn new_client(&mut self, _target: MachineId, _node: &MemberAddr) -> NoPeers {
        NoPeers
    }
}

impl RaftNetwork<TypeConfig> for NoPeers {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<MachineId>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<MachineId>, RaftError<MachineId, InstallSnapshotError>>
    {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<MachineId>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<MachineId>> {
        Err(unreachable())
    }
}

async fn start(dir: &std::path::Path) -> (Raft, shoal_raft::FleetHandle) {
    let timings = RaftTimings {
        heartbeat: Duration::from_millis(20),
        election_min: Duration::from_millis(60),
        election_max: Duration::from_millis(120),
        snapshot_every_logs: 3,
    };
    let config = Arc::new(shoal_raft::raft_config(&timings).unwrap());
    let (log, sm) = shoal_raft::open(dir).unwrap();
    let handle = sm.handle();
    let raft = Raft::new(ME, config, NoPeers, log, sm).await.unwrap();
    (raft, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_has_the_same_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, handle) = start(dir.path()).await;
    raft.initialize(BTreeMap::from([(ME, MemberAddr::default())]))
        .await
        .unwrap();
    raft.wait(WAIT).current_leader(ME, "leader").await.unwrap();
    for i in 1..=5 {
        let written = raft.client_write(upsert(i, "m", i).into()).await.unwrap();
        assert!(matches!(written.data, Response::Machine(_)), "{written:?}");
    }
    let metrics = raft
        .wait(WAIT)
        .metrics(|m| m.snapshot.is_some(), "a snapshot")
        .await
        .unwrap();
    let snapshot = metrics.snapshot.unwrap().index;
    // One more write, so the restart must replay the log past the snapshot.
    let last = raft
        .client_write(upsert(6, "m", 6).into())
        .await
        .unwrap()
        .log_id
        .index;
    assert!(snapshot < last, "snapshot {snapshot}, last {last}");
    assert!(*handle.applied().borrow() >= Some(last));
    raft.shutdown().await.unwrap();
    drop(raft);

    let (raft, handle) = start(dir.path()).await;
    let mut applied = handle.applied();
    assert!(*applied.borrow() >= Some(snapshot));
    tokio::time::timeout(WAIT.unwrap(), applied.wait_for(|a| *a >= Some(last)))
        .await
        .expect("committed log re-applied after restart")
        .unwrap();
    let count = handle.read(|s| s.machines.len());
    assert_eq!(count, 6);
    raft.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_restored_into_a_new_directory_leads_its_own_group() {
    let old = tempfile::tempdir().unwrap();
    let (raft, handle) = start(old.path()).await;
    raft.initialize(BTreeMap::from([(ME, MemberAddr::default())]))
        .await
        .unwrap();
    raft.wait(WAIT).current_leader(ME, "leader").await.unwrap();
    for i in 1..=4 {
        raft.client_write(upsert(i, "m", i).into()).await.unwrap();
    }
    let copy = handle.copy().expect("a copy");
    let copied_at = copy.meta.last_log_id.unwrap().index;
    raft.shutdown().await.unwrap();
    drop(raft);

    // Through the bytes, as a backup file travels.
    let bytes = shoal_raft::snapshot_format::encode(&copy).unwrap();
    let backup = shoal_raft::snapshot_format::decode(&bytes).unwrap();
    let restored =
        shoal_raft::snapshot_restore::for_new_group(backup, ME, MemberAddr::default(), 9);
    let new = tempfile::tempdir().unwrap();
    shoal_raft::snapshot_restore::write_first_snapshot(new.path(), &restored.snapshot).unwrap();

    let (raft, handle) = start(new.path()).await;
    assert!(raft.is_initialized().await.unwrap());
    raft.wait(WAIT).current_leader(ME, "leader").await.unwrap();
    assert_eq!(handle.read(|s| s.machines.len()), 4);
    let written = raft.client_write(upsert(5, "m", 5).into()).await.unwrap();
    assert!(written.log_id.index > copied_at, "{written:?}");
    assert_eq!(handle.read(|s| s.machines.len()), 5);
    raft.shutdown().await.unwrap();
}
