//! `/v1/costs`: running work reports what it spent (with its job token), and anyone with
//! a key reads spend grouped by day, machine or org (from the ledger) or by job or session
//! (from the attempts of the jobs still kept). `/v1/budgets`: each org's daily limits and
//! what it used today.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use shoal_protocol::costs::{
    BudgetList, BudgetView, CostGroup, CostRecorded, CostReport, CostRow, CostSheet, CostTotals,
    Day, SetBudgetRequest, day_name, day_of, day_start_ms, micros,
};
use shoal_protocol::job_spec::check_org;
use shoal_protocol::keys::Scope;
use shoal_protocol::params::CostParams;
use shoal_protocol::{ApiError, Command, ErrorCode, FleetState, JobId, JobKind, Response};
use shoal_raft::costs::{job_days, running_rows, usage};

use super::auth::presented_key;
use super::{ApiJson, ApiQuery, ApiResult, Failure, accepted};
use crate::keys::Caller;
use crate::node::{Node, now_ms};
use crate::p2p::Credential;
use crate::secrets::job_token;

/// Longest note or report id, in bytes.
const MAX_TEXT: usize = 200;

fn check_text(field: &str, text: &str) -> Result<(), Failure> {
    if text.is_empty() || text.len() > MAX_TEXT || text.chars().any(char::is_control) {
        return Err(Failure(ApiError::bad_request(format!(
            "{field} must be 1 to {MAX_TEXT} printable bytes"
        ))));
    }
    Ok(())
}

/// `POST /v1/costs`: what a running attempt spent, sent with its `SHOAL_JOB_TOKEN`.
#[utoipa::path(post, path = "/v1/costs", tag = "costs", request_body = CostReport,
    security(("job_token" = [])),
    responses(
        (status = OK, body = CostRecorded, description = "Counted (or, for an id counted before, not again)"),
        (status = UNAUTHORIZED, body = ApiError, description = "No job token, or one this fleet did not issue"),
        (status = FORBIDDEN, body = ApiError, description = "The token's attempt is not running"),
        (status = NOT_FOUND, body = ApiError, description = "The token's job is gone"),
    ))]
pub async fn report(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: Result<ApiJson<CostReport>, Failure>,
) -> ApiResult<CostRecorded> {
    let token = presented_key(&headers).ok_or_else(|| {
        Failure(ApiError::new(
            ErrorCode::Unauthorized,
            "send the job's SHOAL_JOB_TOKEN as Authorization: Bearer",
        ))
    })?;
    let (job, attempt) = job_token::check(&node.cluster_secret, token)?;
    let ApiJson(report) = body?;
    let micro_usd = micros("usd", report.usd).map_err(|m| Failure(ApiError::bad_request(m)))?;
    if let Some(note) = &report.note {
        check_text("note", note)?;
    }
    check_text("id", &report.id)?;
    check_sender(&node, job, attempt, micro_usd)?;
    let cost = Command::ReportCost {
        job,
        attempt,
        micro_usd,
        report_id: Some(report.id.clone()),
        at_ms: now_ms(),
    };
    let outcome = node
        .write_with(cost, Credential::JobToken(token.to_string()))
        .await?;
    match accepted(outcome.response)? {
        Response::CostReported { counted } => {
            tracing::info!(%job, attempt, usd = report.usd, note = report.note.as_deref().unwrap_or(""), counted, "cost reported");
            Ok(Json(CostRecorded {
                job,
                attempt,
                usd: report.usd,
                counted,
            }))
        }
        other => Err(Failure(ApiError::new(
            ErrorCode::Internal,
            format!("the state machine answered {other:?}"),
        ))),
    }
}

