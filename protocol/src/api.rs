//! Admin API bodies and the JSON error every endpoint returns.
//!
//! The daemon's router and the `shoal` CLI both use these types, so the two cannot drift.
//! A job is submitted as a [`JobRequest`] ([`crate::job_request`]), kept apart from the
//! [`JobSpec`](crate::JobSpec) that the log stores.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    JobId, JobRequest, JobView, Labels, MachineId, MachineRecord, MachineStatus, MemberAddr,
    ProtocolLevel, Resources, UnixMillis,
};

/// A stable, machine-readable error code. Scripts match on these; never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    NotFound,
    PayloadTooLarge,
    /// The request does not fit the current state: a report for a stale attempt, a cancel
    /// of a finished job.
    Conflict,
    /// No leader is known right now (an election is under way); retry shortly.
    NoLeader,
    /// The write reached the leader but could not be committed in time; retry.
    Unavailable,
    Internal,
    /// No API key, or one the fleet does not accept.
    Unauthorized,
    /// The key is valid but its scope (or org) does not allow this.
    Forbidden,
    /// Today's spend reached the org's daily budget.
    BudgetExceeded,
    /// Today's runner minutes reached the org's daily quota.
    QuotaExceeded,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Conflict => "conflict",
            ErrorCode::NoLeader => "no_leader",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::BudgetExceeded => "budget_exceeded",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Conflict => 409,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::BudgetExceeded | ErrorCode::QuotaExceeded => 429,
            ErrorCode::NoLeader | ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// The body of every error answer: `{"code": "...", "message": "..."}`.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, utoipa::ToSchema,
)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::NotFound, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code.as_str())
    }
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` when this node knows a leader, `degraded` otherwise; `halted` when it stopped
    /// applying the fleet log and `cut_off` when it is cut off from a quorum (both with a
    /// 503, and `reason` says why).
    pub status: String,
    pub machine_id: MachineId,
    pub leader: Option<MachineId>,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One machine as the API shows it: the committed record with the live gossip view on top.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MachineView {
    pub id: MachineId,
    pub name: String,
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub version: String,
    pub status: MachineStatus,
    pub status_since_ms: UnixMillis,
    /// The labels jobs are matched against: the machine's own with operator labels on top.
    pub labels: Labels,
    pub operator_labels: Labels,
    pub resources: Resources,
    pub running: u32,
    pub max_running: u32,
    pub draining: bool,
    pub last_heartbeat_ms: UnixMillis,
    pub registered_at_ms: UnixMillis,
    pub started_at_ms: UnixMillis,
    pub addr: MemberAddr,
    /// The machine's Raft role: `leader`, `voter`, `learner` or `none`.
    pub raft_role: String,
    /// The machine's own health checks, as last run.
    #[serde(default)]
    pub diagnosis: Vec<crate::Check>,
    /// The machine's GPUs with their live use (left out when it has none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<crate::Gpu>,
}

impl MachineView {
    /// The view of a record alone, before live data is laid on top.
    pub fn from_record(record: &MachineRecord, raft_role: &str) -> Self {
        let info = &record.info;
        MachineView {
            id: info.id,
            name: info.name.clone(),
            hostname: info.hostname.clone(),
            os: info.os.clone(),
            arch: info.arch.clone(),
            version: info.version.clone(),
            status: record.status,
            status_since_ms: record.status_since_ms,
            labels: record.labels(),
            operator_labels: record.operator_labels.clone(),
            resources: info.resources.clone(),
            running: info.running,
            max_running: info.max_running,
            draining: info.draining || record.drain.is_some(),
            last_heartbeat_ms: record.last_heartbeat_ms,
            registered_at_ms: record.registered_at_ms,
            started_at_ms: info.started_at_ms,
            addr: info.addr.clone(),
            raft_role: raft_role.to_string(),
            diagnosis: info.diagnosis.clone(),
            gpus: info.gpus.clone(),
        }
    }
}

/// `GET /v1/machines`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MachineList {
    pub machines: Vec<MachineView>,
    /// Machines that came with the cluster secret alone and wait for an admin's approval
    /// (`POST /v1/machines/{id}/approve`); not members, whatever the filters.
    #[serde(default)]
    pub pending: Vec<PendingMachine>,
}

/// A machine gossiping with the cluster secret that the fleet has not admitted: neither in
/// the group that formed it, nor joined with a token, nor approved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PendingMachine {
    pub id: MachineId,
    pub name: String,
    pub hostname: String,
    pub version: String,
    pub addr: MemberAddr,
    pub last_heartbeat_ms: UnixMillis,
}

/// `POST /v1/machines/{id}/approve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MachineApproved {
    pub approved: MachineId,
}

