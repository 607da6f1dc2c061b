//! Turning a backup into the first snapshot of a new one-node Raft group (what
//! `shoald restore` writes to `raft/snapshot.bin` of an empty data directory).
//!
//! ```text
//!  backup: state, last log id (term t, index i), membership {old voters}
//!     │  for_new_group(me)
//!     ▼
//!  snapshot.bin: the same state, log id (term 0, index i), membership {me}
//!     old machines: records kept, OFFLINE, retired (refused until they use a token)
//! ```
//!
//! The index is kept because job ids and event numbers come from log indexes and must
//! not repeat. The term starts again at 0, so the node's first election (term 1) is newer
//! than anything in the snapshot. With itself as the only voter it elects itself; it
//! never waits on a machine of the old fleet.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::{CommittedLeaderId, LogId, Membership, SnapshotMeta, StoredMembership};
use shoal_protocol::{MachineId, MachineStatus, MemberAddr, UnixMillis};

use crate::state_machine::StoredSnapshot;
use crate::{SNAPSHOT_FILE, StoreError, snapshot_file, snapshot_format};

/// What happened to the old fleet's machines in a restored state.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    pub snapshot: StoredSnapshot,
    /// Machines of the old fleet now marked OFFLINE and retired.
    pub retired: Vec<MachineId>,
}

/// The backup as the first snapshot of a group whose only member is `me` at `addr`.
///
/// Every other machine in the state keeps its record (its history, costs and jobs still
/// point at it) but is retired: not a Raft member, refused on peer RPC and never added
/// back by the leader, so a machine of the old fleet that is still running cannot drag
/// the new group back to its old term. Those that were reachable are marked OFFLINE as of
/// `now_ms`, so nothing is placed on them; the leader's reconcile loop takes them on to
/// STALE (their jobs are requeued) and DEAD. A machine comes back with a registration
/// token (`shoald join`) and a fresh data directory.
pub fn for_new_group(
    backup: StoredSnapshot,
    me: MachineId,
    addr: MemberAddr,
    now_ms: UnixMillis,
) -> Restored {
    let StoredSnapshot { meta, mut state } = backup;
    let index = meta.last_log_id.map_or(0, |id| id.index);
    let last = LogId::new(CommittedLeaderId::new(0, me), index);
    let membership = Membership::new(vec![BTreeSet::from([me])], BTreeMap::from([(me, addr)]));
    let mut retired = Vec::new();
    for (id, record) in state.machines.iter_mut().filter(|(id, _)| **id != me) {
        if record.status.is_reachable() || record.status == MachineStatus::Registering {
            record.status = MachineStatus::Offline;
            record.status_since_ms = now_ms;
        }
        state.retired.insert(*id);
        retired.push(*id);
    }
    state.retired.remove(&me);
    // The old fleet's gossip keys stay with its machines, all retired, and this one may
    // hold none of them: the new group starts over at generation 0, the key the secret
    // gives, as a new fleet does (an admin rotates when it wants).
    state.gossip_keys = Default::default();
    let snapshot = StoredSnapshot {
        meta: SnapshotMeta {
            last_log_id: Some(last),
            last_membership: StoredMembership::new(Some(last), membership),
            snapshot_id: format!("restored-{index}"),
        },
        state,
    };
    Restored { snapshot, retired }
}

