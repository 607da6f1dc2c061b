//! Read-only questions the leader's loops ask of the job records: what to place, what a
//! machine holds, what waited too long. They look at the open jobs only, and [`prunable`]
//! at the finished-jobs index.

use shoal_protocol::{Attempt, FleetState, JobId, JobRecord, JobState, MachineId, UnixMillis};

/// Queued jobs the scheduler may place (fan-out parents excluded), in id order.
pub fn queue(state: &FleetState) -> Vec<&JobRecord> {
    state.queued_jobs().filter(|job| !job.is_parent()).collect()
}

/// The jobs (and their current attempts) dispatched to or running on `machine`.
pub fn running_on(state: &FleetState, machine: MachineId) -> Vec<(JobId, u32)> {
    on_machines(state)
        .filter(|(_, attempt)| attempt.machine == machine)
        .map(|(job, attempt)| (job.id, attempt.number))
        .collect()
}

/// What one machine holds: the jobs dispatched to it or running there, and the GPUs
/// they asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub jobs: u32,
    pub gpus: u32,
}

/// What each machine holds, in one pass over the open jobs.
pub fn held_on_machines(state: &FleetState) -> std::collections::BTreeMap<MachineId, Held> {
    let mut held = std::collections::BTreeMap::new();
    for (job, attempt) in on_machines(state) {
        let on: &mut Held = held.entry(attempt.machine).or_default();
        on.jobs += 1;
        on.gpus = on.gpus.saturating_add(job.spec.gpus.unwrap_or(0));
    }
    held
}

/// Attempts dispatched at or before `cutoff_ms` whose machine has not said it started, or
/// at or before `pulling_cutoff_ms` when the machine said it pulls the image; each with
/// whether it pulls.
pub fn dispatched_before(
    state: &FleetState,
    cutoff_ms: UnixMillis,
    pulling_cutoff_ms: UnixMillis,
) -> Vec<(JobId, u32, bool)> {
    on_machines(state)
        .filter(|(job, attempt)| {
            let cutoff = match attempt.pulling.is_some() {
                true => pulling_cutoff_ms,
                false => cutoff_ms,
            };
            job.state == JobState::Dispatched && attempt.dispatched_at_ms <= cutoff
        })
        .map(|(job, attempt)| (job.id, attempt.number, attempt.pulling.is_some()))
        .collect()
}

/// Queued jobs whose queue timeout has passed at `now_ms`: each wants a `TimeOutJob`.
pub fn queue_expired(state: &FleetState, now_ms: UnixMillis) -> Vec<JobId> {
    queue(state)
        .into_iter()
        .filter(|job| now_ms >= job.queue_deadline_ms())
        .map(|job| job.id)
        .collect()
}

/// The waiting reasons that differ from what the state holds, so the leader writes a
/// `SetQueueReasons` only when something changed.
pub fn changed_reasons(state: &FleetState, waiting: &[(JobId, String)]) -> Vec<(JobId, String)> {
    waiting
        .iter()
        .filter(|(id, reason)| {
            state.jobs.get(id).is_some_and(|job| {
                job.state == JobState::Queued && job.queue_reason.as_deref() != Some(reason)
            })
        })
        .cloned()
        .collect()
}

/// Finished top-level jobs that last changed before `before`, oldest first: what a prune
/// removes. Read from the finished-jobs index, so it costs what it finds.
pub fn prunable(state: &FleetState, before: UnixMillis) -> Vec<JobId> {
    state.finished_before(before).collect()
}

fn on_machines(state: &FleetState) -> impl Iterator<Item = (&JobRecord, &Attempt)> {
    state
        .placed_jobs()
        .filter_map(|job| job.current_attempt().map(|attempt| (job, attempt)))
}