/// `PUT /v1/machines/{id}/labels`: labels to set and label keys to remove.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelRequest {
    #[serde(default)]
    pub set: Labels,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `POST /v1/jobs`: the job, and whether this request created it (`false`: an earlier
/// submit with the same `idempotency_key` did). A fan-out answers with the parent, whose
/// `children` name the per-machine jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubmitJobResponse {
    pub job: JobView,
    pub created: bool,
}

/// `GET /v1/jobs`.
/// `POST /v1/jobs/batch`: 1 to 1000 jobs, every one checked before any is submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub jobs: Vec<JobRequest>,
}

/// Each job of a batch, in the order given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchResponse {
    pub jobs: Vec<SubmitJobResponse>,
}

/// `DELETE /v1/machines/{id}`: the machine that was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MachineRemoved {
    pub removed: MachineId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

/// Which of a job's streams output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// Consecutive output of one stream. With `follow`, each WebSocket text message is one
/// `LogChunk` as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogChunk {
    pub stream: LogStream,
    /// Position of the first byte in everything the attempt wrote, counting from 0.
    pub offset: u64,
    /// The bytes as text (invalid UTF-8 replaced).
    pub text: String,
}

/// `GET /v1/jobs/{id}/logs`: what the executing machine keeps of one attempt's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobLogs {
    pub job: JobId,
    pub attempt: u32,
    pub machine: MachineId,
    /// Kept output at or after the asked offset, oldest first.
    pub chunks: Vec<LogChunk>,
    /// Bytes written before the first kept byte and dropped to stay within the bound.
    pub dropped: u64,
    /// Bytes the attempt wrote in all. Ask again from here for only what comes next.
    pub total: u64,
    /// True once the attempt has ended: no more output will come.
    pub complete: bool,
}

/// One machine in `GET /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterMember {
    pub id: MachineId,
    pub name: String,
    pub addr: MemberAddr,
    /// Its `shoald` version, as it last gossiped or the log recorded it (empty if unknown).
    #[serde(default)]
    pub version: String,
    /// The highest protocol level it speaks (1 when unknown, as the leader counts it).
    #[serde(default)]
    pub protocol_level: ProtocolLevel,
}

/// `GET /v1/cluster`: this node's view of the Raft group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    /// The node that answered.
    pub machine_id: MachineId,
    pub leader: Option<MachineId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub commit_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub voters: Vec<ClusterMember>,
    pub learners: Vec<ClusterMember>,
    /// The protocol level the fleet runs at: what the leader last committed, the lowest
    /// level among the members once all of them speak it.
    #[serde(default)]
    pub fleet_level: ProtocolLevel,
    /// Members that speak less than the others and so hold the fleet's level down:
    /// upgrading them lets the leader raise it.
    #[serde(default)]
    pub held_back_by: Vec<MachineId>,
    /// Machines that gossip with the fleet but speak less than its level: the leader does
    /// not take them in until they are upgraded.
    #[serde(default)]
    pub refused: Vec<ClusterMember>,
    /// Why this node is cut off from a quorum (it leads but no quorum answers, or no
    /// leader reaches it), while it is: it then names no leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_off: Option<String>,
    /// The gossip key generation the log holds (0 before any rotation): what every node
    /// seals with once the newest rotation has rolled out.
    #[serde(default)]
    pub gossip_key_generation: u32,
    /// The gossip key generation this node seals with now.
    #[serde(default)]
    pub node_gossip_key_generation: u32,
}

/// `POST /v1/fleet/rotate-key`: the gossip key generation the rotation makes, and whether
/// the log holds it yet (200) or the rotation is due and waits (202: a removed machine
/// still in Raft, or a leader between terms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GossipKeyRotation {
    pub generation: u32,
    pub committed: bool,
}

