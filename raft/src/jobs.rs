//! The job commands of the state machine, and read-only queries the leader's loops use.
//!
//! Like the rest of `apply`, deterministic: times come in the commands, ids from the log
//! index. A rejected command changes nothing.
//!
//! ```text
//!  SubmitJob ─▶ queued ──Dispatch──▶ dispatched ──Running──▶ running ──Exited 0──▶ completed
//!                 ▲  │                   │                      │
//!                 │  └TimeOutJob▶ timed_out                     │ Exited n / Failed
//!                 ├──────── RequeueJob (not a failure) ─────────┤
//!                 └── failures < max_attempts: after a backoff ─┴─ otherwise ─▶ failed
//!  A fan-out parent runs nowhere: it is running once a child leaves the queue and
//!  finishes with the last child (completed only if every child completed).
//! ```

use std::collections::BTreeMap;

use shoal_protocol::levels::RETRY_NOTE_LEVEL;
use shoal_protocol::{
    Attempt, Command, ErrorCode, FleetState, JobId, JobKind, JobRecord, JobReport, JobSpec,
    JobState, JobTarget, KillSwitch, MachineId, MachineRecord, MachineStatus, Placement, Response,
    UnixMillis,
};

use crate::apply::ApplyCtx;
use crate::costs;

mod queries;

pub use queries::{
    Held, changed_reasons, dispatched_before, held_on_machines, prunable, queue, queue_expired,
    running_on,
};

/// The first retry waits this long; each further failure doubles the wait.
pub const BACKOFF_BASE_MS: u64 = 1_000;
/// The longest wait between retries.
pub const BACKOFF_MAX_MS: u64 = 60_000;
/// Most attempts a job keeps; a job taken back from machines this often fails, so a
/// machine that accepts work and never starts it cannot grow a record without end.
pub const MAX_ATTEMPT_RECORDS: usize = 32;

/// Records why queued jobs wait; reasons for jobs no longer queued are dropped.
pub(crate) fn set_queue_reasons(state: &mut FleetState, reasons: Vec<(JobId, String)>) -> Response {
    for (id, reason) in reasons {
        if let Some(job) = state.jobs.get_mut(&id)
            && job.state == JobState::Queued
        {
            job.queue_reason = Some(reason);
        }
    }
    Response::Done
}

pub(crate) fn submit(
    state: &mut FleetState,
    spec: JobSpec,
    at_ms: UnixMillis,
    ctx: &ApplyCtx,
) -> Response {
    if let Err(message) = spec.validate_logged() {
        return rejected(ErrorCode::BadRequest, message);
    }
    let target = match spec.target() {
        Ok(target) => target,
        Err(message) => return rejected(ErrorCode::BadRequest, message),
    };
    if let Some(key) = &spec.idempotency_key
        && let Some(existing) = state
            .idempotency
            .get(&spec.org)
            .and_then(|keys| keys.get(key))
            .and_then(|id| state.jobs.get(id))
    {
        return Response::Submitted {
            job: Box::new(existing.clone()),
            created: false,
        };
    }
    if let Some(refusal) = costs::over_limit(state, &spec.org, at_ms) {
        return refusal;
    }
    let machines: Vec<MachineId> = match target {
        JobTarget::AllOnline => fan_out_machines(state, &spec),
        _ => Vec::new(),
    };
    if target == JobTarget::AllOnline
        && let Some(refusal) = no_machine_to_fan_out(&spec, &machines)
    {
        return refusal;
    }

    let id = JobId(ctx.log_index.max(state.next_job_id));
    let mut parent = JobRecord::queued(id, spec, target, at_ms, ctx.log_index);
    for (n, machine) in machines.into_iter().enumerate() {
        let child_id = JobId(id.0 + 1 + n as u64);
        let mut child_spec = parent.spec.clone();
        child_spec.agent_id = Some(machine.to_string());
        child_spec.idempotency_key = None;
        let mut child = JobRecord::queued(
            child_id,
            child_spec,
            JobTarget::Machine(machine),
            at_ms,
            ctx.log_index,
        );
        child.parent = Some(id);
        parent.children.push(child_id);
        state.jobs.insert(child_id, child);
    }
    state.next_job_id = id.0 + 1 + parent.children.len() as u64;
    if let Some(key) = &parent.spec.idempotency_key {
        state
            .idempotency
            .entry(parent.spec.org.clone())
            .or_default()
            .insert(key.clone(), id);
    }
    state.jobs.insert(id, parent.clone());
    Response::Submitted {
        job: Box::new(parent),
        created: true,
    }
}

