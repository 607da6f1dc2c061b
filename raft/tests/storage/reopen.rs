//! A data directory closed and opened again holds what was written to it.

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{CommittedLeaderId, RaftLogReader, RaftSnapshotBuilder, Vote};
use shoal_protocol::{Command, ErrorCode, MachineId, Response};

use crate::{entry, log_id, upsert};

#[tokio::test]
async fn log_vote_and_committed_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new_committed(3, MachineId(2));
    {
        let (mut log, _sm) = shoal_raft::open(dir.path()).unwrap();
        let entries: Vec<_> = (1..=6)
            .map(|i| entry(i, upsert(i, &format!("m{i}"), i * 10)))
            .collect();
        log.blocking_append(entries).await.unwrap();
        log.save_vote(&vote).await.unwrap();
        log.save_committed(Some(log_id(4))).await.unwrap();
        log.purge(log_id(1)).await.unwrap();
        log.truncate(log_id(6)).await.unwrap();
    }

    let (mut log, _sm) = shoal_raft::open(dir.path()).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(4)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1)));
    assert_eq!(state.last_log_id, Some(log_id(5)));

    let entries = log.try_get_log_entries(..).await.unwrap();
    let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
    assert_eq!(indexes, [2, 3, 4, 5]);
    assert_eq!(entries[1], entry(3, upsert(3, "m3", 30)));
    assert_eq!(
        entries[0].log_id.leader_id,
        CommittedLeaderId::new(1, MachineId(1))
    );
}

#[tokio::test]
async fn a_snapshot_is_where_a_reopened_state_machine_starts() {
    let dir = tempfile::tempdir().unwrap();
    let built = {
        let (_log, mut sm) = shoal_raft::open(dir.path()).unwrap();
        let entries = (1..=3).map(|i| entry(i, upsert(i, "m", i)));
        sm.apply(entries).await.unwrap();
        let job = Command::SubmitJob {
            spec: Box::new(shoal_protocol::JobSpec::new(["true"])),
            at_ms: 3,
        };
        sm.apply([entry(4, job)]).await.unwrap();
        let built = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        // Applied after the snapshot: gone on reopen until Raft re-applies it from the log.
        sm.apply([entry(5, upsert(4, "late", 4))]).await.unwrap();
        built.meta
    };
    assert_eq!(built.last_log_id, Some(log_id(4)));

    let (_log, mut sm) = shoal_raft::open(dir.path()).unwrap();
    let handle = sm.handle();
    let ids = handle.read(|s| s.machines.keys().copied().collect::<Vec<_>>());
    assert_eq!(ids, [MachineId(1), MachineId(2), MachineId(3)]);
    assert_eq!(*handle.applied().borrow(), Some(4));
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(4)));
    // The queued job is open again: derived indexes are rebuilt from the snapshot.
    let open = handle.read(|s| s.open_jobs().map(|job| job.id.0).collect::<Vec<_>>());
    assert_eq!(open, [4]);
    let current = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(current.meta, built);
}

#[tokio::test]
async fn the_handle_follows_applies() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = shoal_raft::open(dir.path()).unwrap();
    let handle = sm.handle();
    let mut applied = handle.applied();
    assert_eq!(*applied.borrow_and_update(), None);

    let responses = sm
        .apply([
            entry(1, upsert(7, "seven", 100)),
            entry(2, Command::RemoveMachine { id: MachineId(8) }),
        ])
        .await
        .unwrap();
    assert!(matches!(responses[0], Response::Machine(_)));
    assert!(matches!(
        responses[1],
        Response::Rejected {
            code: ErrorCode::NotFound,
            ..
        }
    ));
    assert!(applied.has_changed().unwrap());
    assert_eq!(*applied.borrow_and_update(), Some(2));
    let name = handle.read(|s| s.machines[&MachineId(7)].info.name.clone());
    assert_eq!(name, "seven");
}

#[tokio::test]
async fn an_installed_snapshot_replaces_state_and_survives_reopen() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_log, mut leader) = shoal_raft::open(leader_dir.path()).unwrap();
    leader
        .apply((1..=4).map(|i| entry(i, upsert(i, "m", i))))
        .await
        .unwrap();
    let built = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    // What a leader sends a lagging follower: the snapshot on disk.
    let snapshot = leader.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(snapshot.meta, built.meta);

    {
        let (_log, mut follower) = shoal_raft::open(follower_dir.path()).unwrap();
        follower
            .apply([entry(1, upsert(9, "stale", 1))])
            .await
            .unwrap();
        let handle = follower.handle();
        let mut received = follower.begin_receiving_snapshot().await.unwrap();
        *received = *snapshot.snapshot;
        follower
            .install_snapshot(&snapshot.meta, received)
            .await
            .unwrap();
        assert_eq!(*handle.applied().borrow(), Some(4));
        assert_eq!(handle.read(|s| s.machines.len()), 4);
        assert!(handle.read(|s| !s.machines.contains_key(&MachineId(9))));
    }

    let (_log, follower) = shoal_raft::open(follower_dir.path()).unwrap();
    assert_eq!(follower.handle().read(|s| s.machines.len()), 4);
    assert_eq!(*follower.handle().applied().borrow(), Some(4));
}

/// An entry written by a newer build stops this replica at that entry, saying why; what
/// came before it is applied, nothing after it is.
#[tokio::test]
async fn an_entry_from_a_newer_build_halts_apply_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = shoal_raft::open(dir.path()).unwrap();
    let handle = sm.handle();
    let future = openraft::Entry {
        log_id: log_id(2),
        payload: openraft::EntryPayload::Normal(shoal_protocol::LogCommand::from_body(
            teleport_machine(),
        )),
    };
    let err = sm
        .apply([
            entry(1, upsert(1, "m1", 1)),
            future,
            entry(3, upsert(3, "m3", 3)),
        ])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("upgrade"), "{err}");
    let halted = handle.halted().expect("a halt reason");
    assert!(
        halted.contains("log entry 2") && halted.contains("TeleportMachine"),
        "{halted}"
    );
    assert_eq!(*handle.applied().borrow(), Some(1));
    handle.read(|state| {
        assert!(state.machines.contains_key(&MachineId(1)));
        assert!(!state.machines.contains_key(&MachineId(3)));
    });
}

/// A command body as a newer build would write it: a variant this build does not have.
fn teleport_machine() -> Vec<u8> {
    #[derive(serde::Serialize)]
    enum Future {
        TeleportMachine { id: u64, to: String },
    }
    shoal_protocol::frame::encode_body(&Future::TeleportMachine {
        id: 9,
        to: "mars".into(),
    })
    .unwrap()
}
