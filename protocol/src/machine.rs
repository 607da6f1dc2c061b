//! Machines: what a node publishes about itself, and the record the fleet keeps.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::levels::ProtocolLevel;
use crate::{Labels, MachineId, UnixMillis};

/// A machine's capacity and current use, sampled every few seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Resources {
    pub cpu_cores: u32,
    /// CPU use over the last sample, 0.0 to 1.0 across all cores.
    pub cpu_usage: f32,
    /// One-minute load average divided by the number of cores.
    pub load: f32,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub disk_free_bytes: u64,
}

/// Where a machine's services listen. This is also the Raft member's node data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberAddr {
    /// The libp2p peer id (base58), bound to the identity key in the data directory.
    pub peer_id: String,
    /// Peer RPC address, as `host:port`.
    pub p2p_addr: String,
    /// Admin API address, as `host:port`.
    pub api_addr: String,
    /// Gossip (UDP) address, as `host:port`; a restarted machine seeds its gossip from these.
    pub gossip_addr: String,
}

impl fmt::Display for MemberAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.peer_id, self.p2p_addr)
    }
}

/// Everything a machine publishes about itself over gossip.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineInfo {
    pub id: MachineId,
    /// The operator's name for the machine (`--node-name`, default the hostname).
    pub name: String,
    pub hostname: String,
    pub os: String,
    pub arch: String,
    /// The `shoald` version.
    pub version: String,
    /// The highest protocol level the machine speaks (1 from a build before levels).
    #[serde(default)]
    pub protocol_level: ProtocolLevel,
    pub addr: MemberAddr,
    /// Labels from the machine's own config.
    pub labels: Labels,
    pub resources: Resources,
    /// Jobs and sessions running on the machine now.
    pub running: u32,
    /// Most jobs and sessions the machine accepts at once.
    pub max_running: u32,
    /// The machine asked not to receive new work.
    pub draining: bool,
    /// When the daemon started, for uptime.
    pub started_at_ms: UnixMillis,
    /// The machine's own health checks (`shoald diagnose`), as last run.
    #[serde(default)]
    pub diagnosis: Vec<Check>,
    /// Keys of the images the machine's engine holds ([`crate::image_ref::image_key`], at
    /// most [`crate::image_ref::MAX_IMAGE_KEYS`], sorted): the scheduler prefers a machine
    /// that need not pull. Gossip only: the log keeps none. None from an older build.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<u64>,
    /// The machine's GPUs (at most [`crate::gpus::MAX_GPUS`]) with their live use; none
    /// from a machine without one, or from an older build.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<crate::Gpu>,
}

/// One health check of a machine: Docker, disk, memory, the data directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Check {
    /// `docker`, `disk`, `memory`, `data_dir`.
    pub name: String,
    pub ok: bool,
    /// What was found, or what is wrong and how to fix it.
    pub detail: String,
}

/// One signed heartbeat: a machine's info with a sequence number that only grows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    pub info: MachineInfo,
    /// Incremented on every publish; receivers ignore anything not newer.
    pub seq: u64,
    pub sent_at_ms: UnixMillis,
}

/// A machine's status as the fleet sees it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MachineStatus {
    /// Known to the log, not yet heard from.
    Registering,
    Online,
    /// At its work limit or over the load threshold.
    Busy,
    /// Asked not to receive new work.
    Draining,
    /// The failure detector says it is down.
    Offline,
    /// No heartbeat for `stale_after`.
    Stale,
    /// No heartbeat for `dead_after`.
    Dead,
}

impl MachineStatus {
    pub const ALL: [MachineStatus; 7] = [
        MachineStatus::Registering,
        MachineStatus::Online,
        MachineStatus::Busy,
        MachineStatus::Draining,
        MachineStatus::Offline,
        MachineStatus::Stale,
        MachineStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MachineStatus::Registering => "REGISTERING",
            MachineStatus::Online => "ONLINE",
            MachineStatus::Busy => "BUSY",
            MachineStatus::Draining => "DRAINING",
            MachineStatus::Offline => "OFFLINE",
            MachineStatus::Stale => "STALE",
            MachineStatus::Dead => "DEAD",
        }
    }

    /// Whether the machine is answering heartbeats.
    pub fn is_reachable(self) -> bool {
        matches!(
            self,
            MachineStatus::Online | MachineStatus::Busy | MachineStatus::Draining
        )
    }
}

impl fmt::Display for MachineStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MachineStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MachineStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown machine status {s:?}"))
    }
}

/// The fleet's record of one machine, kept in the Raft log.
///
/// The API lays the live view from gossip (resources, running count, last heartbeat)
/// over this record when it answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineRecord {
    pub info: MachineInfo,
    /// Labels set by operators through the API; they override the machine's own.
    pub operator_labels: Labels,
    pub status: MachineStatus,
    pub status_since_ms: UnixMillis,
    pub last_heartbeat_ms: UnixMillis,
    pub registered_at_ms: UnixMillis,
    /// Set while an operator drains the machine: it shows DRAINING and takes no new work.
    #[serde(default)]
    pub drain: Option<Drain>,
}

/// An operator's drain of one machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    pub since_ms: UnixMillis,
    /// After this, work still on the machine is taken back and runs elsewhere; without
    /// one, running work finishes where it is.
    pub deadline_ms: Option<UnixMillis>,
}

impl MachineRecord {
    /// The labels the scheduler matches: the machine's own, with operator labels on top.
    pub fn labels(&self) -> Labels {
        self.info.labels.merged(&self.operator_labels)
    }
}
