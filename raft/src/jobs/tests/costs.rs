//! Spend and budgets: what ended attempts cost, what running work counts, reports, and
//! the budgets that refuse new work and stop running work.

use shoal_protocol::costs::{Budget, CostKey, CostTotals, DAY_MS, OnExceed, day_of};

use super::*;
use crate::costs::{over_limit, usage};

const HOUR_MS: u64 = 3_600_000;
/// Noon on some UTC day.
const NOON: u64 = 20_000 * DAY_MS + 12 * HOUR_MS;

fn priced() -> Fleet {
    Fleet::new(&[
        (M1, MachineStatus::Online, &["cost_per_hour=1.2"]),
        (M2, MachineStatus::Online, &[]),
    ])
}

fn budget(usd: Option<u64>, minutes: Option<u64>, on_exceed: OnExceed) -> Command {
    Command::SetBudget {
        org: "default".into(),
        budget: Some(Budget {
            daily_micro_usd: usd,
            daily_runner_ms: minutes.map(|m| m * 60_000),
            on_exceed,
        }),
    }
}

/// Runs a job on `machine` from `start` for `ms`.
fn run(fleet: &mut Fleet, machine: MachineId, start: u64, ms: u64) -> JobId {
    let id = fleet.submit(spec(), start - 2).id;
    fleet.dispatch(id, 1, machine, start - 1);
    fleet.report(id, 1, JobReport::Running, start);
    fleet.report(id, 1, JobReport::Exited { exit_code: 0 }, start + ms);
    id
}

#[test]
fn an_ended_attempt_costs_its_run_time_at_its_machines_rate_once() {
    let mut fleet = priced();
    // $1.20 an hour for 30 s: 10,000 micro-dollars.
    let id = run(&mut fleet, M1, NOON, 30_000);
    let attempt = &fleet.job(id).attempts[0];
    assert_eq!(attempt.rate_micro_usd_per_hour, 1_200_000);
    assert_eq!(attempt.cost_micro_usd, Some(10_000));
    let used = usage(&fleet.state, "default", day_of(NOON), NOON + HOUR_MS);
    assert_eq!((used.runtime_micro_usd, used.runner_ms), (10_000, 30_000));
    // A retried final report is refused and adds nothing.
    let again = fleet.report(id, 1, JobReport::Exited { exit_code: 0 }, NOON + 40_000);
    assert_rejected(&again, ErrorCode::Conflict, "already");
    let used = usage(&fleet.state, "default", day_of(NOON), NOON + HOUR_MS);
    assert_eq!(used.runtime_micro_usd, 10_000);
    // A machine without a rate counts minutes, not money.
    run(&mut fleet, M2, NOON + 60_000, 60_000);
    let used = usage(&fleet.state, "default", day_of(NOON), NOON + HOUR_MS);
    assert_eq!((used.runtime_micro_usd, used.runner_ms), (10_000, 90_000));
}

#[test]
fn a_run_over_midnight_is_split_between_the_days() {
    let mut fleet = priced();
    let midnight = 20_001 * DAY_MS;
    run(&mut fleet, M1, midnight - 3_000, 6_000);
    let before = usage(&fleet.state, "default", 20_000, midnight + HOUR_MS);
    let after = usage(&fleet.state, "default", 20_001, midnight + HOUR_MS);
    assert_eq!((before.runner_ms, after.runner_ms), (3_000, 3_000));
    assert_eq!(
        (before.runtime_micro_usd, after.runtime_micro_usd),
        (1_000, 1_000)
    );
}

#[test]
fn running_work_counts_up_to_the_commands_time() {
    let mut fleet = priced();
    let id = fleet.submit(spec(), NOON - 2).id;
    fleet.dispatch(id, 1, M1, NOON - 1);
    fleet.report(id, 1, JobReport::Running, NOON);
    let used = usage(&fleet.state, "default", day_of(NOON), NOON + 60_000);
    assert_eq!((used.runtime_micro_usd, used.runner_ms), (20_000, 60_000));
}

#[test]
fn a_budget_refuses_new_work_once_met_and_names_spend_limit_and_reset() {
    let mut fleet = priced();
    fleet.apply(budget(Some(20_000), None, OnExceed::Finish));
    run(&mut fleet, M1, NOON, 30_000);
    // $0.01 of $0.02: still admitted.
    fleet.submit(spec(), NOON + 40_000);
    run(&mut fleet, M1, NOON + 50_000, 30_000);
    let refused = fleet.apply(Command::SubmitJob {
        spec: Box::new(spec()),
        at_ms: NOON + 100_000,
    });
    assert_rejected(&refused, ErrorCode::BudgetExceeded, "$0.020000 today");
    assert_rejected(&refused, ErrorCode::BudgetExceeded, "budget is $0.02");
    assert_rejected(
        &refused,
        ErrorCode::BudgetExceeded,
        "resets at 2024-10-05T00:00:00Z",
    );
    // Another org is not held back; tomorrow the org starts again.
    let mut other = spec();
    other.org = "lab".into();
    fleet.submit(other, NOON + 100_000);
    fleet.submit(spec(), NOON + DAY_MS);
    assert!(over_limit(&fleet.state, "default", NOON + DAY_MS).is_none());
}

