//! Jobs: what a job runs as the fleet stores it ([`JobSpec`]; the API's body is a
//! [`JobRequest`](crate::JobRequest)), where it may run ([`JobTarget`]), and the record the
//! fleet keeps of it ([`JobRecord`]) as it moves through its [`JobState`]s.
//!
//! ```text
//!  submit ─▶ queued ─dispatch─▶ dispatched ─report running─▶ running ─exit 0─▶ completed
//!              ▲ │                  │                          │
//!              │ └─queue timeout─▶ timed_out                   ├─fail, attempts left: queued
//!              └───────requeue (machine lost, never started)───┤   (after a backoff)
//!                                                              └─fail, none left ─▶ failed
//!  cancel: queued ─▶ cancelled at once; dispatched/running ─▶ stopped, then cancelled
//! ```
//!
//! Validation of a spec lives in [`crate::job_spec`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{MachineId, UnixMillis};

/// A job's id: the log index of the entry that submitted it, so every replica agrees.
/// Children of a fan-out (and jobs submitted right after one) take the next free numbers.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for JobId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse()
            .map(JobId)
            .map_err(|_| format!("job id must be a decimal number, got {s:?}"))
    }
}

/// `agent_id` value that fans a job out to every ONLINE machine.
pub const ALL_ONLINE: &str = "all_online";

/// What to run, where and how persistently, as the fleet stores it: made from the API's
/// [`JobRequest`](crate::JobRequest) (with its secrets sealed), or by a template or session.
///
/// This is a stored record, in the Raft log (`Command::SubmitJob`) and in snapshots
/// ([`JobRecord::spec`]), so it changes only in ways named fields carry: a field added with
/// `#[serde(default)]`. A rename or a new meaning needs a schema and a migration (see
/// ARCHITECTURE.md, "Stored data and upgrades"); a change to the API belongs in the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// No `deny_unknown_fields`, so an older build reads a newer record (ignoring what it does
// not know).
pub struct JobSpec {
    /// The program and its arguments; never run through a shell.
    pub command: Vec<String>,
    /// Run in a container from this image; only machines with Docker take such a job.
    #[serde(default)]
    pub image: Option<String>,
    /// The image id (`sha256:...`, as `docker image inspect` shows it) the machine's copy of
    /// `image` must have; a machine whose copy differs fails the attempt, naming both.
    #[serde(default)]
    pub image_digest: Option<String>,
    /// The template the job was made from, for display only.
    #[serde(default)]
    pub template_id: Option<String>,
    /// Labels a machine must carry, key and value, to take the job.
    #[serde(default)]
    pub required_labels: BTreeMap<String, String>,
    /// One machine id (hex), `"all_online"` for one child job per ONLINE machine, or absent
    /// for any machine.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Higher runs first; equal priorities run in submission order.
    #[serde(default)]
    pub priority: i32,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are secret. A request gives the values; the
    /// node it enters through seals each (see [`crate::job_spec::SEALED_PREFIX`]) before
    /// the spec goes to the log, only the machine that runs the job opens them, and the
    /// API shows each as [`crate::job_spec::SECRET_SHOWN`].
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
    /// CPU cores a container job may use (e.g. 1.5); container jobs only.
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Memory a container job may use, in MiB; container jobs only.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// The user a container job runs as (`name`, `uid` or `uid:gid`); the image's own
    /// `USER` when `None`. A policy that sets one overrides it. Container jobs only.
    #[serde(default)]
    pub user: Option<String>,
    /// When the machine pulls `image` from its registry: only when it lacks it (`None`
    /// means [`PullPolicy::Missing`]), before every attempt, or never. Container jobs only.
    #[serde(default)]
    pub pull: Option<PullPolicy>,
    /// GPUs the container gets, 1 to 16: the job goes only to a machine with that many
    /// free, which hands them to the container (as `docker run --gpus`). Container jobs
    /// only.
    #[serde(default)]
    pub gpus: Option<u32>,
    /// Longest one attempt may run; the executor stops it after that.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Longest the job may wait for a machine before it is `timed_out`.
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout_seconds: u64,
    /// Attempts that may fail before the job is `failed`, 1 to 10.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// A second submit with the same key in the same org returns the first job.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The owning organisation.
    #[serde(default = "default_org")]
    pub org: String,
    /// A batch job, or a session: a long-lived container people work inside, made from a
    /// template with `POST /v1/sessions`.
    #[serde(default)]
    pub kind: JobKind,
}

/// When a machine pulls a container's image from its registry.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Only when the machine does not have the image.
    #[default]
    Missing,
    /// Before every attempt, so a moved tag is followed.
    Always,
    /// Never: a machine without the image fails the attempt at once.
    Never,
}