/// A job token works only on the machine that runs its attempt (where `SHOAL_API` points
/// it), so a token copied off that machine is worth nothing; and neither one report nor
/// all of an attempt's together may exceed its org's daily budget. (Reports of one attempt
/// all come through this machine, so its replica sees the ones before.)
fn check_sender(node: &Node, job: JobId, attempt: u32, micro_usd: u64) -> Result<(), Failure> {
    let (machine, reported, budget) = node.fleet.read(|state| {
        let record = state.jobs.get(&job);
        let held = record.and_then(|j| j.attempts.iter().find(|a| a.number == attempt));
        let org = record.map(|j| j.spec.org.as_str()).unwrap_or_default();
        let budget = state.budgets.get(org).and_then(|b| b.daily_micro_usd);
        (
            held.map(|a| a.machine),
            held.map_or(0, |a| a.reported_micro_usd),
            budget,
        )
    });
    if machine != Some(node.id) {
        return Err(Failure(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "the job token of job {job} attempt {attempt} works only on the machine that runs it, through its SHOAL_API"
            ),
        )));
    }
    let Some(limit) = budget else {
        return Ok(());
    };
    let dollars = |micro: u64| micro as f64 / 1e6;
    if micro_usd > limit {
        return Err(Failure(ApiError::bad_request(format!(
            "usd: one report may not exceed the org's daily budget (${})",
            dollars(limit)
        ))));
    }
    if reported.saturating_add(micro_usd) > limit {
        return Err(Failure(ApiError::bad_request(format!(
            "usd: attempt {attempt} of job {job} reported ${} already; all its reports together may not exceed the org's daily budget (${})",
            dollars(reported),
            dollars(limit)
        ))));
    }
    Ok(())
}

/// The org a read is about: a key's own; an admin's any (or all, as `None`).
fn org_for(caller: &Caller, asked: Option<String>) -> Result<Option<String>, Failure> {
    let admin = caller.scope >= Scope::Admin;
    match asked {
        Some(org) if org != caller.org && !admin => Err(Failure(ApiError::new(
            ErrorCode::Forbidden,
            format!("a key of org {} cannot read org {org}'s costs", caller.org),
        ))),
        Some(org) => Ok(Some(org)),
        None if admin => Ok(None),
        None => Ok(Some(caller.org.clone())),
    }
}

/// `GET /v1/costs`: what ended and running work cost and what it reported, over UTC days.
#[utoipa::path(get, path = "/v1/costs", tag = "costs", params(CostParams),
    responses((status = OK, body = CostSheet, description = "Spend grouped, with its total")))]
pub async fn list(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<CostParams>,
) -> ApiResult<CostSheet> {
    let org = org_for(&caller, params.org)?;
    let now = now_ms();
    let until = params.until_ms.unwrap_or(now);
    let since = params.since_ms.unwrap_or(day_start_ms(day_of(now)));
    if since > until {
        return Err(Failure(ApiError::bad_request(
            "since_ms must not be after until_ms",
        )));
    }
    let days = day_of(since)..=day_of(until);
    let by = params.by.unwrap_or_default();
    let rows = node.fleet.read(|state| match by {
        CostGroup::Job | CostGroup::Session => by_job(state, by, org.as_deref(), &days, now),
        _ => by_ledger(state, by, org.as_deref(), &days, now),
    });
    let mut total = CostTotals::default();
    let rows = rows
        .into_iter()
        .map(|(key, kind, totals)| {
            total.add(&totals);
            CostRow {
                kind,
                ..CostRow::new(key, &totals)
            }
        })
        .collect();
    Ok(Json(CostSheet {
        by,
        since_day: day_name(*days.start()),
        until_day: day_name(*days.end()),
        rows,
        total: CostRow::new("total".to_string(), &total),
    }))
}

/// A cost sheet's rows before they are shown: key, kind (sessions' rows), and what they
/// add up to.
type Rows = Vec<(String, Option<JobKind>, CostTotals)>;

/// Rows by day, machine or org, from the ledger and the running attempts.
fn by_ledger(
    state: &FleetState,
    by: CostGroup,
    org: Option<&str>,
    days: &RangeInclusive<Day>,
    now: u64,
) -> Rows {
    let names = machine_names(state);
    let running = running_rows(state, now);
    let rows = state
        .costs
        .rows_of(days.clone())
        .chain(running.iter().map(|(_, key, totals)| (key, totals)));
    let mut groups: BTreeMap<String, CostTotals> = BTreeMap::new();
    for (key, totals) in rows {
        if !days.contains(&key.day) || org.is_some_and(|org| org != key.org) {
            continue;
        }
        let group = match by {
            CostGroup::Machine => names
                .get(&key.machine)
                .cloned()
                .unwrap_or_else(|| key.machine.to_string()),
            CostGroup::Org => key.org.clone(),
            _ => day_name(key.day),
        };
        groups.entry(group).or_default().add(totals);
    }
    groups
        .into_iter()
        .map(|(key, totals)| (key, None, totals))
        .collect()
}

