//! The indexes [`FleetState`] keeps derived from its job records and ledger, so that what
//! the leader's loops, budget checks and prunes cost follows the work in flight, not the
//! history kept:
//!
//! - the jobs not finished yet: `queued_jobs` (waiting for a machine) and `placed_jobs`
//!   (dispatched or running);
//! - `finished_jobs`: finished top-level jobs by when they finished;
//! - `running`: running attempts, summed per org ([`crate::running_spend`]);
//! - the ledger's daily totals per org ([`crate::cost_ledger`]).
//!
//! `apply` calls [`FleetState::refresh_indexes`] for every job a command touched; none is
//! serialized, and [`FleetState::rebuild_indexes`] makes them all again after a snapshot
//! is read.

use crate::running_spend::{RunningAttempt, RunningSpend};
use crate::{FleetState, JobId, JobRecord, JobState, UnixMillis};

impl FleetState {
    /// Brings every index up to date for job `id`, as it stands now (or is gone).
    ///
    /// A finished job never changes again, so its place in `finished_jobs` stays right;
    /// a prune takes it out with the job.
    pub fn refresh_indexes(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            self.queued_jobs.remove(&id);
            self.placed_jobs.remove(&id);
            self.running.set(id, None);
            return;
        };
        set_member(&mut self.queued_jobs, id, job.state == JobState::Queued);
        set_member(&mut self.placed_jobs, id, job.state.is_on_machine());
        let running = RunningAttempt::of(job);
        if let Some(key) = finished_key(job) {
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
            .filter(|job| job.state.is_on_machine())
            .map(|job| job.id)
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
        self.placed_jobs.iter().filter_map(|id| self.jobs.get(id))
    }

    /// Finished top-level jobs that last changed before `before`, oldest first.
    pub fn finished_before(&self, before: UnixMillis) -> impl Iterator<Item = JobId> + '_ {
        self.finished_jobs
            .range(..(before, JobId(0)))
            .map(|(_, id)| *id)
    }
}

fn set_member(set: &mut imbl::OrdSet<JobId>, id: JobId, member: bool) {
    if member {
        set.insert(id);
    } else {
        set.remove(&id);
    }
}

/// Where a job goes in `finished_jobs`: finished jobs without a parent (children go with
/// their parent), by the time they finished.
fn finished_key(job: &JobRecord) -> Option<(UnixMillis, JobId)> {
    (job.state.is_finished() && job.parent.is_none()).then_some((job.updated_at_ms, job.id))
}