impl PullPolicy {
    /// The lowercase name, as the API and the CLI spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Missing => "missing",
            PullPolicy::Always => "always",
            PullPolicy::Never => "never",
        }
    }
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PullPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            _ => Err(format!(
                "pull policy must be missing, always or never, got {s:?}"
            )),
        }
    }
}

/// What a job record holds.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    #[default]
    Job,
    /// Lives until terminated, its longest life or its machine's loss; never retried.
    Session,
}

pub(crate) fn default_queue_timeout() -> u64 {
    300
}

pub(crate) fn default_max_attempts() -> u32 {
    3
}

/// The org of a job that names none, and of the fleet's first key.
pub const DEFAULT_ORG: &str = "default";

pub(crate) fn default_org() -> String {
    DEFAULT_ORG.to_string()
}

impl Default for JobSpec {
    /// An empty command with every other field at its API default.
    fn default() -> Self {
        JobSpec {
            command: Vec::new(),
            image: None,
            image_digest: None,
            template_id: None,
            required_labels: BTreeMap::new(),
            agent_id: None,
            priority: 0,
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            cpus: None,
            memory_mb: None,
            user: None,
            pull: None,
            gpus: None,
            timeout_seconds: None,
            queue_timeout_seconds: default_queue_timeout(),
            max_attempts: default_max_attempts(),
            idempotency_key: None,
            org: default_org(),
            kind: JobKind::Job,
        }
    }
}

impl JobSpec {
    /// A spec running `command` with every other field at its default.
    pub fn new<S: Into<String>>(command: impl IntoIterator<Item = S>) -> Self {
        JobSpec {
            command: command.into_iter().map(Into::into).collect(),
            ..JobSpec::default()
        }
    }

    /// Where the job may run, read from `agent_id`.
    pub fn target(&self) -> Result<JobTarget, String> {
        match self.agent_id.as_deref() {
            None => Ok(JobTarget::Any),
            Some(ALL_ONLINE) => Ok(JobTarget::AllOnline),
            Some(text) => text.parse().map(JobTarget::Machine).map_err(|_| {
                format!("agent_id {text:?} is neither a machine id (1 to 16 hex digits) nor \"{ALL_ONLINE}\"")
            }),
        }
    }
}

/// Where a job may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobTarget {
    /// Any machine that fits.
    Any,
    /// This machine only.
    Machine(MachineId),
    /// A parent job with one child per machine ONLINE at submit time; never placed itself.
    AllOnline,
}

/// Where a job is in its life.
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
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a machine (or for its retry backoff to pass).
    Queued,
    /// Handed to a machine that has not yet said it started.
    Dispatched,
    Running,
    Completed,
    /// Out of attempts; the record's `error` says why.
    Failed,
    /// No machine took it within its queue timeout.
    TimedOut,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Queued,
        JobState::Dispatched,
        JobState::Running,
        JobState::Completed,
        JobState::Failed,
        JobState::TimedOut,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Dispatched => "dispatched",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::TimedOut => "timed_out",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether the job has reached an end it never leaves.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::TimedOut | JobState::Cancelled
        )
    }

    /// Whether a machine holds the job now.
    pub fn is_on_machine(self) -> bool {
        matches!(self, JobState::Dispatched | JobState::Running)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown job state {s:?}"))
    }
}

/// One try at running a job on one machine. Numbers start at 1 and have no gaps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub machine: MachineId,
    pub dispatched_at_ms: UnixMillis,
    pub started_at_ms: Option<UnixMillis>,
    pub finished_at_ms: Option<UnixMillis>,
    pub exit_code: Option<i32>,
    /// Why the attempt failed or was taken back from its machine.
    pub error: Option<String>,
    /// What an hour on its machine cost when it was dispatched (the machine's
    /// `cost_per_hour` label), in micro-dollars.
    #[serde(default)]
    pub rate_micro_usd_per_hour: u64,
    /// Its run time times that rate, once it has ended and the ledger has it.
    #[serde(default)]
    pub cost_micro_usd: Option<u64>,
    /// What it reported spending (`POST /v1/costs`).
    #[serde(default)]
    pub reported_micro_usd: u64,
    /// The ids of the reports counted, so a retried report counts once.
    #[serde(default)]
    pub report_ids: Vec<String>,
    /// `reported_micro_usd` by the UTC day each report came, as the cost ledger has it
    /// (left out while there is none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reported_days: Vec<crate::costs::DaySpend>,
    /// For a retry: why it runs where it does, against the attempt before it (`moved from
    /// attic, where attempt 1 failed: exit code 2`). Set from protocol level 9 on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_because: Option<String>,
    /// The image its machine is pulling, from the machine's word until the attempt runs
    /// or ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulling: Option<String>,
}

/// The leader's decision to run attempt `attempt` of `job` on `machine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub job: JobId,
    pub attempt: u32,
    pub machine: MachineId,
}

