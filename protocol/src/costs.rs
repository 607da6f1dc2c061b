//! Budgets and spend. Money is kept in whole micro-dollars (`u64`), so sums are exact and
//! every replica agrees; the API shows dollars. Days are UTC days, numbered from the epoch.

use serde::{Deserialize, Serialize};

use crate::{JobId, JobKind, MachineId, UnixMillis};

pub const MICROS_PER_USD: u64 = 1_000_000;
pub const DAY_MS: u64 = 86_400_000;
const HOUR_MS: u128 = 3_600_000;

/// The machine label that says what an hour of the machine costs, in dollars.
pub const COST_LABEL: &str = "cost_per_hour";
/// The most a budget, a rate or one report may say: a million dollars.
pub const MAX_USD: f64 = 1_000_000.0;

/// A UTC day: days since 1970-01-01.
pub type Day = u32;

pub fn day_of(at_ms: UnixMillis) -> Day {
    (at_ms / DAY_MS) as Day
}

pub fn day_start_ms(day: Day) -> UnixMillis {
    u64::from(day) * DAY_MS
}

/// Dollars to micro-dollars, if the amount is a number from 0 to [`MAX_USD`].
pub fn micros(field: &str, usd: f64) -> Result<u64, String> {
    if !usd.is_finite() || !(0.0..=MAX_USD).contains(&usd) {
        return Err(format!(
            "{field} must be from 0 to {MAX_USD} dollars, got {usd}"
        ));
    }
    Ok((usd * MICROS_PER_USD as f64).round() as u64)
}

pub fn usd(micros: u64) -> f64 {
    micros as f64 / MICROS_PER_USD as f64
}

/// What `ms` of run time costs at `rate` micro-dollars an hour, rounded up to a micro-dollar.
pub fn runtime_cost(ms: u64, rate_micros_per_hour: u64) -> u64 {
    let cost = (u128::from(ms) * u128::from(rate_micros_per_hour)).div_ceil(HOUR_MS);
    u64::try_from(cost).unwrap_or(u64::MAX)
}

/// `[from, to)` cut at UTC midnights: each day with the milliseconds that fall in it.
pub fn split_by_day(from: UnixMillis, to: UnixMillis) -> Vec<(Day, u64)> {
    let mut parts = Vec::new();
    let mut at = from;
    while at < to {
        let day = day_of(at);
        let end = to.min(day_start_ms(day + 1));
        parts.push((day, end - at));
        at = end;
    }
    parts
}

/// What happens to running work when an org crosses its limit mid-run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnExceed {
    /// Running work finishes; new work is refused.
    #[default]
    Finish,
    /// Running work is stopped (it ends cancelled); new work is refused.
    Stop,
}

/// An org's daily limits, as the log keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub daily_micro_usd: Option<u64>,
    pub daily_runner_ms: Option<u64>,
    pub on_exceed: OnExceed,
}

/// `PUT /v1/budgets/{org}`: an org's daily limits (UTC days). Leave one out for no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBudgetRequest {
    /// Most dollars the org's work may cost in a day.
    #[serde(default)]
    pub daily_usd: Option<f64>,
    /// Most minutes the org's work may run in a day, on all machines together.
    #[serde(default)]
    pub daily_runner_minutes: Option<f64>,
    /// What happens to running work when a limit is crossed: `finish` (the default) or `stop`.
    #[serde(default)]
    pub on_exceed: OnExceed,
}

impl SetBudgetRequest {
    pub fn budget(&self) -> Result<Budget, String> {
        if self.daily_usd.is_none() && self.daily_runner_minutes.is_none() {
            return Err("give daily_usd, daily_runner_minutes or both".to_string());
        }
        const MAX_MINUTES: f64 = 1e9;
        let runner_ms = |minutes: f64| {
            if minutes.is_finite() && (0.0..=MAX_MINUTES).contains(&minutes) {
                Ok((minutes * 60_000.0).round() as u64)
            } else {
                Err(format!(
                    "daily_runner_minutes must be from 0 to {MAX_MINUTES}, got {minutes}"
                ))
            }
        };
        Ok(Budget {
            daily_micro_usd: self.daily_usd.map(|d| micros("daily_usd", d)).transpose()?,
            daily_runner_ms: self.daily_runner_minutes.map(runner_ms).transpose()?,
            on_exceed: self.on_exceed,
        })
    }
}

/// Spend and run time, in the API's units.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    pub usd: f64,
    pub runner_minutes: f64,
}

/// One org's budget and what it used today.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BudgetView {
    pub org: String,
    pub daily_usd: Option<f64>,
    pub daily_runner_minutes: Option<f64>,
    pub on_exceed: OnExceed,
    /// Today (UTC) so far, running work included.
    pub today: Usage,
    /// When today's spend and minutes start again from zero: the next UTC midnight.
    pub resets_at_ms: UnixMillis,
}

/// `GET /v1/budgets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BudgetList {
    pub budgets: Vec<BudgetView>,
}

/// Where a cost lands in the ledger: one day, org, machine and kind of work. What each
/// job cost is on its attempts ([`crate::Attempt`]), for as long as the job is kept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CostKey {
    pub day: Day,
    pub org: String,
    pub machine: MachineId,
    /// Batch jobs and sessions are kept apart.
    pub kind: JobKind,
}

impl CostKey {
    /// The first key of `day`, before every org, machine and kind.
    pub fn first_of(day: Day) -> Self {
        CostKey {
            day,
            org: String::new(),
            machine: MachineId(0),
            kind: JobKind::Job,
        }
    }
}

