//! Spend, reckoned inside the state machine so every replica agrees: an attempt's run time
//! times its machine's rate goes on the attempt and into the ledger (by day, org, machine
//! and kind) when it ends, running attempts count up to the time a command carries, work
//! reports what else it spent, and an org's budget refuses new work (and with
//! `on_exceed = stop`, stops running work) once a limit is met. A budget check reads the
//! org's daily total and its running sums: its cost does not grow with the jobs run.

use shoal_protocol::costs::{
    Budget, COST_LABEL, CostKey, CostTotals, Day, DaySpend, OnExceed, day_name, day_of, micros,
    runtime_cost, split_by_day, usd,
};
use shoal_protocol::running_spend::RunningAttempt;
use shoal_protocol::{
    Attempt, ErrorCode, FleetState, JobId, JobRecord, JobState, MachineId, Response, UnixMillis,
};

use crate::jobs;

/// Ledger rows are kept this many days, for reports; older ones are pruned with jobs.
pub const COST_RETENTION_DAYS: Day = 400;
/// Most reports with an id one attempt may make.
const MAX_REPORT_IDS: usize = 10_000;

/// What an hour on the machine costs now: its `cost_per_hour` label in micro-dollars,
/// 0 without one (or with one that is not an amount of dollars).
pub fn rate_of(state: &FleetState, machine: MachineId) -> u64 {
    state
        .machines
        .get(&machine)
        .and_then(|record| {
            let label = record.labels();
            let usd = label.get(COST_LABEL)?.parse::<f64>().ok()?;
            micros(COST_LABEL, usd).ok()
        })
        .unwrap_or(0)
}

fn unsettled(attempt: &Attempt) -> bool {
    attempt.finished_at_ms.is_some() && attempt.cost_micro_usd.is_none()
}

/// Whether the job has an ended attempt [`settle`] has not put in the ledger yet. Most
/// jobs a command touches have none: asking first spares taking the record for writing,
/// which copies its path of the shared map.
pub(crate) fn owes(job: &JobRecord) -> bool {
    job.attempts.iter().any(unsettled)
}

/// Puts what the job's ended attempts cost into the ledger, each attempt once, and on the
/// attempt itself (`cost_micro_usd`).
pub(crate) fn settle(state: &mut FleetState, id: JobId) {
    let FleetState { jobs, costs, .. } = state;
    let Some(job) = jobs.get_mut(&id) else {
        return;
    };
    for attempt in job.attempts.iter_mut().filter(|a| unsettled(a)) {
        let mut total = 0u64;
        for (day, spent) in ended_days(attempt) {
            total = total.saturating_add(spent.runtime_micro_usd);
            let key = CostKey {
                day,
                org: job.spec.org.clone(),
                machine: attempt.machine,
                kind: job.spec.kind,
            };
            costs.add(key, &spent);
        }
        attempt.cost_micro_usd = Some(total);
    }
}

/// What an ended attempt ran and cost, by UTC day (nothing while it has not ended).
pub fn ended_days(attempt: &Attempt) -> Vec<(Day, CostTotals)> {
    let Some(end) = attempt.finished_at_ms else {
        return Vec::new();
    };
    let start = attempt.started_at_ms.unwrap_or(end).min(end);
    run_days(start, end, attempt.rate_micro_usd_per_hour)
}

/// What running from `start` to `end` at `rate` micro-dollars an hour ran and cost, by day.
pub fn run_days(start: UnixMillis, end: UnixMillis, rate: u64) -> Vec<(Day, CostTotals)> {
    split_by_day(start, end)
        .into_iter()
        .map(|(day, ms)| {
            let spent = CostTotals {
                runtime_micro_usd: runtime_cost(ms, rate),
                reported_micro_usd: 0,
                runner_ms: ms,
            };
            (day, spent)
        })
        .collect()
}

/// What running attempts have cost so far, as ledger rows up to `at_ms`, each with its job.
pub fn running_rows(state: &FleetState, at_ms: UnixMillis) -> Vec<(JobId, CostKey, CostTotals)> {
    let mut rows = Vec::new();
    for (job, attempt) in state.running.attempts() {
        let rate = attempt.rate_micro_usd_per_hour;
        for (day, spent) in run_days(attempt.started_at_ms, at_ms, rate) {
            let key = CostKey {
                day,
                org: attempt.org.clone(),
                machine: attempt.machine,
                kind: attempt.kind,
            };
            rows.push((job, key, spent));
        }
    }
    rows
}

/// What one job ran, cost and reported, by UTC day, from its attempts: the ended ones, the
/// one running now up to `at_ms`, and the reports of each. Summed over jobs, the same
/// figures as the ledger's for as long as the jobs are kept.
pub fn job_days(job: &JobRecord, at_ms: UnixMillis) -> Vec<(Day, CostTotals)> {
    let mut days = Vec::new();
    for attempt in &job.attempts {
        days.extend(ended_days(attempt));
        days.extend(attempt.reported_days.iter().map(|spend| {
            let reported = CostTotals {
                reported_micro_usd: spend.micro_usd,
                ..CostTotals::default()
            };
            (spend.day, reported)
        }));
    }
    if let Some(running) = RunningAttempt::of(job) {
        let rate = running.rate_micro_usd_per_hour;
        days.extend(run_days(running.started_at_ms, at_ms, rate));
    }
    days
}