/// What a machine says about the attempt it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobReport {
    /// The machine pulls the attempt's image before it starts it (protocol level 9).
    Pulling { image: String },
    /// The process (or container) started.
    Running,
    /// It exited by itself, or was stopped after a cancel.
    Exited { exit_code: i32 },
    /// It could not be started or run (bad image, spawn error, attempt timeout).
    Failed { error: String },
}

/// The fleet's record of one job, kept in the Raft log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub spec: JobSpec,
    /// Where the job may run, resolved at submit (a fan-out child names its machine).
    pub target: JobTarget,
    pub state: JobState,
    pub attempts: Vec<Attempt>,
    /// Attempts that failed; requeues (the machine was lost) do not count.
    pub failures: u32,
    /// Why the job failed or timed out.
    pub error: Option<String>,
    pub submitted_at_ms: UnixMillis,
    /// The log index of the submit entry that created the job (a child shares its parent's).
    /// A submit answered with a job of another index was a duplicate.
    pub submitted_index: u64,
    /// When the state last changed.
    pub updated_at_ms: UnixMillis,
    /// A queued job is not placed before this (retry backoff).
    pub not_before_ms: UnixMillis,
    pub cancel_requested: bool,
    pub parent: Option<JobId>,
    pub children: Vec<JobId>,
    /// Why no machine took the queued job, as the leader last saw it.
    pub queue_reason: Option<String>,
}

impl JobRecord {
    /// A new queued job.
    pub fn queued(
        id: JobId,
        spec: JobSpec,
        target: JobTarget,
        at_ms: UnixMillis,
        index: u64,
    ) -> Self {
        JobRecord {
            id,
            spec,
            target,
            state: JobState::Queued,
            attempts: Vec::new(),
            failures: 0,
            error: None,
            submitted_at_ms: at_ms,
            submitted_index: index,
            updated_at_ms: at_ms,
            not_before_ms: at_ms,
            cancel_requested: false,
            parent: None,
            children: Vec::new(),
            queue_reason: None,
        }
    }

    /// The latest attempt, if the job was ever dispatched.
    pub fn current_attempt(&self) -> Option<&Attempt> {
        self.attempts.last()
    }

    /// The number the next dispatch must carry.
    pub fn next_attempt(&self) -> u32 {
        self.attempts
            .last()
            .map_or(1, |a| a.number.saturating_add(1))
    }

    /// A fan-out parent: it runs nowhere itself and finishes with its children.
    pub fn is_parent(&self) -> bool {
        self.target == JobTarget::AllOnline
    }

    /// When a queued job has waited its full queue timeout: measured from when it last
    /// entered the queue, or from the end of its backoff.
    pub fn queue_deadline_ms(&self) -> UnixMillis {
        self.updated_at_ms
            .max(self.not_before_ms)
            .saturating_add(self.spec.queue_timeout_seconds.saturating_mul(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_body_takes_the_defaults() {
        let spec: JobSpec = serde_json::from_str(r#"{"command": ["echo", "hi"]}"#).unwrap();
        assert_eq!(spec, JobSpec::new(["echo", "hi"]));
        assert_eq!(spec.queue_timeout_seconds, 300);
        assert_eq!(spec.max_attempts, 3);
        assert_eq!(spec.org, "default");
        assert_eq!(spec.target(), Ok(JobTarget::Any));
    }

    #[test]
    fn agent_id_names_a_machine_or_all_online() {
        let mut spec = JobSpec::new(["x"]);
        spec.agent_id = Some("00ab".into());
        assert_eq!(spec.target(), Ok(JobTarget::Machine(MachineId(0xab))));
        spec.agent_id = Some("all_online".into());
        assert_eq!(spec.target(), Ok(JobTarget::AllOnline));
        spec.agent_id = Some("laptop".into());
        assert!(spec.target().unwrap_err().contains("\"laptop\""));
    }

    #[test]
    fn states_print_as_on_the_wire() {
        for state in JobState::ALL {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
        }
        assert_eq!(JobState::TimedOut.as_str(), "timed_out");
    }

    #[test]
    fn job_ids_are_json_numbers() {
        assert_eq!(serde_json::to_string(&JobId(42)).unwrap(), "42");
        assert_eq!("42".parse::<JobId>(), Ok(JobId(42)));
        assert!("x".parse::<JobId>().is_err());
    }

    #[test]
    fn attempts_number_from_one() {
        let mut job = JobRecord::queued(JobId(1), JobSpec::new(["x"]), JobTarget::Any, 5, 1);
        assert_eq!(job.next_attempt(), 1);
        job.attempts.push(Attempt {
            number: 1,
            machine: MachineId(1),
            dispatched_at_ms: 6,
            started_at_ms: None,
            finished_at_ms: None,
            exit_code: None,
            error: None,
            ..Attempt::default()
        });
        assert_eq!(job.next_attempt(), 2);
        assert_eq!(job.queue_deadline_ms(), 5 + 300_000);
    }
}