/// Why a fan-out (`agent_id: all_online`) may not be submitted now: no ONLINE machine
/// carries its required labels. The batch API asks before it writes anything, so a batch
/// is not submitted in part for that.
pub fn fan_out_refusal(state: &FleetState, spec: &JobSpec) -> Option<Response> {
    no_machine_to_fan_out(spec, &fan_out_machines(state, spec))
}

fn no_machine_to_fan_out(spec: &JobSpec, machines: &[MachineId]) -> Option<Response> {
    if !machines.is_empty() {
        return None;
    }
    Some(rejected(
        ErrorCode::Conflict,
        if spec.required_labels.is_empty() {
            "agent_id \"all_online\": no machine is ONLINE".to_string()
        } else {
            format!(
                "agent_id \"all_online\": no ONLINE machine has the required labels {}",
                labels_text(spec)
            )
        },
    ))
}

/// Machines ONLINE now that carry the spec's required labels, in id order.
fn fan_out_machines(state: &FleetState, spec: &JobSpec) -> Vec<MachineId> {
    state
        .machines
        .values()
        .filter(|m| m.status == MachineStatus::Online)
        .filter(|m| {
            let labels = m.labels();
            spec.required_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v.as_str()))
        })
        .map(|m| m.info.id)
        .collect()
}

fn labels_text(spec: &JobSpec) -> String {
    let pairs: Vec<String> = spec
        .required_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.join(",")
}

/// Why a retry runs on `machine`, against the attempt before it. The scheduler sends a
/// retry to a machine no earlier attempt ran on when one can take it, so the same machine
/// again means none could.
fn retry_note(
    machines: &BTreeMap<MachineId, MachineRecord>,
    job: &JobRecord,
    machine: MachineId,
) -> Option<String> {
    let before = job.attempts.last()?;
    let name = |id: MachineId| {
        machines
            .get(&id)
            .map_or_else(|| id.to_string(), |m| m.info.name.clone())
    };
    let what = match &before.error {
        Some(error) => format!("attempt {} failed: {error}", before.number),
        None => format!("attempt {} ended", before.number),
    };
    Some(match before.machine == machine {
        true => format!(
            "again on {}, where {what}: no other machine that can run it was free",
            name(machine)
        ),
        false => format!("moved from {}, where {what}", name(before.machine)),
    })
}

pub(crate) fn dispatch(
    state: &mut FleetState,
    placements: &[Placement],
    at_ms: UnixMillis,
) -> Response {
    let mut applied = Vec::new();
    // Each machine's rate once: reading it merges the machine's labels.
    let mut rates = std::collections::BTreeMap::new();
    for placement in placements {
        let rate = *rates
            .entry(placement.machine)
            .or_insert_with(|| costs::rate_of(state, placement.machine));
        let Some(job) = state.jobs.get_mut(&placement.job) else {
            continue;
        };
        let fits = job.state == JobState::Queued
            && !job.is_parent()
            && !job.cancel_requested
            && placement.attempt == job.next_attempt()
            && at_ms >= job.not_before_ms
            && match job.target {
                JobTarget::Machine(m) => m == placement.machine,
                JobTarget::Any => true,
                JobTarget::AllOnline => false,
            }
            && state.machines.contains_key(&placement.machine);
        if !fits {
            continue;
        }
        let placed_because = match state.fleet_level >= RETRY_NOTE_LEVEL {
            true => retry_note(&state.machines, job, placement.machine),
            false => None,
        };
        job.attempts.push(Attempt {
            number: placement.attempt,
            machine: placement.machine,
            dispatched_at_ms: at_ms,
            started_at_ms: None,
            finished_at_ms: None,
            exit_code: None,
            error: None,
            rate_micro_usd_per_hour: rate,
            placed_because,
            ..Attempt::default()
        });
        job.state = JobState::Dispatched;
        job.queue_reason = None;
        job.updated_at_ms = at_ms;
        applied.push(job.id);
        if let Some(parent) = job.parent {
            settle_parent(state, parent, at_ms);
        }
    }
    Response::Jobs(applied)
}