/// What `org` used on `day`, with running work counted up to `at_ms`: two lookups, however
/// many jobs the org ran or runs.
pub fn usage(state: &FleetState, org: &str, day: Day, at_ms: UnixMillis) -> CostTotals {
    let mut used = state.costs.org_day(org, day);
    used.add(&state.running.org_day(org, day, at_ms));
    used
}

/// Why `org` may not start more work at `at_ms`, if a limit of its budget is met.
pub fn over_limit(state: &FleetState, org: &str, at_ms: UnixMillis) -> Option<Response> {
    let budget = state.budgets.get(org)?;
    let day = day_of(at_ms);
    let used = usage(state, org, day, at_ms);
    let resets = format!("it resets at {}T00:00:00Z", day_name(day + 1));
    if let Some(limit) = budget.daily_micro_usd
        && used.micro_usd() >= limit
    {
        return Some(Response::Rejected {
            code: ErrorCode::BudgetExceeded,
            message: format!(
                "org {org} has spent ${:.6} today, its daily budget is ${:.2}: {resets}",
                usd(used.micro_usd()),
                usd(limit)
            ),
        });
    }
    if let Some(limit) = budget.daily_runner_ms
        && used.runner_ms >= limit
    {
        return Some(Response::Rejected {
            code: ErrorCode::QuotaExceeded,
            message: format!(
                "org {org} has run {:.2} runner minutes today, its daily quota is {}: {resets}",
                used.runner_ms as f64 / 60_000.0,
                limit as f64 / 60_000.0
            ),
        });
    }
    None
}

/// The jobs `on_exceed = stop` wants stopped at `at_ms`: on a machine, not yet asked to
/// stop, of an org over a limit.
pub fn to_stop(state: &FleetState, at_ms: UnixMillis) -> Vec<JobId> {
    let stopping: Vec<&String> = state
        .budgets
        .iter()
        .filter(|(_, budget)| budget.on_exceed == OnExceed::Stop)
        .map(|(org, _)| org)
        .filter(|org| over_limit(state, org, at_ms).is_some())
        .collect();
    if stopping.is_empty() {
        return Vec::new();
    }
    state
        .placed_jobs()
        .filter(|job| stopping.contains(&&job.spec.org))
        .filter(|job| !job.cancel_requested)
        .map(|job| job.id)
        .collect()
}

pub(crate) fn enforce(state: &mut FleetState, at_ms: UnixMillis) -> Response {
    let stopped = to_stop(state, at_ms);
    for id in &stopped {
        if let Some(job) = state.jobs.get_mut(id) {
            jobs::cancel_one(job, at_ms);
        }
    }
    Response::Jobs(stopped)
}

pub(crate) fn set_budget(state: &mut FleetState, org: String, budget: Option<Budget>) -> Response {
    match budget {
        Some(budget) => {
            state.budgets.insert(org, budget);
        }
        None => {
            if state.budgets.remove(&org).is_none() {
                return Response::Rejected {
                    code: ErrorCode::NotFound,
                    message: format!("org {org} has no budget"),
                };
            }
        }
    }
    Response::Done
}

pub(crate) fn report(
    state: &mut FleetState,
    id: JobId,
    number: u32,
    micro_usd: u64,
    report_id: Option<String>,
    at_ms: UnixMillis,
) -> Response {
    let FleetState { jobs, costs, .. } = state;
    let Some(job) = jobs.get_mut(&id) else {
        return Response::Rejected {
            code: ErrorCode::NotFound,
            message: format!("no job {id}"),
        };
    };
    let live =
        job.state == JobState::Running && job.current_attempt().map(|a| a.number) == Some(number);
    let Some(attempt) = job.attempts.last_mut().filter(|_| live) else {
        return Response::Rejected {
            code: ErrorCode::Forbidden,
            message: format!(
                "attempt {number} of job {id} is not running (the job is {}): its token no longer counts",
                job.state
            ),
        };
    };
    if let Some(report_id) = report_id {
        if attempt.report_ids.contains(&report_id) {
            return Response::CostReported { counted: false };
        }
        if attempt.report_ids.len() >= MAX_REPORT_IDS {
            return Response::Rejected {
                code: ErrorCode::Conflict,
                message: format!(
                    "attempt {number} of job {id} made {MAX_REPORT_IDS} reports with ids: send further ones without an id"
                ),
            };
        }
        attempt.report_ids.push(report_id);
    }
    let day = day_of(at_ms);
    attempt.reported_micro_usd = attempt.reported_micro_usd.saturating_add(micro_usd);
    match attempt.reported_days.last_mut() {
        Some(last) if last.day == day => {
            last.micro_usd = last.micro_usd.saturating_add(micro_usd);
        }
        _ => attempt.reported_days.push(DaySpend { day, micro_usd }),
    }
    let key = CostKey {
        day,
        org: job.spec.org.clone(),
        machine: attempt.machine,
        kind: job.spec.kind,
    };
    costs.add(
        key,
        &CostTotals {
            runtime_micro_usd: 0,
            reported_micro_usd: micro_usd,
            runner_ms: 0,
        },
    );
    Response::CostReported { counted: true }
}

/// Forgets ledger rows older than [`COST_RETENTION_DAYS`] before `now_ms`.
pub(crate) fn prune(state: &mut FleetState, now_ms: UnixMillis) {
    let oldest = day_of(now_ms).saturating_sub(COST_RETENTION_DAYS);
    state.costs.forget_before(oldest);
}
