//! The invariants, checked once the faults are over: every acknowledged job on every node
//! and completed, one job per key, one completed attempt per job, identical records, at
//! most one leader per term (from `/v1/cluster` samples taken all along), and, from the
//! marks, runs started after their job completed and jobs executed more than once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use shoal_protocol::{JobList, JobState, JobView, MachineId};
use tokio::sync::watch;

use super::client::Book;
use super::fleet::Fleet;

/// Who each member named leader, by term.
#[derive(Debug, Default)]
pub struct Samples {
    leaders: Mutex<BTreeMap<u64, BTreeSet<MachineId>>>,
    count: Mutex<u64>,
}

/// Asks every member for `/v1/cluster` every 200 ms until `stop`.
pub async fn sample_loop(fleet: Arc<Fleet>, samples: Arc<Samples>, stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let asks = (0..fleet.members.len()).map(|i| fleet.cluster(i));
        for status in futures::future::join_all(asks).await.into_iter().flatten() {
            if let Some(leader) = status.leader {
                let mut leaders = samples.leaders.lock().unwrap();
                leaders.entry(status.term).or_default().insert(leader);
            }
            *samples.count.lock().unwrap() += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One mark line: an attempt that started.
#[derive(Debug, Clone)]
pub struct Mark {
    pub job: u64,
    pub attempt: u32,
    pub machine: String,
    pub unix_ms: f64,
}

/// A run that started after its job was recorded completed.
#[derive(Debug, Clone)]
pub struct LateRun {
    pub mark: Mark,
    /// How long after the completion it started.
    pub late_by: Duration,
}

/// What the checks found.
#[derive(Debug, Default)]
pub struct Checked {
    pub acknowledged: usize,
    pub jobs_seen: usize,
    /// Unix time (ms) the run began, for the times shown.
    pub epoch_unix_ms: f64,
    /// Acknowledged jobs missing on some node or not completed there.
    pub lost: Vec<String>,
    pub acked_with_wrong_key: Vec<String>,
    pub keys_with_several_jobs: Vec<String>,
    pub jobs_with_several_completed_attempts: Vec<u64>,
    pub diverging: Vec<u64>,
    pub terms_with_two_leaders: Vec<(u64, Vec<MachineId>)>,
    pub cluster_samples: u64,
    pub terms_seen: usize,
    pub runs_after_completion: Vec<LateRun>,
    /// Jobs that started more than once in all (a lost run is retried: expected after kills).
    pub executed_twice: Vec<u64>,
    /// Attempts that started more than once (job, attempt, then machine and time of each
    /// start since the run began).
    pub attempts_run_twice: Vec<String>,
    pub marks: usize,
    /// Completed jobs with no mark at all: the marks themselves did not work.
    pub unmarked: Vec<u64>,
}

impl Checked {
    /// Every broken invariant, one line each; empty when all hold.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |what: &str, items: Vec<String>| {
            if !items.is_empty() {
                let shown: Vec<_> = items.iter().take(10).cloned().collect();
                out.push(format!("{what} ({}): {}", items.len(), shown.join("; ")));
            }
        };
        add("acknowledged jobs lost or unfinished", self.lost.clone());
        add(
            "acknowledged with another key",
            self.acked_with_wrong_key.clone(),
        );
        add(
            "keys with several jobs",
            self.keys_with_several_jobs.clone(),
        );
        let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>();
        add(
            "jobs with several completed attempts",
            ids(&self.jobs_with_several_completed_attempts),
        );
        add("records differing between nodes", ids(&self.diverging));
        add(
            "terms with two leaders",
            self.terms_with_two_leaders
                .iter()
                .map(|(t, l)| format!("term {t}: {l:?}"))
                .collect(),
        );
        add(
            "runs started after their job completed",
            self.runs_after_completion
                .iter()
                .map(|r| {
                    format!(
                        "job {} attempt {} on {} at +{:.1}s, {:.1}s after it completed",
                        r.mark.job,
                        r.mark.attempt,
                        r.mark.machine,
                        (r.mark.unix_ms - self.epoch_unix_ms) / 1e3,
                        r.late_by.as_secs_f64()
                    )
                })
                .collect(),
        );
        add("completed jobs without a mark", ids(&self.unmarked));
        out
    }
}

