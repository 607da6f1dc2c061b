//! Shoal's Raft pieces: the openraft type config, the redb log store, the fleet state
//! machine with its snapshots, and the Raft timings.
//!
//! ```text
//!   openraft core ──append/vote/purge──▶ LogStore          (raft.redb, fsync per write)
//!        │
//!        └──────apply/snapshot───────▶ StateMachineStore  (FleetState in memory,
//!                                          │                snapshot.bin on disk)
//!                                          └─▶ apply::apply (pure: Command -> Response,
//!                                                job commands in [`jobs`])
//! ```
//!
//! The daemon reads the fleet through a [`FleetHandle`] and never touches the stores. The
//! leader plans job placements with [`scheduler::place`] (pure) and commits the plan.
//! Backups are the snapshot format ([`snapshot_format`]) of a [`FleetHandle::copy`];
//! [`snapshot_summary`] says what one holds and [`snapshot_restore`] makes one the start
//! of a new group.

mod apply;
pub mod audit;
pub mod costs;
mod error;
pub mod events;
mod fleet_settings;
mod gossip_keys;
pub mod jobs;
mod log_store;
mod registries;
mod requests;
pub mod scheduler;
mod snapshot_file;
pub mod snapshot_format;
pub mod snapshot_restore;
pub mod snapshot_summary;
mod state_machine;
mod templates;
mod tokens;

use std::io::Cursor;
use std::path::Path;
use std::time::Duration;

use openraft::{RaftTypeConfig, SnapshotPolicy, TokioRuntime};
use shoal_protocol::{LogCommand, MachineId, MemberAddr, Response};

pub use apply::{ApplyCtx, apply};
pub use error::{RaftError, StoreError};
pub use events::{EventFeed, EventRing, FollowError, Follower, Gone};
pub use log_store::{CommitIndex, LOG_FILE, LogStore, StoreOpen};
pub use scheduler::{Candidate, PlaceConfig, Plan, Reservations, place};
pub use snapshot_file::SNAPSHOT_FILE;
pub use state_machine::{FleetHandle, FleetSnapshotBuilder, StateMachineStore, StoredSnapshot};

openraft::declare_raft_types!(
    /// Shoal's Raft types: fleet commands in, responses out, machines as members.
    pub TypeConfig:
        D = LogCommand,
        R = Response,
        NodeId = MachineId,
        Node = MemberAddr,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = TokioRuntime,
);

/// A running Raft node of the fleet.
pub type Raft = openraft::Raft<TypeConfig>;

/// A type config the stores can serve: [`TypeConfig`] itself, or one that differs only in
/// the node id type.
///
/// The stores are generic over this so that openraft's storage test suite, which needs
/// `NodeId: From<u64>` (which `MachineId` does not implement), runs against the same code.
pub trait FleetConfig:
    RaftTypeConfig<
        D = LogCommand,
        R = Response,
        Node = MemberAddr,
        Entry = openraft::Entry<Self>,
        SnapshotData = Cursor<Vec<u8>>,
    >
{
}

impl<C> FleetConfig for C where
    C: RaftTypeConfig<
            D = LogCommand,
            R = Response,
            Node = MemberAddr,
            Entry = openraft::Entry<C>,
            SnapshotData = Cursor<Vec<u8>>,
        >
{
}

/// Most logs kept after a snapshot, so a follower that lags by less catches up from the
/// log instead of receiving the whole snapshot. Never more than one snapshot interval.
pub const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 1000;

/// Most log entries sent in one append request.
pub const MAX_PAYLOAD_ENTRIES: u64 = 256;

/// How often the leader speaks and how long followers wait before an election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftTimings {
    /// Interval between leader heartbeats.
    pub heartbeat: Duration,
    /// Shortest wait without a heartbeat before a follower stands for election.
    pub election_min: Duration,
    /// Longest such wait; each follower picks a random wait between the two.
    pub election_max: Duration,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_every_logs: u64,
}

impl Default for RaftTimings {
    /// Timings for machines on a home or office LAN, Wi-Fi included: slower than openraft's
    /// data-centre defaults so a busy access point does not trigger elections.
    fn default() -> Self {
        RaftTimings {
            heartbeat: Duration::from_millis(250),
            election_min: Duration::from_millis(1500),
            election_max: Duration::from_millis(3000),
            snapshot_every_logs: 5000,
        }
    }
}

