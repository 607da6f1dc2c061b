//! Spend and budgets: what ended attempts cost, what running work counts, reports, and
//! the budgets that refuse new work and stop running work.

use shoal_protocol::costs::{Budget, DAY_MS, OnExceed, day_of};

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