/// Every job member `i` holds, page by page.
async fn all_jobs(fleet: &Fleet, i: usize) -> anyhow::Result<BTreeMap<u64, JobView>> {
    let mut jobs = BTreeMap::new();
    let mut after: Option<u64> = None;
    loop {
        let path = match after {
            Some(id) => format!("/v1/jobs?limit=1000&after={id}"),
            None => "/v1/jobs?limit=1000".to_string(),
        };
        let page: JobList = fleet.get(i, &path, Duration::from_secs(10)).await?;
        let full = page.jobs.len() == 1000;
        for job in page.jobs {
            after = Some(job.id.0);
            jobs.insert(job.id.0, job);
        }
        if !full {
            return Ok(jobs);
        }
    }
}

/// The marks every job wrote, from every machine's file.
fn read_marks(fleet: &Fleet) -> anyhow::Result<Vec<Mark>> {
    let mut marks = Vec::new();
    for entry in std::fs::read_dir(fleet.marks.path())? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let [job, attempt, machine, uptime] = words[..] else {
                anyhow::bail!("a mark line that does not parse: {line:?}");
            };
            let uptime: f64 = uptime.parse().context("mark uptime")?;
            marks.push(Mark {
                job: job.parse()?,
                attempt: attempt.parse()?,
                machine: machine.to_string(),
                unix_ms: fleet.boot_unix_ms + uptime * 1000.0,
            });
        }
    }
    Ok(marks)
}