/// `GET /v1/machines?sort=`: what the list is ordered by (ties go by name, then id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MachineSort {
    Hostname,
    Name,
    /// REGISTERING, ONLINE, BUSY, DRAINING, OFFLINE, STALE, DEAD, in that order.
    Status,
    /// Time since the daemon started; a machine that is not reachable counts as 0.
    Uptime,
    /// CPU use (0.0 to 1.0).
    Cpu,
    /// Memory use: the fraction of the machine's memory in use.
    Memory,
    LastHeartbeat,
}

impl MachineSort {
    pub const ALL: [MachineSort; 7] = [
        MachineSort::Hostname,
        MachineSort::Name,
        MachineSort::Status,
        MachineSort::Uptime,
        MachineSort::Cpu,
        MachineSort::Memory,
        MachineSort::LastHeartbeat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MachineSort::Hostname => "hostname",
            MachineSort::Name => "name",
            MachineSort::Status => "status",
            MachineSort::Uptime => "uptime",
            MachineSort::Cpu => "cpu",
            MachineSort::Memory => "memory",
            MachineSort::LastHeartbeat => "last_heartbeat",
        }
    }
}

impl fmt::Display for MachineSort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MachineSort {
    type Err = String;

    /// One of [`MachineSort::ALL`] by name, any case; `state` is taken for `status`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("state") {
            return Ok(MachineSort::Status);
        }
        MachineSort::ALL
            .into_iter()
            .find(|sort| sort.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = MachineSort::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown sort {s:?}: use one of {}", names.join(", "))
            })
    }
}

/// `GET /v1/machines?order=`: `asc` (the default) or `desc`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    #[default]
    Asc,
    Desc,
}

impl SortOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        }
    }
}

impl std::str::FromStr for SortOrder {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [SortOrder::Asc, SortOrder::Desc]
            .into_iter()
            .find(|order| order.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown order {s:?}: use asc or desc"))
    }
}

/// The fleet's health in one word, in [`FleetSummary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FleetHealth {
    /// No machine is OFFLINE, STALE or DEAD, and a leader is known.
    Healthy,
    /// Some machines are OFFLINE, STALE or DEAD, but at most half of them.
    Degraded,
    /// More than half the machines are OFFLINE, STALE or DEAD, or the answering node
    /// knows no leader (the fleet cannot commit anything, statuses included).
    Critical,
}

impl FleetHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            FleetHealth::Healthy => "healthy",
            FleetHealth::Degraded => "degraded",
            FleetHealth::Critical => "critical",
        }
    }
}

impl fmt::Display for FleetHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `GET /v1/fleet/summary`: counts, capacity and use of the whole fleet, from the
/// answering node's replica with its live gossip view on top (as `GET /v1/machines`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FleetSummary {
    /// The node that answered.
    pub machine_id: MachineId,
    /// The leader that node knows, if any.
    pub leader: Option<MachineId>,
    pub health: FleetHealth,
    /// Machines in the fleet's record.
    pub machines: u32,
    /// Machines by status; every status is present, zeros included.
    pub by_status: std::collections::BTreeMap<MachineStatus, u32>,
    /// ONLINE, BUSY or DRAINING: answering heartbeats.
    pub reachable: u32,
    /// OFFLINE, STALE or DEAD. (REGISTERING machines count in neither.)
    pub unreachable: u32,
    /// Capacity summed over every machine in the record (the last known figures for a
    /// machine that is not reachable).
    pub cpu_cores: u64,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub disk_free_bytes: u64,
    /// Mean CPU use (0.0 to 1.0) of the reachable machines; `null` when none is.
    pub avg_cpu_usage: Option<f32>,
    /// Mean memory use (used / total, 0.0 to 1.0) of the reachable machines; `null` when
    /// none is.
    pub avg_memory_usage: Option<f32>,
    /// Jobs the fleet keeps (finished ones until `job_retention`) by state; every state
    /// is present, zeros included.
    pub jobs: std::collections::BTreeMap<crate::JobState, u64>,
    /// Set while dispatch is stopped fleet-wide.
    pub kill_switch: Option<crate::operate::KillSwitchView>,
    /// What the caller's org has spent and run today (UTC), running work included.
    #[serde(default)]
    pub spend_today: crate::costs::Usage,
    /// The caller's org's budget, if it has one.
    #[serde(default)]
    pub budget: Option<crate::costs::BudgetView>,
}