/// Rows by job (jobs and sessions) or by session, in id order, from the attempts of the
/// jobs still kept.
fn by_job(
    state: &FleetState,
    by: CostGroup,
    org: Option<&str>,
    days: &RangeInclusive<Day>,
    now: u64,
) -> Rows {
    let mut rows = Vec::new();
    for job in state.jobs.values() {
        if org.is_some_and(|org| org != job.spec.org)
            || (by == CostGroup::Session && job.spec.kind != JobKind::Session)
        {
            continue;
        }
        let mut totals = CostTotals::default();
        let mut counted = false;
        for (day, spent) in job_days(job, now) {
            if days.contains(&day) {
                totals.add(&spent);
                counted = true;
            }
        }
        if counted {
            let kind = Some(job.spec.kind).filter(|kind| *kind == JobKind::Session);
            rows.push((job.id.to_string(), kind, totals));
        }
    }
    rows
}

fn machine_names(state: &FleetState) -> BTreeMap<shoal_protocol::MachineId, String> {
    state
        .machines
        .iter()
        .map(|(id, record)| (*id, record.info.name.clone()))
        .collect()
}

/// The org's budget as the API shows it, with what the org used today up to `now`.
pub fn budget_view(state: &FleetState, org: &str, now: u64) -> Option<BudgetView> {
    let budget = state.budgets.get(org)?;
    let day = day_of(now);
    let used = usage(state, org, day, now);
    Some(BudgetView::new(org, budget, &used, day_start_ms(day + 1)))
}

fn budgets_for(state: &FleetState, org: Option<&str>, now: u64) -> BudgetList {
    let budgets = state
        .budgets
        .keys()
        .filter(|o| org.is_none_or(|org| org == o.as_str()))
        .filter_map(|o| budget_view(state, o, now))
        .collect();
    BudgetList { budgets }
}

/// `GET /v1/budgets`: the caller's org's budget (an admin: every org's), with today's use.
#[utoipa::path(get, path = "/v1/budgets", tag = "costs",
    responses((status = OK, body = BudgetList, description = "Budgets and what each org used today")))]
pub async fn budgets(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<BudgetList> {
    let org = org_for(&caller, None)?;
    let now = now_ms();
    Ok(Json(
        node.fleet
            .read(|state| budgets_for(state, org.as_deref(), now)),
    ))
}

/// `PUT /v1/budgets/{org}`: sets the org's daily limits.
#[utoipa::path(put, path = "/v1/budgets/{org}", tag = "costs",
    params(("org" = String, Path, description = "The org")),
    request_body = SetBudgetRequest,
    responses((status = OK, body = BudgetView, description = "The budget, with what the org used today")))]
pub async fn set_budget(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(org): Path<String>,
    ApiJson(request): ApiJson<SetBudgetRequest>,
) -> ApiResult<BudgetView> {
    check_org(&org).map_err(|m| Failure(ApiError::bad_request(m)))?;
    let budget = request
        .budget()
        .map_err(|m| Failure(ApiError::bad_request(m)))?;
    let outcome = node
        .write_as(
            &caller,
            Command::SetBudget {
                org: org.clone(),
                budget: Some(budget),
            },
        )
        .await?;
    accepted(outcome.response)?;
    let now = now_ms();
    node.fleet
        .read(|state| budget_view(state, &org, now))
        .map(Json)
        .ok_or_else(|| Failure(ApiError::new(ErrorCode::Internal, "the budget is not kept")))
}

/// `DELETE /v1/budgets/{org}`: the org has no limits any more.
#[utoipa::path(delete, path = "/v1/budgets/{org}", tag = "costs",
    params(("org" = String, Path, description = "The org")),
    responses(
        (status = OK, body = BudgetList, description = "The budgets left"),
        (status = NOT_FOUND, body = ApiError, description = "The org has no budget"),
    ))]
pub async fn remove_budget(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(org): Path<String>,
) -> ApiResult<BudgetList> {
    let outcome = node
        .write_as(&caller, Command::SetBudget { org, budget: None })
        .await?;
    accepted(outcome.response)?;
    let now = now_ms();
    Ok(Json(node.fleet.read(|state| budgets_for(state, None, now))))
}
