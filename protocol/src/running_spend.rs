//! What running attempts have cost so far, kept as sums per org and start day so that an
//! org's use up to a command's time is a handful of additions, however many jobs run.
//!
//! An attempt started at `s` with rate `r` has, by time `t` on its start day, run `t - s`
//! and cost `(t - s) * r`: summed over attempts that is `t * n - Σs` and `t * Σr - Σ(s * r)`.
//! Attempts that started on an earlier day count from that day's midnight. The sum is
//! rounded up to a micro-dollar once, not per attempt (a settled attempt is rounded on its
//! own, see [`crate::costs::runtime_cost`]).

use imbl::{OrdMap, OrdSet};

use crate::costs::{CostTotals, Day, day_of, day_start_ms};
use crate::{JobId, JobKind, JobRecord, JobState, MachineId, UnixMillis};

const HOUR_MS: u128 = 3_600_000;

/// A running attempt, as its spend needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningAttempt {
    pub org: String,
    pub kind: JobKind,
    pub machine: MachineId,
    pub started_at_ms: UnixMillis,
    pub rate_micro_usd_per_hour: u64,
}

impl RunningAttempt {
    /// The job's attempt if it is running now.
    pub fn of(job: &JobRecord) -> Option<RunningAttempt> {
        if job.state != JobState::Running {
            return None;
        }
        let attempt = job.current_attempt()?;
        Some(RunningAttempt {
            org: job.spec.org.clone(),
            kind: job.spec.kind,
            machine: attempt.machine,
            started_at_ms: attempt.started_at_ms?,
            rate_micro_usd_per_hour: attempt.rate_micro_usd_per_hour,
        })
    }
}

/// Sums over the running attempts of one org that started on one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct StartSums {
    count: u64,
    rates: u128,
    starts: u128,
    starts_times_rates: u128,
}

impl StartSums {
    fn change(&mut self, attempt: &RunningAttempt, add: bool) {
        let (start, rate) = (
            u128::from(attempt.started_at_ms),
            u128::from(attempt.rate_micro_usd_per_hour),
        );
        if add {
            self.count += 1;
            self.rates += rate;
            self.starts += start;
            self.starts_times_rates += start * rate;
        } else {
            self.count -= 1;
            self.rates -= rate;
            self.starts -= start;
            self.starts_times_rates -= start * rate;
        }
    }

    /// Milliseconds run and micro-dollar-milliseconds-per-hour spent up to `end`, by
    /// attempts that count from their own start. An attempt that starts after `end`
    /// counts negative here; [`RunningSpend::org_day`] adds those back.
    fn since_starts(&self, end: UnixMillis) -> (i128, i128) {
        let end = i128::from(end);
        let signed = |n: u128| i128::try_from(n).unwrap_or(i128::MAX);
        (
            end * i128::from(self.count) - signed(self.starts),
            end * signed(self.rates) - signed(self.starts_times_rates),
        )
    }

    /// The same for attempts that count from `from` (they started before it).
    fn since(&self, from: UnixMillis, end: UnixMillis) -> (i128, i128) {
        let ms = i128::from(end.saturating_sub(from));
        let rates = i128::try_from(self.rates).unwrap_or(i128::MAX);
        (ms * i128::from(self.count), ms * rates)
    }
}

/// The running attempts by job, and their sums by org and start day.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunningSpend {
    by_job: OrdMap<JobId, RunningAttempt>,
    by_org: OrdMap<String, OrdMap<Day, StartSums>>,
    /// org -> (start, job, rate) of its running attempts, so the few that start after a
    /// command's time (its leader's clock was behind) can count 0, not less.
    starts: OrdMap<String, OrdSet<(UnixMillis, JobId, u64)>>,
}

impl RunningSpend {
    /// Makes the index hold `attempt` for `job` (`None`: the job runs nothing now).
    pub fn set(&mut self, job: JobId, attempt: Option<RunningAttempt>) {
        if self.by_job.get(&job) == attempt.as_ref() {
            return;
        }
        if let Some(old) = self.by_job.remove(&job) {
            self.change(job, &old, false);
        }
        if let Some(new) = attempt {
            self.change(job, &new, true);
            self.by_job.insert(job, new);
        }
    }

    fn change(&mut self, job: JobId, attempt: &RunningAttempt, add: bool) {
        let day = day_of(attempt.started_at_ms);
        let days = self.by_org.entry(attempt.org.clone()).or_default();
        let sums = days.entry(day).or_default();
        sums.change(attempt, add);
        if sums.count == 0 {
            days.remove(&day);
        }
        let starts = self.starts.entry(attempt.org.clone()).or_default();
        let start = (attempt.started_at_ms, job, attempt.rate_micro_usd_per_hour);
        if add {
            starts.insert(start);
        } else {
            starts.remove(&start);
        }
        if starts.is_empty() {
            self.starts.remove(&attempt.org);
            self.by_org.remove(&attempt.org);
        }
    }