/// The job, if `attempt` is the attempt a machine now holds; otherwise the rejection.
fn current(state: &mut FleetState, id: JobId, attempt: u32) -> Result<&mut JobRecord, Response> {
    let Some(job) = state.jobs.get_mut(&id) else {
        return Err(job_not_found(id));
    };
    if job.state.is_finished() {
        return Err(already_finished(job));
    }
    let holds =
        job.state.is_on_machine() && job.current_attempt().map(|a| a.number) == Some(attempt);
    if !holds {
        let now = match job.current_attempt() {
            Some(a) => format!("{} (attempt {})", job.state, a.number),
            None => job.state.to_string(),
        };
        return Err(rejected(
            ErrorCode::Conflict,
            format!("stale attempt {attempt} of job {id}: the job is {now}"),
        ));
    }
    Ok(job)
}

pub(crate) fn report_job(
    state: &mut FleetState,
    id: JobId,
    attempt: u32,
    report: JobReport,
    at_ms: UnixMillis,
) -> Response {
    let job = match current(state, id, attempt) {
        Ok(job) => job,
        Err(rejection) => return rejection,
    };
    if !matches!(report, JobReport::Pulling { .. }) {
        last_attempt(job).pulling = None;
    }
    match report {
        JobReport::Pulling { image } => {
            // Only before the attempt runs, and only the image it runs.
            let fits = job.state == JobState::Dispatched && job.spec.image.as_ref() == Some(&image);
            let attempt = last_attempt(job);
            if fits && attempt.pulling.is_none() {
                attempt.pulling = Some(image);
                job.updated_at_ms = at_ms;
            }
        }
        JobReport::Running => {
            if job.state == JobState::Dispatched {
                job.state = JobState::Running;
                job.updated_at_ms = at_ms;
                last_attempt(job).started_at_ms = Some(at_ms);
            }
        }
        JobReport::Exited { exit_code: 0 } => {
            let attempt = last_attempt(job);
            attempt.finished_at_ms = Some(at_ms);
            attempt.exit_code = Some(0);
            job.state = JobState::Completed;
            job.updated_at_ms = at_ms;
        }
        JobReport::Exited { exit_code } => fail(
            job,
            format!("exit code {exit_code}"),
            Some(exit_code),
            at_ms,
        ),
        JobReport::Failed { error } => fail(job, error, None, at_ms),
    }
    finish_update(state, id, at_ms)
}

fn last_attempt(job: &mut JobRecord) -> &mut Attempt {
    job.attempts
        .last_mut()
        .expect("a job on a machine has an attempt")
}

/// A failed attempt: cancelled if a cancel was asked for, else retried after a backoff
/// while attempts remain, else failed.
fn fail(job: &mut JobRecord, error: String, exit_code: Option<i32>, at_ms: UnixMillis) {
    let attempt = last_attempt(job);
    attempt.finished_at_ms = Some(at_ms);
    attempt.pulling = None;
    attempt.exit_code = exit_code;
    attempt.error = Some(error.clone());
    job.failures = job.failures.saturating_add(1);
    job.updated_at_ms = at_ms;
    if job.cancel_requested {
        job.state = JobState::Cancelled;
    } else if job.failures < job.spec.max_attempts {
        job.state = JobState::Queued;
        job.not_before_ms = at_ms.saturating_add(backoff_ms(job.failures));
        job.queue_reason = None;
    } else {
        job.state = JobState::Failed;
        job.error = Some(error);
    }
}

/// The wait before retrying after `failures` failures: 1 s, 2 s, 4 s ... at most 60 s.
pub fn backoff_ms(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    (BACKOFF_BASE_MS << doublings).min(BACKOFF_MAX_MS)
}

pub(crate) fn cancel(state: &mut FleetState, id: JobId, at_ms: UnixMillis) -> Response {
    let Some(job) = state.jobs.get_mut(&id) else {
        return job_not_found(id);
    };
    if job.state.is_finished() {
        return already_finished(job);
    }
    cancel_one(job, at_ms);
    for child in job.children.clone() {
        if let Some(child) = state.jobs.get_mut(&child)
            && !child.state.is_finished()
        {
            cancel_one(child, at_ms);
        }
    }
    finish_update(state, id, at_ms)
}

/// A queued job is cancelled at once; one on a machine is stopped there first.
pub(crate) fn cancel_one(job: &mut JobRecord, at_ms: UnixMillis) {
    job.cancel_requested = true;
    if job.state == JobState::Queued && !job.is_parent() {
        job.state = JobState::Cancelled;
        job.updated_at_ms = at_ms;
    }
}

