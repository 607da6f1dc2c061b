//! Job events: a job's new state against how it stood before the command.

use std::collections::HashSet;

use serde::Serialize;
use shoal_protocol::events::{Topic, kind};
use shoal_protocol::{FleetState, JobId, JobRecord, JobState, MachineId, UnixMillis};

use super::Sink;

/// What one job looked like before the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    state: JobState,
    attempts: usize,
    failures: u32,
    cancel_requested: bool,
    pulling: bool,
}

impl Mark {
    fn of(job: &JobRecord) -> Self {
        Mark {
            state: job.state,
            attempts: job.attempts.len(),
            failures: job.failures,
            cancel_requested: job.cancel_requested,
            pulling: pulling(job).is_some(),
        }
    }
}

/// The image the job's current attempt is pulling, if any.
fn pulling(job: &JobRecord) -> Option<&String> {
    job.current_attempt()?.pulling.as_ref()
}

/// Marks for the named jobs and their families, in the order their events go out:
/// children, the job, its parent.
pub(super) fn marks(
    state: &FleetState,
    named: impl IntoIterator<Item = JobId>,
) -> Vec<(JobId, Mark)> {
    let mut marks: Vec<(JobId, Mark)> = Vec::new();
    // A dispatch names thousands of jobs: a set, not a search of the marks, says which
    // were seen.
    let mut seen = HashSet::new();
    let mut add = |id: JobId| {
        if let Some(job) = state.jobs.get(&id)
            && seen.insert(id)
        {
            marks.push((id, Mark::of(job)));
        }
    };
    for id in named {
        let Some(job) = state.jobs.get(&id) else {
            continue;
        };
        job.children.iter().copied().for_each(&mut add);
        add(id);
        job.parent.into_iter().for_each(&mut add);
    }
    marks
}

/// A new job's details (fields in the order a JSON map of them would have).
#[derive(Serialize)]
struct SubmittedDetail<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_id: Option<&'a str>,
    #[serde(skip_serializing_if = "<[JobId]>::is_empty")]
    children: &'a [JobId],
    command: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    org: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<JobId>,
    priority: i32,
    state: JobState,
}

/// A new job.
pub(super) fn submitted(sink: &mut Sink, at_ms: UnixMillis, job: &JobRecord) {
    let detail = SubmittedDetail {
        agent_id: job.spec.agent_id.as_deref(),
        children: &job.children,
        command: &job.spec.command,
        image: job.spec.image.as_deref(),
        org: &job.spec.org,
        parent: job.parent,
        priority: job.spec.priority,
        state: job.state,
    };
    let subject = Some(job.id.to_string());
    sink.push(
        Some(at_ms),
        Topic::Job,
        kind::JOB_SUBMITTED,
        subject,
        &detail,
    );
}

/// How a job moved (fields in the order a JSON map of them would have).
#[derive(Serialize)]
struct ChangedDetail<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt_error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    machine: Option<MachineId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before_ms: Option<UnixMillis>,
    org: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<JobId>,
    state: JobState,
}

/// The one event (if any) for how a job moved under a command.
pub(super) fn changed(sink: &mut Sink, at_ms: UnixMillis, before: Mark, job: &JobRecord) {
    let moved = job.state != before.state || job.attempts.len() != before.attempts;
    let kind = if moved {
        match job.state {
            JobState::Dispatched => kind::JOB_DISPATCHED,
            JobState::Running => kind::JOB_RUNNING,
            JobState::Queued if job.failures > before.failures => kind::JOB_RETRYING,
            JobState::Queued => kind::JOB_REQUEUED,
            _ => kind::JOB_FINISHED,
        }
    } else if job.cancel_requested && !before.cancel_requested {
        kind::JOB_CANCEL_REQUESTED
    } else if pulling(job).is_some() && !before.pulling {
        kind::JOB_PULLING
    } else {
        return;
    };
    // A fan-out parent runs nowhere; every other job names the attempt the event is about.
    let attempt = job.current_attempt().filter(|_| !job.is_parent());
    let detail = ChangedDetail {
        attempt: attempt.map(|a| a.number),
        attempt_error: attempt
            .filter(|_| kind != kind::JOB_DISPATCHED)
            .and_then(|a| a.error.as_deref()),
        error: job.error.as_deref().filter(|_| job.state.is_finished()),
        exit_code: attempt.and_then(|a| a.exit_code),
        image: attempt.and_then(|a| a.pulling.as_deref()),
        machine: attempt.map(|a| a.machine),
        not_before_ms: (kind == kind::JOB_RETRYING).then_some(job.not_before_ms),
        org: &job.spec.org,
        parent: job.parent,
        state: job.state,
    };
    let subject = Some(job.id.to_string());
    sink.push(Some(at_ms), Topic::Job, kind, subject, &detail);
}
