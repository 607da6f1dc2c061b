//! Read-only questions the leader's loops ask of the job records: what to place, what a
//! machine holds, what waited too long. They look at the open jobs only, and [`prunable`]
//! at the finished-jobs index.

use shoal_protocol::{FleetState, JobId, JobRecord, JobState, MachineId, UnixMillis};

/// Queued jobs the scheduler may place (fan-out parents excluded), in id order.
pub fn queue(state: &FleetState) -> Vec<&JobRecord> {
    state.queued_jobs().filter(|job| !job.is_parent()).collect()
}

/// The jobs (and their current attempts) dispatched to or running on `machine`.
pub fn running_on(state: &FleetState, machine: MachineId) -> Vec<(JobId, u32)> {
    state
        .placed_jobs
        .iter()
        .filter(|(_, on)| on.machine == machine)
        .map(|(id, on)| (*id, on.attempt))
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
    for on in state.placed_jobs.values() {
        let machine: &mut Held = held.entry(on.machine).or_default();
        machine.jobs += 1;
        machine.gpus = machine.gpus.saturating_add(on.gpus);
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
    state
        .placed_jobs
        .iter()
        .filter(|(_, on)| {
            let cutoff = match on.pulling {
                true => pulling_cutoff_ms,
                false => cutoff_ms,
            };
            on.dispatched && on.dispatched_at_ms <= cutoff
        })
        .map(|(id, on)| (*id, on.attempt, on.pulling))
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