/// Turns the timings into a validated openraft config.
pub fn raft_config(timings: &RaftTimings) -> Result<openraft::Config, RaftError> {
    let heartbeat = millis("heartbeat", timings.heartbeat)?;
    let election_min = millis("election_min", timings.election_min)?;
    let election_max = millis("election_max", timings.election_max)?;
    if election_min <= heartbeat {
        return Err(RaftError::Timing {
            field: "election_min",
            reason: "must be longer than heartbeat",
        });
    }
    if election_max <= election_min {
        return Err(RaftError::Timing {
            field: "election_max",
            reason: "must be longer than election_min",
        });
    }
    if timings.snapshot_every_logs == 0 {
        return Err(RaftError::Timing {
            field: "snapshot_every_logs",
            reason: "must be at least 1",
        });
    }
    let config = openraft::Config {
        cluster_name: "shoal".to_string(),
        heartbeat_interval: heartbeat,
        election_timeout_min: election_min,
        election_timeout_max: election_max,
        // A snapshot crosses the same network as heartbeats; give it a few election spans.
        install_snapshot_timeout: election_max.saturating_mul(2),
        max_payload_entries: MAX_PAYLOAD_ENTRIES,
        // Beyond this lag a follower is sent the snapshot rather than the log.
        replication_lag_threshold: timings
            .snapshot_every_logs
            .saturating_add(LOGS_KEPT_AFTER_SNAPSHOT.min(timings.snapshot_every_logs)),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(timings.snapshot_every_logs),
        max_in_snapshot_log_to_keep: LOGS_KEPT_AFTER_SNAPSHOT.min(timings.snapshot_every_logs),
        // Purge in batches, so a busy log does not pay one fsync per applied entry.
        purge_batch_size: 64,
        ..openraft::Config::default()
    };
    Ok(config.validate().map_err(Box::new)?)
}

fn millis(field: &'static str, duration: Duration) -> Result<u64, RaftError> {
    u64::try_from(duration.as_millis())
        .ok()
        .filter(|ms| *ms > 0)
        .ok_or(RaftError::Timing {
            field,
            reason: "must be between 1 ms and u64::MAX ms",
        })
}

/// Opens (creating if needed) the log store and state machine kept in `dir`.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    open_with::<TypeConfig>(dir)
}

/// [`open`] for any [`FleetConfig`]; tests use it with a `u64` node id.
pub fn open_with<C: FleetConfig>(
    dir: &Path,
) -> Result<(LogStore<C>, StateMachineStore<C>), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io("create", dir, e))?;
    let log = LogStore::open(dir)?;
    let sm = StateMachineStore::open(dir)?;
    Ok((log, sm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_timings_make_a_valid_config() {
        let config = raft_config(&RaftTimings::default()).unwrap();
        assert_eq!(config.heartbeat_interval, 250);
        assert_eq!(config.election_timeout_min, 1500);
        assert_eq!(config.max_in_snapshot_log_to_keep, LOGS_KEPT_AFTER_SNAPSHOT);
        assert!(matches!(
            config.snapshot_policy,
            SnapshotPolicy::LogsSinceLast(5000)
        ));
    }

    #[test]
    fn nonsense_timings_name_the_field() {
        let base = RaftTimings::default();
        let cases = [
            (
                RaftTimings {
                    heartbeat: Duration::ZERO,
                    ..base.clone()
                },
                "heartbeat",
            ),
            (
                RaftTimings {
                    election_min: base.heartbeat,
                    ..base.clone()
                },
                "election_min",
            ),
            (
                RaftTimings {
                    election_max: base.election_min,
                    ..base.clone()
                },
                "election_max",
            ),
            (
                RaftTimings {
                    snapshot_every_logs: 0,
                    ..base.clone()
                },
                "snapshot_every_logs",
            ),
        ];
        for (timings, field) in cases {
            let err = raft_config(&timings).unwrap_err().to_string();
            assert!(err.contains(&format!("`{field}`")), "{err}");
        }
    }
}