#[test]
fn a_runner_minute_quota_refuses_the_next_job() {
    let mut fleet = priced();
    fleet.apply(budget(None, Some(1), OnExceed::Finish));
    run(&mut fleet, M2, NOON, 60_000);
    let refused = fleet.apply(Command::SubmitJob {
        spec: Box::new(spec()),
        at_ms: NOON + 61_000,
    });
    assert_rejected(
        &refused,
        ErrorCode::QuotaExceeded,
        "1.00 runner minutes today, its daily quota is 1:",
    );
}

#[test]
fn stop_cancels_the_orgs_running_work_once_a_limit_is_crossed() {
    let mut fleet = priced();
    fleet.apply(budget(Some(20_000), None, OnExceed::Stop));
    let id = fleet.submit(spec(), NOON - 2).id;
    fleet.dispatch(id, 1, M1, NOON - 1);
    fleet.report(id, 1, JobReport::Running, NOON);
    // 59 s at $1.20 an hour: under $0.02, nothing to stop.
    assert!(crate::costs::to_stop(&fleet.state, NOON + 59_000).is_empty());
    fleet.apply(Command::EnforceBudgets {
        at_ms: NOON + 59_000,
    });
    assert!(!fleet.job(id).cancel_requested);
    assert_eq!(crate::costs::to_stop(&fleet.state, NOON + 61_000), [id]);
    fleet.apply(Command::EnforceBudgets {
        at_ms: NOON + 61_000,
    });
    assert!(fleet.job(id).cancel_requested);
    fleet.report(id, 1, JobReport::Exited { exit_code: 143 }, NOON + 62_000);
    assert_eq!(fleet.job(id).state, JobState::Cancelled);
}

#[test]
fn reports_count_once_per_id_and_only_while_the_attempt_runs() {
    let mut fleet = priced();
    let id = fleet.submit(spec(), NOON - 2).id;
    fleet.dispatch(id, 1, M2, NOON - 1);
    let cost = |fleet: &mut Fleet, attempt, report_id: Option<&str>, at_ms| {
        fleet.apply(Command::ReportCost {
            job: id,
            attempt,
            micro_usd: 13_000,
            report_id: report_id.map(str::to_string),
            at_ms,
        })
    };
    // Dispatched, not running yet: refused.
    assert_rejected(
        &cost(&mut fleet, 1, None, NOON),
        ErrorCode::Forbidden,
        "not running",
    );
    fleet.report(id, 1, JobReport::Running, NOON);
    assert_eq!(
        cost(&mut fleet, 1, Some("call-1"), NOON + 1),
        Response::CostReported { counted: true }
    );
    assert_eq!(
        cost(&mut fleet, 1, Some("call-1"), NOON + 2),
        Response::CostReported { counted: false }
    );
    assert_eq!(
        cost(&mut fleet, 1, None, NOON + 3),
        Response::CostReported { counted: true }
    );
    assert_rejected(
        &cost(&mut fleet, 2, None, NOON + 4),
        ErrorCode::Forbidden,
        "attempt 2",
    );
    fleet.report(id, 1, JobReport::Exited { exit_code: 1 }, NOON + 5);
    // Attempt 1 ended: its token no longer counts.
    assert_rejected(
        &cost(&mut fleet, 1, None, NOON + 6),
        ErrorCode::Forbidden,
        "attempt 1",
    );
    assert_eq!(fleet.job(id).attempts[0].reported_micro_usd, 26_000);
    let used = usage(&fleet.state, "default", day_of(NOON), NOON + 10);
    assert_eq!(used.reported_micro_usd, 26_000);
}