pub(crate) fn requeue(
    state: &mut FleetState,
    id: JobId,
    attempt: u32,
    reason: String,
    at_ms: UnixMillis,
) -> Response {
    let job = match current(state, id, attempt) {
        Ok(job) => job,
        Err(rejection) => return rejection,
    };
    let last = last_attempt(job);
    last.finished_at_ms = Some(at_ms);
    last.pulling = None;
    last.error = Some(reason.clone());
    job.updated_at_ms = at_ms;
    if job.cancel_requested {
        job.state = JobState::Cancelled;
    } else if job.spec.kind == JobKind::Session {
        // A session's container is gone with its machine: it fails, saying why.
        job.state = JobState::Failed;
        job.error = Some(reason);
    } else if job.attempts.len() >= MAX_ATTEMPT_RECORDS {
        job.state = JobState::Failed;
        job.error = Some(format!(
            "taken back from machines {} times, last: {reason}",
            job.attempts.len()
        ));
    } else {
        job.state = JobState::Queued;
        job.queue_reason = None;
    }
    finish_update(state, id, at_ms)
}

pub(crate) fn time_out(state: &mut FleetState, id: JobId, at_ms: UnixMillis) -> Response {
    let Some(job) = state.jobs.get_mut(&id) else {
        return job_not_found(id);
    };
    if job.state.is_finished() {
        return already_finished(job);
    }
    if job.is_parent() {
        return rejected(
            ErrorCode::Conflict,
            format!("job {id} fans out; it finishes with its children"),
        );
    }
    if job.state != JobState::Queued {
        return rejected(
            ErrorCode::Conflict,
            format!("job {id} is {}, not queued", job.state),
        );
    }
    if at_ms < job.queue_deadline_ms() {
        return rejected(
            ErrorCode::Conflict,
            format!("job {id} has not yet waited its queue timeout"),
        );
    }
    let waited = format!(
        "no machine took the job within {} s",
        job.spec.queue_timeout_seconds
    );
    job.error = Some(match &job.queue_reason {
        Some(reason) => format!("{waited}: {reason}"),
        None => waited,
    });
    job.state = JobState::TimedOut;
    job.updated_at_ms = at_ms;
    finish_update(state, id, at_ms)
}

/// After a change to job `id`: brings its parent (or itself, if it is one) up to date and
/// answers with the job.
fn finish_update(state: &mut FleetState, id: JobId, at_ms: UnixMillis) -> Response {
    let parent = match state.jobs.get(&id) {
        Some(job) if job.is_parent() => Some(id),
        Some(job) => job.parent,
        None => None,
    };
    if let Some(parent) = parent {
        settle_parent(state, parent, at_ms);
    }
    match state.jobs.get(&id) {
        Some(job) => Response::Job(Box::new(job.clone())),
        None => job_not_found(id),
    }
}

/// A parent is running once any child has left the queue, and finishes with its last
/// child: completed if all completed, cancelled if a cancel was asked for, failed otherwise.
fn settle_parent(state: &mut FleetState, id: JobId, at_ms: UnixMillis) {
    let Some(parent) = state.jobs.get(&id) else {
        return;
    };
    if parent.state.is_finished() {
        return;
    }
    let children: Vec<JobState> = parent
        .children
        .iter()
        .filter_map(|child| state.jobs.get(child).map(|c| c.state))
        .collect();
    let total = children.len();
    let completed = children
        .iter()
        .filter(|s| **s == JobState::Completed)
        .count();
    let (next, error) = if children.iter().all(|s| s.is_finished()) {
        if completed == total {
            (JobState::Completed, None)
        } else if parent.cancel_requested {
            (JobState::Cancelled, None)
        } else {
            let error = format!(
                "{} of {total} child jobs did not complete",
                total - completed
            );
            (JobState::Failed, Some(error))
        }
    } else if parent.state == JobState::Running || children.iter().any(|s| *s != JobState::Queued) {
        (JobState::Running, None)
    } else {
        (JobState::Queued, None)
    };
    let parent = state.jobs.get_mut(&id).expect("parent looked up above");
    if parent.state != next {
        parent.state = next;
        parent.error = error;
        parent.updated_at_ms = at_ms;
    }
}

