//! Job events: a job's new state against how it stood before the command.

use std::collections::HashSet;

use serde_json::json;
use shoal_protocol::events::{Topic, kind};
use shoal_protocol::{FleetState, JobId, JobRecord, JobState, UnixMillis};

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

/// A new job.
pub(super) fn submitted(sink: &mut Sink, at_ms: UnixMillis, job: &JobRecord) {
    let mut detail = json!({
        "state": job.state,
        "org": job.spec.org,
        "command": job.spec.command,
        "priority": job.spec.priority,
    });
    if let Some(image) = &job.spec.image {
        detail["image"] = json!(image);
    }
    if let Some(agent) = &job.spec.agent_id {
        detail["agent_id"] = json!(agent);
    }
    if let Some(parent) = job.parent {
        detail["parent"] = json!(parent);
    }
    if !job.children.is_empty() {
        detail["children"] = json!(job.children);
    }
    let subject = Some(job.id.to_string());
    sink.push(
        Some(at_ms),
        Topic::Job,
        kind::JOB_SUBMITTED,
        subject,
        detail,
    );
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
    let mut detail = json!({"state": job.state, "org": job.spec.org});
    // A fan-out parent runs nowhere; every other job names the attempt the event is about.
    if let Some(attempt) = job.current_attempt().filter(|_| !job.is_parent()) {
        detail["attempt"] = json!(attempt.number);
        detail["machine"] = json!(attempt.machine);
        if let Some(image) = &attempt.pulling {
            detail["image"] = json!(image);
        }
        if let Some(code) = attempt.exit_code {
            detail["exit_code"] = json!(code);
        }
        if kind != kind::JOB_DISPATCHED
            && let Some(error) = &attempt.error
        {
            detail["attempt_error"] = json!(error);
        }
    }
    if let Some(error) = job.error.as_ref().filter(|_| job.state.is_finished()) {
        detail["error"] = json!(error);
    }
    if kind == kind::JOB_RETRYING {
        detail["not_before_ms"] = json!(job.not_before_ms);
    }
    if let Some(parent) = job.parent {
        detail["parent"] = json!(parent);
    }
    let subject = Some(job.id.to_string());
    sink.push(Some(at_ms), Topic::Job, kind, subject, detail);
}