#[test]
fn the_ledger_keeps_one_row_per_day_org_machine_and_kind_and_each_job_its_own_cost() {
    let mut fleet = priced();
    let ids: Vec<JobId> = (0..50)
        .map(|i| run(&mut fleet, M1, NOON + i * 10_000, 3_000))
        .collect();
    let mut session = spec();
    session.kind = JobKind::Session;
    session.image = Some("registry.lan/dev".into());
    session.max_attempts = 1;
    let s = fleet.submit(session, NOON + 600_000).id;
    fleet.dispatch(s, 1, M1, NOON + 600_001);
    fleet.report(s, 1, JobReport::Running, NOON + 600_002);
    fleet.report(s, 1, JobReport::Exited { exit_code: 0 }, NOON + 603_002);
    // Fifty jobs and a session on one machine on one day: two rows.
    let rows: Vec<(&CostKey, &CostTotals)> = fleet.state.costs.rows().collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].0.kind, JobKind::Job);
    // $1.20 an hour for 3 s is 1,000 micro-dollars, on each job's attempt.
    assert_eq!(rows[0].1.runtime_micro_usd, 50 * 1_000);
    for id in ids {
        assert_eq!(fleet.job(id).attempts[0].cost_micro_usd, Some(1_000));
    }
    assert_eq!(rows[1].0.kind, JobKind::Session);
    assert_eq!(rows[1].1.runner_ms, 3_000);
}

#[test]
fn reports_land_on_the_attempt_by_day_as_in_the_ledger() {
    let mut fleet = priced();
    let midnight = 20_001 * DAY_MS;
    let id = fleet.submit(spec(), midnight - 10).id;
    fleet.dispatch(id, 1, M2, midnight - 9);
    fleet.report(id, 1, JobReport::Running, midnight - 8);
    for (at_ms, micro_usd) in [(midnight - 5, 100), (midnight - 4, 20), (midnight + 1, 3)] {
        fleet.apply(Command::ReportCost {
            job: id,
            attempt: 1,
            micro_usd,
            report_id: None,
            at_ms,
        });
    }
    let attempt = &fleet.job(id).attempts[0];
    assert_eq!(attempt.reported_micro_usd, 123);
    let days: Vec<(u32, u64)> = attempt
        .reported_days
        .iter()
        .map(|d| (d.day, d.micro_usd))
        .collect();
    assert_eq!(days, [(20_000, 120), (20_001, 3)]);
    for day in [20_000, 20_001] {
        let from_job: u64 = crate::costs::job_days(fleet.job(id), midnight + 10)
            .iter()
            .filter(|(d, _)| *d == day)
            .map(|(_, t)| t.reported_micro_usd)
            .sum();
        assert_eq!(
            from_job,
            fleet.state.costs.org_day("default", day).reported_micro_usd
        );
    }
}

/// What `org` used on `day` up to `at_ms`, summed job by job from their attempts: what
/// the budget check read before it kept totals.
fn scanned(state: &FleetState, org: &str, day: u32, at_ms: u64) -> CostTotals {
    let mut used = CostTotals::default();
    for job in state.jobs.values().filter(|job| job.spec.org == org) {
        for (d, spent) in crate::costs::job_days(job, at_ms) {
            if d == day {
                used.add(&spent);
            }
        }
    }
    used
}

#[test]
fn admission_reads_totals_that_match_a_scan_of_every_job() {
    let mut fleet = priced();
    let midnight = 20_001 * DAY_MS;
    // Ended runs both sides of midnight, and runs still going: one from yesterday, two
    // from today, on machines with and without a rate, in two orgs.
    run(&mut fleet, M1, midnight - 50_000, 20_000);
    run(&mut fleet, M1, midnight - 5_000, 10_000);
    run(&mut fleet, M2, midnight + 1_000, 7_000);
    for (machine, start, org) in [
        (M1, midnight - 30_000, "default"),
        (M1, midnight + 2_000, "default"),
        (M2, midnight + 3_000, "default"),
        (M1, midnight + 4_000, "lab"),
    ] {
        let mut s = spec();
        s.org = org.into();
        let id = fleet.submit(s, start - 2).id;
        fleet.dispatch(id, 1, machine, start - 1);
        fleet.report(id, 1, JobReport::Running, start);
    }
    for at_ms in [midnight + 10_000, midnight + 60_000, midnight + 3_600_000] {
        for (org, day) in [("default", 20_000), ("default", 20_001), ("lab", 20_001)] {
            let used = usage(&fleet.state, org, day, at_ms);
            let scan = scanned(&fleet.state, org, day, at_ms);
            assert_eq!(used.runner_ms, scan.runner_ms, "{org} day {day} at {at_ms}");
            // Running spend is rounded up once per org, not once per attempt.
            let running = fleet.state.running.len() as u64;
            assert!(
                used.runtime_micro_usd <= scan.runtime_micro_usd
                    && used.runtime_micro_usd + running >= scan.runtime_micro_usd,
                "{org} day {day} at {at_ms}: {used:?} vs {scan:?}"
            );
        }
    }
}