/// Forgets finished top-level jobs that last changed before `before`, with their
/// children (which finish first) and their idempotency keys. It walks the finished-jobs
/// index from its oldest end, so its cost follows what it removes.
pub(crate) fn prune(state: &mut FleetState, before: UnixMillis) -> Response {
    let old: Vec<JobId> = queries::prunable(state, before);
    let mut removed = Vec::new();
    for id in old {
        let Some(job) = state.jobs.remove(&id) else {
            continue;
        };
        state.finished_jobs.remove(&(job.updated_at_ms, id));
        for child in &job.children {
            state.jobs.remove(child);
            removed.push(*child);
        }
        if let Some(key) = &job.spec.idempotency_key
            && let Some(keys) = state.idempotency.get_mut(&job.spec.org)
            && keys.get(key) == Some(&id)
        {
            keys.remove(key);
            if keys.is_empty() {
                state.idempotency.remove(&job.spec.org);
            }
        }
        removed.push(id);
    }
    costs::prune(state, before);
    Response::Jobs(removed)
}

/// Turns the kill switch on or off; off restarts the queue clock of every queued job.
pub(crate) fn set_kill_switch(
    state: &mut FleetState,
    switch: Option<KillSwitch>,
    terminate: bool,
    at_ms: UnixMillis,
) -> Response {
    if terminate && switch.is_some() {
        let on_machines: Vec<JobId> = state.placed_jobs.keys().copied().collect();
        for id in on_machines {
            if let Some(job) = state.jobs.get_mut(&id) {
                cancel_one(job, at_ms);
            }
        }
    }
    let resumed = state.kill_switch.is_some() && switch.is_none();
    state.kill_switch = switch;
    if resumed {
        let queued: Vec<JobId> = queries::queue(state).iter().map(|job| job.id).collect();
        for id in queued {
            let job = state.jobs.get_mut(&id).expect("a queued job exists");
            job.updated_at_ms = job.updated_at_ms.max(at_ms);
            job.queue_reason = None;
        }
    }
    Response::Done
}

/// The jobs a command names; with those in its response, every job it can change.
pub(crate) fn named_jobs(cmd: &Command) -> Vec<JobId> {
    match cmd {
        Command::Dispatch { placements, .. } => placements.iter().map(|p| p.job).collect(),
        Command::ReportJob { job, .. }
        | Command::ReportCost { job, .. }
        | Command::CancelJob { job, .. }
        | Command::RequeueJob { job, .. }
        | Command::TimeOutJob { job, .. } => vec![*job],
        _ => Vec::new(),
    }
}

/// Settles and brings the derived indexes ([`shoal_protocol::indexes`]) up to date for
/// the jobs a command touched: those it named, those its response names (a new job,
/// pruned ones), and their parents and children.
pub(crate) fn refresh_open(state: &mut FleetState, mut ids: Vec<JobId>, response: &Response) {
    match response {
        Response::Submitted { job, .. } => {
            ids.push(job.id);
            ids.extend(&job.children);
        }
        Response::Jobs(listed) => ids.extend(listed),
        _ => {}
    }
    // A dispatch names its jobs and lists those it placed: each is refreshed once.
    ids.sort_unstable();
    ids.dedup();
    let mut family = Vec::new();
    for id in ids {
        let owes = state.jobs.get(&id).is_some_and(|job| {
            family.extend(job.parent);
            family.extend(&job.children);
            costs::owes(job)
        });
        refresh_one(state, id, owes);
    }
    family.sort_unstable();
    family.dedup();
    for id in family {
        let owes = state.jobs.get(&id).is_some_and(costs::owes);
        refresh_one(state, id, owes);
    }
}

/// Settles job `id` when it `owes`, then brings the indexes up to date for it.
fn refresh_one(state: &mut FleetState, id: JobId, owes: bool) {
    if owes {
        costs::settle(state, id);
    }
    state.refresh_indexes(id);
}

fn rejected(code: ErrorCode, message: String) -> Response {
    Response::Rejected { code, message }
}

fn job_not_found(id: JobId) -> Response {
    rejected(ErrorCode::NotFound, format!("no job with id {id}"))
}

fn already_finished(job: &JobRecord) -> Response {
    rejected(
        ErrorCode::Conflict,
        format!("job {} is already {}", job.id, job.state),
    )
}

#[cfg(test)]
mod tests;