/// One resource sample in [`MachineHistory`]: what the machine measured at `at_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResourceSample {
    pub at_ms: UnixMillis,
    /// CPU use over the sample, 0.0 to 1.0 across all cores.
    pub cpu_usage: f32,
    /// One-minute load average divided by the number of cores.
    pub load: f32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// Free space on the disk that holds the data directory.
    pub disk_free_bytes: u64,
}

impl ResourceSample {
    /// The chartable part of `resources`, measured at `at_ms`.
    pub fn new(at_ms: UnixMillis, resources: &Resources) -> Self {
        ResourceSample {
            at_ms,
            cpu_usage: resources.cpu_usage,
            load: resources.load,
            memory_used_bytes: resources.memory_used_bytes,
            memory_total_bytes: resources.memory_total_bytes,
            disk_free_bytes: resources.disk_free_bytes,
        }
    }
}

/// `GET /v1/machines/{id}/history[?since_ms=T]`: the samples a machine keeps of itself
/// (the last hour at most), oldest first, read from that machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MachineHistory {
    pub machine: MachineId,
    /// How often the machine samples, in milliseconds.
    pub interval_ms: u64,
    /// Samples taken after `since_ms` (all kept ones without it), oldest first.
    pub samples: Vec<ResourceSample>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_print_as_on_the_wire() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::NotFound,
            ErrorCode::PayloadTooLarge,
            ErrorCode::Conflict,
            ErrorCode::NoLeader,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::BudgetExceeded,
            ErrorCode::QuotaExceeded,
        ] {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
        let err = ApiError::not_found("no machine with id 1");
        assert_eq!(err.to_string(), "no machine with id 1 (not_found)");
    }

    #[test]
    fn sorts_parse_by_name_with_state_for_status() {
        for sort in MachineSort::ALL {
            assert_eq!(sort.as_str().parse::<MachineSort>(), Ok(sort));
            assert_eq!(
                serde_json::to_string(&sort).unwrap(),
                format!("\"{}\"", sort.as_str())
            );
        }
        assert_eq!("STATE".parse::<MachineSort>(), Ok(MachineSort::Status));
        assert_eq!("CPU".parse::<MachineSort>(), Ok(MachineSort::Cpu));
        assert_eq!(
            "load".parse::<MachineSort>().unwrap_err(),
            "unknown sort \"load\": use one of hostname, name, status, uptime, cpu, memory, last_heartbeat"
        );
        assert_eq!("desc".parse::<SortOrder>(), Ok(SortOrder::Desc));
        assert_eq!(
            "down".parse::<SortOrder>().unwrap_err(),
            "unknown order \"down\": use asc or desc"
        );
    }

    #[test]
    fn summary_counts_use_wire_names_as_keys() {
        let summary = FleetSummary {
            machine_id: MachineId(1),
            leader: None,
            health: FleetHealth::Critical,
            machines: 1,
            by_status: MachineStatus::ALL.into_iter().map(|s| (s, 0)).collect(),
            reachable: 0,
            unreachable: 1,
            cpu_cores: 4,
            memory_total_bytes: 8,
            memory_used_bytes: 2,
            disk_total_bytes: 16,
            disk_free_bytes: 4,
            avg_cpu_usage: None,
            avg_memory_usage: None,
            jobs: crate::JobState::ALL.into_iter().map(|s| (s, 0)).collect(),
            kill_switch: None,
            spend_today: Default::default(),
            budget: None,
        };
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["health"], "critical");
        assert_eq!(json["by_status"]["ONLINE"], 0);
        assert_eq!(json["jobs"]["timed_out"], 0);
        assert!(json["avg_cpu_usage"].is_null());
        let back: FleetSummary = serde_json::from_value(json).unwrap();
        assert_eq!(back, summary);
    }
}
