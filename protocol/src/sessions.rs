//! Sessions as the API shows them. A session is kept in the log as a job of kind
//! [`JobKind::Session`](crate::JobKind): placed, run, adopted, costed and stopped the way
//! jobs are, but never retried, and failed (not requeued) when its machine is lost.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{JobId, JobRecord, JobState, MachineId, UnixMillis};

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Waiting for a machine.
    Pending,
    /// Sent to a machine, its container starting.
    Starting,
    Running,
    /// Terminated by a user, or its command ended by itself with exit code 0.
    Terminated,
    /// Its container failed or could not start, its machine was lost, or it reached its
    /// longest life; `reason` says which.
    Failed,
}

impl SessionState {
    pub fn of(state: JobState) -> SessionState {
        match state {
            JobState::Queued => SessionState::Pending,
            JobState::Dispatched => SessionState::Starting,
            JobState::Running => SessionState::Running,
            JobState::Completed | JobState::Cancelled => SessionState::Terminated,
            JobState::Failed | JobState::TimedOut => SessionState::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Pending => "pending",
            SessionState::Starting => "starting",
            SessionState::Running => "running",
            SessionState::Terminated => "terminated",
            SessionState::Failed => "failed",
        }
    }
}

impl std::str::FromStr for SessionState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            SessionState::Pending,
            SessionState::Starting,
            SessionState::Running,
            SessionState::Terminated,
            SessionState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            format!(
                "unknown session state {s:?}: use pending, starting, running, terminated or failed"
            )
        })
    }
}

/// `POST /v1/sessions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    /// The template, by name; its current version is used.
    pub template_id: String,
    /// Labels the machine must carry, besides the template's.
    #[serde(default)]
    pub required_labels: BTreeMap<String, String>,
    /// One machine (its id) to run on; any capable machine when absent.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// A second create with the same key in the same org returns the first session.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// A session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: JobId,
    /// `name@vN`: the template and the version it was made from.
    pub template: String,
    pub image: String,
    pub state: SessionState,
    /// Why it is pending, or why it ended.
    pub reason: Option<String>,
    pub machine: Option<MachineId>,
    pub org: String,
    pub created_at_ms: UnixMillis,
    pub started_at_ms: Option<UnixMillis>,
    pub ended_at_ms: Option<UnixMillis>,
    pub max_duration_seconds: Option<u64>,
}

impl SessionView {
    pub fn of(job: &JobRecord) -> SessionView {
        let attempt = job.current_attempt();
        let state = SessionState::of(job.state);
        let reason = match state {
            SessionState::Pending => job.queue_reason.clone(),
            SessionState::Terminated if job.state == JobState::Cancelled => {
                Some("terminated".to_string())
            }
            SessionState::Failed | SessionState::Terminated => job
                .error
                .clone()
                .or_else(|| attempt.and_then(|a| a.error.clone())),
            _ if job.cancel_requested => {
                Some("terminate requested: its machine is stopping it".to_string())
            }
            _ => None,
        };
        SessionView {
            id: job.id,
            template: job.spec.template_id.clone().unwrap_or_default(),
            image: job.spec.image.clone().unwrap_or_default(),
            state,
            reason,
            machine: attempt.map(|a| a.machine),
            org: job.spec.org.clone(),
            created_at_ms: job.submitted_at_ms,
            started_at_ms: attempt.and_then(|a| a.started_at_ms),
            ended_at_ms: attempt
                .and_then(|a| a.finished_at_ms)
                .filter(|_| job.state.is_finished()),
            max_duration_seconds: job.spec.timeout_seconds,
        }
    }
}

/// `GET /v1/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// `POST /v1/sessions/{id}/exec`: a command run inside the session's container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The program and its arguments; never run through a shell.
    pub command: Vec<String>,
    /// Longest the command may run, 1 to 600 seconds [default: 60].
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

/// Longest an exec may run.
pub const MAX_EXEC_SECONDS: u64 = 600;
/// Most output an exec answer carries per stream; the rest is cut.
pub const MAX_EXEC_OUTPUT: usize = 1 << 20;

impl ExecRequest {
    pub fn validate(&self) -> Result<(), String> {
        if self.command.first().is_none_or(|p| p.trim().is_empty()) {
            return Err("command must name a program".into());
        }
        if self.command.iter().any(|arg| arg.contains('\0')) {
            return Err("command contains a NUL byte".into());
        }
        if self
            .timeout_seconds
            .is_some_and(|t| !(1..=MAX_EXEC_SECONDS).contains(&t))
        {
            return Err(format!("timeout_seconds must be 1 to {MAX_EXEC_SECONDS}"));
        }
        Ok(())
    }
}

/// What an exec printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecResult {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
    /// True when output past [`MAX_EXEC_OUTPUT`] bytes was cut.
    pub truncated: bool,
}

/// A text message on an attach WebSocket (binary messages are the terminal's bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttachMessage {
    /// From the client: the terminal's new size.
    Resize { cols: u16, rows: u16 },
    /// From the node, last: the shell exited.
    Exit { exit_code: i64 },
    /// From the node, last: the shell could not start or broke.
    Error { message: String },
}

/// `GET /v1/sessions/{id}/attach`: the terminal's size at the start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AttachParams {
    /// Columns, 1 to 1000 [default: 80].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cols: Option<u16>,
    /// Rows, 1 to 1000 [default: 24].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u16>,
}

/// The range of a terminal's columns and rows.
pub const TERMINAL_SIZE_RANGE: std::ops::RangeInclusive<u16> = 1..=1000;

impl AttachParams {
    /// The size asked for (the default where none is), or which one is out of range.
    pub fn size(&self) -> Result<(u16, u16), String> {
        let checked = |field: &str, value: Option<u16>, default: u16| {
            let value = value.unwrap_or(default);
            match TERMINAL_SIZE_RANGE.contains(&value) {
                true => Ok(value),
                false => Err(format!("{field} must be 1 to 1000, got {value}")),
            }
        };
        Ok((
            checked("cols", self.cols, 80)?,
            checked("rows", self.rows, 24)?,
        ))
    }
}