    /// The running attempts, by job.
    pub fn attempts(&self) -> impl Iterator<Item = (JobId, &RunningAttempt)> {
        self.by_job.iter().map(|(id, attempt)| (*id, attempt))
    }

    pub fn len(&self) -> usize {
        self.by_job.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_job.is_empty()
    }

    /// What `org`'s running attempts ran and cost on `day`, counted up to `at_ms`.
    pub fn org_day(&self, org: &str, day: Day, at_ms: UnixMillis) -> CostTotals {
        let Some(days) = self.by_org.get(org) else {
            return CostTotals::default();
        };
        let from = day_start_ms(day);
        let end = at_ms.min(day_start_ms(day + 1));
        if end <= from {
            return CostTotals::default();
        }
        let (mut ms, mut spent) = (0i128, 0i128);
        for (started, sums) in days.range(..=day) {
            let (run, cost) = if *started == day {
                sums.since_starts(end)
            } else {
                sums.since(from, end)
            };
            ms += run;
            spent += cost;
        }
        // Attempts of `day` that start after `end` counted negative above: they count 0.
        if let Some(starts) = self.starts.get(org) {
            let later = (end.saturating_add(1), JobId(0), 0)..(day_start_ms(day + 1), JobId(0), 0);
            for (start, _, rate) in starts.range(later) {
                let ahead = i128::from(start - end);
                ms += ahead;
                spent += ahead * i128::from(*rate);
            }
        }
        let (ms, spent) = (ms.max(0) as u128, spent.max(0) as u128);
        CostTotals {
            runtime_micro_usd: u64::try_from(spent.div_ceil(HOUR_MS)).unwrap_or(u64::MAX),
            reported_micro_usd: 0,
            runner_ms: u64::try_from(ms).unwrap_or(u64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::costs::DAY_MS;

    const NOON: u64 = 20_000 * DAY_MS + DAY_MS / 2;

    fn attempt(org: &str, started_at_ms: u64, rate: u64) -> RunningAttempt {
        RunningAttempt {
            org: org.to_string(),
            kind: JobKind::Job,
            machine: MachineId(1),
            started_at_ms,
            rate_micro_usd_per_hour: rate,
        }
    }

    #[test]
    fn running_attempts_count_from_their_start_up_to_the_time_asked() {
        let mut running = RunningSpend::default();
        // $1.20 and $3.60 an hour, from noon and from a minute later.
        running.set(JobId(1), Some(attempt("lab", NOON, 1_200_000)));
        running.set(JobId(2), Some(attempt("lab", NOON + 60_000, 3_600_000)));
        running.set(JobId(3), Some(attempt("ops", NOON, 1_200_000)));
        let used = running.org_day("lab", 20_000, NOON + 120_000);
        // 2 min at $1.20/h = 40,000; 1 min at $3.60/h = 60,000.
        assert_eq!((used.runtime_micro_usd, used.runner_ms), (100_000, 180_000));
        // Asked before one started (another leader's clock): that one counts nothing.
        let early = running.org_day("lab", 20_000, NOON + 30_000);
        assert_eq!((early.runtime_micro_usd, early.runner_ms), (10_000, 30_000));
        assert_eq!(
            running.org_day("nobody", 20_000, NOON),
            CostTotals::default()
        );
    }

    #[test]
    fn a_run_from_yesterday_counts_from_midnight_today() {
        let mut running = RunningSpend::default();
        let midnight = 20_001 * DAY_MS;
        running.set(JobId(1), Some(attempt("lab", midnight - 60_000, 3_600_000)));
        let today = running.org_day("lab", 20_001, midnight + 30_000);
        assert_eq!((today.runtime_micro_usd, today.runner_ms), (30_000, 30_000));
        let yesterday = running.org_day("lab", 20_000, midnight + 30_000);
        assert_eq!(yesterday.runner_ms, 60_000);
        assert_eq!(
            running.org_day("lab", 20_002, midnight + 30_000),
            CostTotals::default()
        );
    }

    #[test]
    fn an_attempt_that_stops_running_stops_counting() {
        let mut running = RunningSpend::default();
        running.set(JobId(1), Some(attempt("lab", NOON, 1_200_000)));
        running.set(JobId(1), Some(attempt("lab", NOON, 1_200_000)));
        running.set(JobId(2), Some(attempt("lab", NOON, 1_200_000)));
        running.set(JobId(1), None);
        running.set(JobId(9), None);
        assert_eq!(running.len(), 1);
        assert_eq!(
            running.org_day("lab", 20_000, NOON + 60_000).runner_ms,
            60_000
        );
        running.set(JobId(2), None);
        assert_eq!(running, RunningSpend::default(), "no empty sums are left");
    }
}