/// What one attempt reported spending on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DaySpend {
    pub day: Day,
    pub micro_usd: u64,
}

/// What one ledger row adds up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostTotals {
    /// Run time times the machine's rate.
    pub runtime_micro_usd: u64,
    /// What the work itself reported (`POST /v1/costs`).
    pub reported_micro_usd: u64,
    pub runner_ms: u64,
}

impl CostTotals {
    pub fn add(&mut self, other: &CostTotals) {
        self.runtime_micro_usd = self
            .runtime_micro_usd
            .saturating_add(other.runtime_micro_usd);
        self.reported_micro_usd = self
            .reported_micro_usd
            .saturating_add(other.reported_micro_usd);
        self.runner_ms = self.runner_ms.saturating_add(other.runner_ms);
    }

    pub fn micro_usd(&self) -> u64 {
        self.runtime_micro_usd
            .saturating_add(self.reported_micro_usd)
    }
}

/// `POST /v1/costs`, sent by a running job with its `SHOAL_JOB_TOKEN`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CostReport {
    /// Dollars, from 0 to a million.
    pub usd: f64,
    /// What it was for.
    #[serde(default)]
    pub note: Option<String>,
    /// Makes retries safe: a report with an id already counted for this attempt is not
    /// counted again. Required.
    pub id: String,
}

/// The answer to a [`CostReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostRecorded {
    pub job: JobId,
    pub attempt: u32,
    pub usd: f64,
    /// False when a report with the same id was already counted.
    pub counted: bool,
}

/// How `GET /v1/costs` groups its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CostGroup {
    #[default]
    Day,
    Machine,
    /// Every job and session still kept, by id (a session is a job record too); a
    /// session's row says so.
    Job,
    /// Sessions only, by id.
    Session,
    Org,
}

/// One group of a cost report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostRow {
    /// The day (`2026-11-22`), machine name, job or session id, or org.
    pub key: String,
    /// `session` on a row of a session (by job or by session); absent on every other row,
    /// a batch job's included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<JobKind>,
    pub usd: f64,
    pub runtime_usd: f64,
    pub reported_usd: f64,
    pub runner_minutes: f64,
}

/// `GET /v1/costs`: finished and reported costs, grouped, with their total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostSheet {
    pub by: CostGroup,
    /// The first and last day counted.
    pub since_day: String,
    pub until_day: String,
    pub rows: Vec<CostRow>,
    pub total: CostRow,
}

impl Usage {
    pub fn new(totals: &CostTotals) -> Self {
        Usage {
            usd: usd(totals.micro_usd()),
            runner_minutes: totals.runner_ms as f64 / 60_000.0,
        }
    }
}

impl BudgetView {
    pub fn new(org: &str, budget: &Budget, today: &CostTotals, resets_at_ms: UnixMillis) -> Self {
        BudgetView {
            org: org.to_string(),
            daily_usd: budget.daily_micro_usd.map(usd),
            daily_runner_minutes: budget.daily_runner_ms.map(|ms| ms as f64 / 60_000.0),
            on_exceed: budget.on_exceed,
            today: Usage::new(today),
            resets_at_ms,
        }
    }
}

impl CostRow {
    pub fn new(key: String, totals: &CostTotals) -> Self {
        CostRow {
            key,
            kind: None,
            usd: usd(totals.micro_usd()),
            runtime_usd: usd(totals.runtime_micro_usd),
            reported_usd: usd(totals.reported_micro_usd),
            runner_minutes: totals.runner_ms as f64 / 60_000.0,
        }
    }
}

/// `2026-11-22` for a day number.
pub fn day_name(day: Day) -> String {
    // Days to civil date (Howard Hinnant's algorithm).
    let z = i64::from(day) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_at_midnight_and_cost_rounds_up() {
        let midnight = day_start_ms(20_000);
        assert_eq!(
            split_by_day(midnight - 1_000, midnight + 2_500),
            [(19_999, 1_000), (20_000, 2_500)]
        );
        assert!(split_by_day(5, 5).is_empty());
        // $0.12 an hour for 10 s: 333.3 micro-dollars, rounded up.
        assert_eq!(runtime_cost(10_000, 120_000), 334);
        assert_eq!(runtime_cost(3_600_000, 120_000), 120_000);
        assert_eq!(runtime_cost(0, 120_000), 0);
    }

    #[test]
    fn amounts_are_checked_and_exact() {
        assert_eq!(micros("usd", 0.013), Ok(13_000));
        assert_eq!(micros("usd", 25.0), Ok(25_000_000));
        for bad in [-1.0, f64::NAN, f64::INFINITY, 2e6] {
            assert!(micros("usd", bad).unwrap_err().contains("usd"), "{bad}");
        }
        assert_eq!(day_name(0), "1970-01-01");
        assert_eq!(day_name(day_of(1_795_356_165_850)), "2026-11-22");
    }

    #[test]
    fn a_budget_needs_a_limit() {
        let none = SetBudgetRequest::default();
        assert!(none.budget().unwrap_err().contains("daily_usd"));
        let both = SetBudgetRequest {
            daily_usd: Some(0.05),
            daily_runner_minutes: Some(10.0),
            on_exceed: OnExceed::Stop,
        };
        assert_eq!(
            both.budget(),
            Ok(Budget {
                daily_micro_usd: Some(50_000),
                daily_runner_ms: Some(600_000),
                on_exceed: OnExceed::Stop,
            })
        );
    }
}
