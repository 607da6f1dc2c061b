//! The indexes [`FleetState`] keeps derived from its job records and ledger, so that what
//! the leader's loops, budget checks and prunes cost follows the work in flight, not the
//! history kept:
//!
//! - the jobs not finished yet: `queued_jobs` (waiting for a machine) and `placed_jobs`
//!   (dispatched or running, each with what a machine's count of its work needs: see
//!   [`OnMachine`]);
//! - `finished_jobs`: finished top-level jobs by when they finished;
//! - `running`: running attempts, summed per org ([`crate::running_spend`]);
//! - the ledger's daily totals per org ([`crate::cost_ledger`]).
//!
//! `apply` calls [`FleetState::refresh_indexes`] for every job a command touched; none is
//! serialized, and [`FleetState::rebuild_indexes`] makes them all again after a snapshot
//! is read.

use crate::running_spend::{RunningAttempt, RunningSpend};
use crate::{FleetState, JobId, JobRecord, JobState, MachineId, UnixMillis};

/// A job's current attempt on a machine, as the leader's loops count the machine's work
/// and find attempts that never started: read from the index, without the job's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnMachine {
    pub machine: MachineId,
    pub attempt: u32,
    /// `dispatched`; `false` once it runs.
    pub dispatched: bool,
    pub dispatched_at_ms: UnixMillis,
    /// The machine said it pulls the job's image.
    pub pulling: bool,
    /// The GPUs the job asked for.
    pub gpus: u32,
}

impl OnMachine {
    /// The job's current attempt, if the job is dispatched or running.
    pub fn of(job: &JobRecord) -> Option<OnMachine> {
        if !job.state.is_on_machine() {
            return None;
        }
        let attempt = job.current_attempt()?;
        Some(OnMachine {
            machine: attempt.machine,
            attempt: attempt.number,
            dispatched: job.state == JobState::Dispatched,
            dispatched_at_ms: attempt.dispatched_at_ms,
            pulling: attempt.pulling.is_some(),
            gpus: job.spec.gpus.unwrap_or(0),
        })
    }
}

impl FleetState {
    /// Brings every index up to date for job `id`, as it stands now (or is gone).
    ///
    /// A finished job never changes again, so its place in `finished_jobs` stays right;
    /// a prune takes it out with the job.
    pub fn refresh_indexes(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            set_member(&mut self.queued_jobs, id, false);
            set_entry(&mut self.placed_jobs, id, None);
            self.running.set(id, None);
            return;
        };
        set_member(&mut self.queued_jobs, id, job.state == JobState::Queued);
        set_entry(&mut self.placed_jobs, id, OnMachine::of(job));
        let running = RunningAttempt::of(job);
        if let Some(key) = finished_key(job).filter(|key| !self.finished_jobs.contains(key)) {
            self.finished_jobs.insert(key);
        }
        self.running.set(id, running);
    }

    /// Recomputes every derived index from the job records and the ledger rows.
    pub fn rebuild_indexes(&mut self) {
        self.queued_jobs = self
            .jobs
            .values()
            .filter(|job| job.state == JobState::Queued)
            .map(|job| job.id)
            .collect();
        self.placed_jobs = self
            .jobs
            .values()
            .filter_map(|job| Some((job.id, OnMachine::of(job)?)))
            .collect();
        self.finished_jobs = self.jobs.values().filter_map(finished_key).collect();
        self.running = RunningSpend::default();
        let running: Vec<(JobId, RunningAttempt)> = self
            .jobs
            .values()
            .filter_map(|job| RunningAttempt::of(job).map(|attempt| (job.id, attempt)))
            .collect();
        for (id, attempt) in running {
            self.running.set(id, Some(attempt));
        }
        self.costs.rebuild_totals();
    }

    /// The unfinished jobs: the queued ones, then the placed ones, each in id order.
    pub fn open_jobs(&self) -> impl Iterator<Item = &JobRecord> {
        self.queued_jobs().chain(self.placed_jobs())
    }

    /// The jobs waiting for a machine, in id order.
    pub fn queued_jobs(&self) -> impl Iterator<Item = &JobRecord> {
        self.queued_jobs.iter().filter_map(|id| self.jobs.get(id))
    }

    /// The jobs dispatched to or running on a machine, in id order.
    pub fn placed_jobs(&self) -> impl Iterator<Item = &JobRecord> {
        self.placed_jobs.keys().filter_map(|id| self.jobs.get(id))
    }

    /// Finished top-level jobs that last changed before `before`, oldest first.
    pub fn finished_before(&self, before: UnixMillis) -> impl Iterator<Item = JobId> + '_ {
        self.finished_jobs
            .range(..(before, JobId(0)))
            .map(|(_, id)| *id)
    }
}

// Both look before they write: most refreshes change nothing, and a write to a shared
// map copies its path even when it changes nothing.
fn set_member(set: &mut imbl::OrdSet<JobId>, id: JobId, member: bool) {
    if set.contains(&id) == member {
        return;
    }
    if member {
        set.insert(id);
    } else {
        set.remove(&id);
    }
}

fn set_entry<V: Clone + PartialEq>(map: &mut imbl::OrdMap<JobId, V>, id: JobId, value: Option<V>) {
    if map.get(&id) == value.as_ref() {
        return;
    }
    match value {
        Some(value) => map.insert(id, value),
        None => map.remove(&id),
    };
}

/// Where a job goes in `finished_jobs`: finished jobs without a parent (children go with
/// their parent), by the time they finished.
fn finished_key(job: &JobRecord) -> Option<(UnixMillis, JobId)> {
    (job.state.is_finished() && job.parent.is_none()).then_some((job.updated_at_ms, job.id))
}