/// Waits (90 s at most) for every acknowledged job to complete on every member, then
/// checks the invariants.
pub async fn check(fleet: &Fleet, book: &Book, samples: &Samples) -> anyhow::Result<Checked> {
    let acked: BTreeMap<u64, String> = book.acks().into_iter().map(|a| (a.job.0, a.key)).collect();
    let n = fleet.members.len();
    let deadline = fleet.now() + Duration::from_secs(90);
    let views = loop {
        let mut views = Vec::new();
        for i in 0..n {
            views.push(all_jobs(fleet, i).await.unwrap_or_default());
        }
        // Every acknowledged job finished everywhere, and every replica caught up.
        let done = views.iter().all(|view| {
            acked
                .keys()
                .all(|id| view.get(id).is_some_and(|j| j.state.is_finished()))
                && view.values().all(|j| j.state.is_finished())
                && *view == views[0]
        });
        if done || fleet.now() > deadline {
            break views;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut checked = Checked {
        acknowledged: acked.len(),
        epoch_unix_ms: fleet.epoch_unix_ms,
        jobs_seen: views.iter().map(BTreeMap::len).max().unwrap_or(0),
        ..Checked::default()
    };
    for (id, key) in &acked {
        for (i, view) in views.iter().enumerate() {
            match view.get(id) {
                None => checked
                    .lost
                    .push(format!("job {id} missing on {}", fleet.members[i].name)),
                Some(job) if job.state != JobState::Completed => checked.lost.push(format!(
                    "job {id} {} on {}",
                    job.state, fleet.members[i].name
                )),
                Some(job) if job.spec.idempotency_key.as_ref() != Some(key) => checked
                    .acked_with_wrong_key
                    .push(format!("job {id}: {key}")),
                Some(_) => {}
            }
        }
    }
    let all_ids: BTreeSet<u64> = views.iter().flat_map(|v| v.keys().copied()).collect();
    for id in &all_ids {
        let records: Vec<_> = views.iter().map(|v| v.get(id)).collect();
        if records.iter().any(|r| *r != records[0]) {
            checked.diverging.push(*id);
        }
    }
    // The other checks read one replica; the one above says they all agree.
    let reference = &views[0];
    let mut by_key: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for job in reference.values() {
        if let Some(key) = &job.spec.idempotency_key {
            by_key.entry(key).or_default().push(job.id.0);
        }
        let completed = job
            .attempts
            .iter()
            .filter(|a| a.exit_code == Some(0) && a.finished_at_ms.is_some())
            .count();
        if completed > 1 || (job.state == JobState::Completed && completed != 1) {
            checked.jobs_with_several_completed_attempts.push(job.id.0);
        }
    }
    checked.keys_with_several_jobs = by_key
        .into_iter()
        .filter(|(_, jobs)| jobs.len() > 1)
        .map(|(key, jobs)| format!("{key}: {jobs:?}"))
        .collect();
    let leaders = samples.leaders.lock().unwrap();
    checked.terms_seen = leaders.len();
    checked.cluster_samples = *samples.count.lock().unwrap();
    checked.terms_with_two_leaders = leaders
        .iter()
        .filter(|(_, l)| l.len() > 1)
        .map(|(t, l)| (*t, l.iter().copied().collect()))
        .collect();
    drop(leaders);

    let marks = read_marks(fleet)?;
    judge_marks(&mut checked, &marks, reference);
    Ok(checked)
}

/// What the marks say against the records: runs started after their job completed, jobs
/// and attempts started more than once, completed jobs that never marked.
pub fn judge_marks(checked: &mut Checked, marks: &[Mark], jobs: &BTreeMap<u64, JobView>) {
    checked.marks = marks.len();
    let mut per_job: BTreeMap<u64, usize> = BTreeMap::new();
    let mut per_attempt: BTreeMap<(u64, u32), Vec<String>> = BTreeMap::new();
    for mark in marks {
        *per_job.entry(mark.job).or_default() += 1;
        let at = (mark.unix_ms - checked.epoch_unix_ms) / 1e3;
        per_attempt
            .entry((mark.job, mark.attempt))
            .or_default()
            .push(format!("{} +{at:.1}s", mark.machine));
        let Some(job) = jobs.get(&mark.job) else {
            continue;
        };
        // The job's last change is its completion; every run of it must start before.
        let completed_ms = job.updated_at_ms as f64;
        if job.state == JobState::Completed && mark.unix_ms > completed_ms {
            checked.runs_after_completion.push(LateRun {
                late_by: Duration::from_secs_f64((mark.unix_ms - completed_ms) / 1e3),
                mark: mark.clone(),
            });
        }
    }
    checked.executed_twice = per_job
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    checked.attempts_run_twice = per_attempt
        .into_iter()
        .filter(|(_, starts)| starts.len() > 1)
        .map(|((job, attempt), starts)| format!("job {job} attempt {attempt}: {starts:?}"))
        .collect();
    checked.unmarked = jobs
        .values()
        .filter(|j| j.state == JobState::Completed && !per_job.contains_key(&j.id.0))
        .map(|j| j.id.0)
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::{JobId, JobRecord, JobSpec, JobTarget};

    fn completed(id: u64, at_ms: u64) -> (u64, JobView) {
        let queued = JobRecord::queued(JobId(id), JobSpec::new(["true"]), JobTarget::Any, 0, id);
        let mut job = JobView::from(queued);
        job.state = JobState::Completed;
        job.updated_at_ms = at_ms;
        (id, job)
    }

    fn mark(job: u64, attempt: u32, machine: &str, unix_ms: f64) -> Mark {
        let machine = machine.to_string();
        Mark {
            job,
            attempt,
            machine,
            unix_ms,
        }
    }

    #[test]
    fn the_marks_show_late_runs_repeats_and_silence() {
        let jobs: BTreeMap<_, _> = [
            completed(1, 10_000),
            completed(2, 20_000),
            completed(3, 30_000),
        ]
        .into_iter()
        .collect();
        let marks = [
            // Job 1: attempt 1 ran, then attempt 1 again on a replaying n5 after completion.
            mark(1, 1, "n1", 9_000.0),
            mark(1, 1, "n5", 12_500.0),
            // Job 2: a lost run, retried as attempt 2, both before completion.
            mark(2, 1, "n2", 15_000.0),
            mark(2, 2, "n3", 18_000.0),
            // Job 3 never marked.
        ];
        let mut checked = Checked::default();
        judge_marks(&mut checked, &marks, &jobs);
        assert_eq!(checked.marks, 4);
        let late: Vec<_> = checked
            .runs_after_completion
            .iter()
            .map(|r| (r.mark.job, r.mark.machine.as_str(), r.late_by))
            .collect();
        assert_eq!(late, [(1, "n5", Duration::from_millis(2500))]);
        assert_eq!(checked.executed_twice, [1, 2]);
        assert_eq!(checked.attempts_run_twice.len(), 1);
        assert!(checked.attempts_run_twice[0].starts_with("job 1 attempt 1"));
        assert_eq!(checked.unmarked, [3]);
        assert_eq!(checked.violations().len(), 2, "{:?}", checked.violations());
    }
}