/// Writes `snapshot` as the state machine's snapshot in `raft_dir` (created if needed),
/// atomically. The directory must hold no Raft log: the caller checks.
pub fn write_first_snapshot(raft_dir: &Path, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
    std::fs::create_dir_all(raft_dir).map_err(|e| StoreError::io("create", raft_dir, e))?;
    let bytes = snapshot_format::encode(snapshot)?;
    snapshot_file::write_atomically(raft_dir, &bytes)?;
    tracing::info!(path = %raft_dir.join(SNAPSHOT_FILE).display(), bytes = bytes.len(), "restored snapshot written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftStateMachine;
    use shoal_protocol::{FleetState, MachineInfo, MachineRecord};

    use super::*;

    fn addr(port: u16) -> MemberAddr {
        MemberAddr {
            peer_id: format!("peer-{port}"),
            p2p_addr: format!("127.0.0.1:{port}"),
            api_addr: format!("127.0.0.1:{}", port + 1),
            gossip_addr: format!("127.0.0.1:{}", port + 2),
        }
    }

    fn record(id: u64, status: MachineStatus) -> MachineRecord {
        MachineRecord {
            info: MachineInfo {
                id: MachineId(id),
                name: format!("m{id}"),
                ..MachineInfo::default()
            },
            operator_labels: Default::default(),
            status,
            status_since_ms: 10,
            last_heartbeat_ms: 10,
            registered_at_ms: 1,
            drain: None,
        }
    }

    fn backup() -> StoredSnapshot {
        let mut state = FleetState::default();
        for (id, status) in [
            (1, MachineStatus::Online),
            (2, MachineStatus::Busy),
            (3, MachineStatus::Dead),
        ] {
            state.machines.insert(MachineId(id), record(id, status));
        }
        let last = LogId::new(CommittedLeaderId::new(7, MachineId(1)), 4242);
        let old = Membership::new(
            vec![BTreeSet::from([MachineId(1), MachineId(2), MachineId(3)])],
            BTreeMap::from([(MachineId(1), addr(1)), (MachineId(2), addr(2))]),
        );
        StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: Some(last),
                last_membership: StoredMembership::new(Some(last), old),
                snapshot_id: "7-4242-copy".into(),
            },
            state,
        }
    }

    #[test]
    fn the_new_group_is_me_alone_at_the_same_index_and_term_zero() {
        let me = MachineId(9);
        let restored = for_new_group(backup(), me, addr(9), 5_000);
        let meta = &restored.snapshot.meta;
        let last = meta.last_log_id.expect("a log id");
        assert_eq!((last.leader_id.term, last.index), (0, 4242));
        let membership = meta.last_membership.membership();
        assert_eq!(membership.voter_ids().collect::<Vec<_>>(), vec![me]);
        assert_eq!(membership.learner_ids().count(), 0);
        assert_eq!(membership.get_node(&me), Some(&addr(9)));
    }

    #[test]
    fn old_machines_stay_as_records_but_offline_and_retired() {
        let mut rotated = backup();
        rotated
            .state
            .gossip_keys
            .push(shoal_protocol::gossip_keys::SealedGossipKey {
                generation: 1,
                sealed_key: vec![1; shoal_protocol::gossip_keys::SEALED_KEY_LEN],
            });
        rotated.state.gossip_keys.request_rotation();
        let restored = for_new_group(rotated, MachineId(9), addr(9), 5_000);
        let state = &restored.snapshot.state;
        assert_eq!(
            state.gossip_keys,
            Default::default(),
            "gossip keys start over"
        );
        assert_eq!(state.machines.len(), 3, "records are kept");
        assert_eq!(
            restored.retired,
            vec![MachineId(1), MachineId(2), MachineId(3)]
        );
        assert_eq!(state.retired.len(), 3);
        let status = |id| state.machines[&MachineId(id)].status;
        assert_eq!(status(1), MachineStatus::Offline);
        assert_eq!(status(2), MachineStatus::Offline);
        assert_eq!(status(3), MachineStatus::Dead, "never revived");
        assert_eq!(state.machines[&MachineId(1)].status_since_ms, 5_000);
        assert_eq!(state.machines[&MachineId(3)].status_since_ms, 10);
    }

    #[test]
    fn restoring_onto_a_machine_of_the_old_fleet_keeps_it() {
        let restored = for_new_group(backup(), MachineId(2), addr(2), 5_000);
        let state = &restored.snapshot.state;
        assert!(!state.retired.contains(&MachineId(2)));
        assert_eq!(state.machines[&MachineId(2)].status, MachineStatus::Busy);
        assert_eq!(restored.retired, vec![MachineId(1), MachineId(3)]);
    }

    #[tokio::test]
    async fn a_state_machine_opens_on_the_written_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let restored = for_new_group(backup(), MachineId(9), addr(9), 5_000);
        write_first_snapshot(dir.path(), &restored.snapshot).unwrap();
        let (_log, mut sm) = crate::open(dir.path()).unwrap();
        let (applied, membership) = sm.applied_state().await.unwrap();
        assert_eq!(applied, restored.snapshot.meta.last_log_id);
        assert_eq!(membership, restored.snapshot.meta.last_membership);
        assert_eq!(sm.handle().read(|s| s.machines.len()), 3);
    }
}
