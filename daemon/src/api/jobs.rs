//! `/v1/jobs`: submit (one or a batch), list (either order, paged), show and cancel jobs.
//! A submitted [`JobRequest`] becomes the stored [`JobSpec`] here, before anything else.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use shoal_protocol::api::{BatchRequest, BatchResponse, JobList, SubmitJobResponse};
use shoal_protocol::params::{JobListParams, JobOrder, ReadParams};
use shoal_protocol::{
    ApiError, Command, ErrorCode, JobId, JobKind, JobRecord, JobRequest, JobSpec, JobState,
    JobTarget, JobView, Labels, MachineId, Response,
};

use super::{ApiJson, ApiQuery, ApiResult, Failure, barrier_if, parsed, redact};
use crate::keys::{Caller, DEFAULT_ORG};
use crate::node::{Node, now_ms};

/// Most jobs in one batch.
pub const MAX_BATCH: usize = 1000;
/// Most jobs one list page returns.
pub const MAX_PAGE: usize = 1000;

fn job_of(response: Response) -> Result<JobRecord, Failure> {
    match response {
        Response::Job(job) => Ok(*job),
        other => Err(refusal(other)),
    }
}

/// The error for an answer that is not the one asked for: a rejection, or a bug.
fn refusal(response: Response) -> Failure {
    Failure(refusal_error(response))
}

fn refusal_error(response: Response) -> ApiError {
    match response {
        Response::Rejected { code, message } => ApiError::new(code, message),
        other => ApiError::new(
            ErrorCode::Internal,
            format!("the state machine answered {other:?}"),
        ),
    }
}

/// Submits `spec` for `caller`: the job, and whether this submit created it.
pub(super) async fn submit_one(
    node: &Node,
    caller: &Caller,
    spec: JobSpec,
) -> Result<(Box<JobRecord>, bool), Failure> {
    let outcome = node
        .write_as(
            caller,
            Command::SubmitJob {
                spec: Box::new(spec),
                at_ms: now_ms(),
            },
        )
        .await?;
    match outcome.response {
        Response::Submitted { job, created } => Ok((job, created)),
        other => Err(refusal(other)),
    }
}

/// The answer to a submit, as the caller may see it.
fn submitted(caller: &Caller, response: Response) -> Result<SubmitJobResponse, Failure> {
    match response {
        Response::Submitted { job, created } => Ok(SubmitJobResponse {
            job: redact::job(caller, *job),
            created,
        }),
        other => Err(refusal(other)),
    }
}

/// A batch's refusal, naming the job it was about.
fn at_index(i: usize, err: ApiError) -> Failure {
    Failure(ApiError::new(
        err.code,
        format!("jobs[{i}]: {}", err.message),
    ))
}

/// `POST /v1/jobs`: 201 with the new job, or 200 with the existing one for a known
/// idempotency key.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = JobRequest,
    responses(
        (status = CREATED, body = SubmitJobResponse, description = "The new job"),
        (status = OK, body = SubmitJobResponse, description = "The job already submitted with this idempotency key"),
        (status = CONFLICT, body = ApiError, description = "A fan-out (agent_id all_online) has no ONLINE machine to go to"),
        (status = TOO_MANY_REQUESTS, body = ApiError, description = "The org's daily budget (budget_exceeded) or runner-minute quota (quota_exceeded) is met; the message says until when"),
    ))]
pub async fn submit(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<JobRequest>,
) -> Result<(StatusCode, Json<SubmitJobResponse>), Failure> {
    let mut spec = JobSpec::from(request);
    seal_secrets(&node, &caller, &mut spec.secret_env)?;
    spec.validate()
        .map_err(|message| Failure(ApiError::bad_request(message)))?;
    not_a_session(&spec)?;
    in_callers_org(&caller, &mut spec)?;
    let (job, created) = submit_one(&node, &caller, spec).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let job = redact::job(&caller, *job);
    Ok((status, Json(SubmitJobResponse { job, created })))
}

/// `POST /v1/jobs/batch`: every spec is checked before any is submitted.
#[utoipa::path(post, path = "/v1/jobs/batch", tag = "jobs", request_body = BatchRequest,
    responses(
        (status = OK, body = BatchResponse, description = "Each job, in the order given, with whether it was created"),
        (status = CONFLICT, body = ApiError, description = "A fan-out (agent_id all_online) has no ONLINE machine to go to: no job was submitted"),
        (status = TOO_MANY_REQUESTS, body = ApiError, description = "The org's daily budget or runner-minute quota is met; the message names the jobs submitted before it was"),
    ))]
pub async fn submit_batch(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<BatchRequest>,
) -> ApiResult<BatchResponse> {
    if body.jobs.is_empty() || body.jobs.len() > MAX_BATCH {
        return Err(Failure(ApiError::bad_request(format!(
            "a batch holds 1 to {MAX_BATCH} jobs, got {}",
            body.jobs.len()
        ))));
    }
    let mut specs: Vec<JobSpec> = body.jobs.into_iter().map(JobSpec::from).collect();
    for (i, spec) in specs.iter_mut().enumerate() {
        let at = |message| Failure(ApiError::bad_request(format!("jobs[{i}]: {message}")));
        crate::secrets::env::seal_all(&node.cluster_secret, &caller.org, &mut spec.secret_env)
            .map_err(at)?;
        spec.validate().map_err(at)?;
        let checked = not_a_session(spec).and_then(|()| in_callers_org(&caller, spec));
        checked.map_err(|Failure(err)| at_index(i, err))?;
    }
    // A fan-out with no machine to go to is refused before anything is written, as
    // applying it would be, so that such a batch submits none of its jobs.
    let no_fan_out = node.fleet.read(|state| {
        specs
            .iter()
            .enumerate()
            .filter(|(_, spec)| spec.target() == Ok(JobTarget::AllOnline))
            .find_map(|(i, spec)| Some((i, shoal_raft::jobs::fan_out_refusal(state, spec)?)))
    });
    if let Some((i, refusal)) = no_fan_out {
        return Err(at_index(i, refusal_error(refusal)));
    }
    // One write for the whole batch: one request id, one log entry and one audit entry per
    // part (see `Node::write_each_as`).
    let at_ms = now_ms();
    let submits = specs
        .into_iter()
        .map(|spec| Command::SubmitJob {
            spec: Box::new(spec),
            at_ms,
        })
        .collect();
    let answers = node.write_each_as(&caller, submits).await?;
    if let Some(i) = answers
        .iter()
        .position(|a| matches!(a, Response::Rejected { .. }))
    {
        return Err(in_part(i, &answers));
    }
    let jobs = answers
        .into_iter()
        .map(|answer| submitted(&caller, answer))
        .collect::<Result<_, _>>()?;
    Ok(Json(BatchResponse { jobs }))
}

/// The error for a batch whose job `i` was refused at submit (its org's budget met as it
/// was applied, say), saying which of its jobs were submitted all the same: a batch split
/// into parts is applied part by part.
fn in_part(i: usize, answers: &[Response]) -> Failure {
    let Failure(err) = at_index(i, refusal_error(answers[i].clone()));
    let made = answers
        .iter()
        .filter(|a| matches!(a, Response::Submitted { .. }))
        .count();
    if made == 0 {
        return Failure(err);
    }
    Failure(ApiError::new(
        err.code,
        format!(
            "{}; {made} of the {} jobs were submitted all the same: {}",
            err.message,
            answers.len(),
            shoal_raft::audit::jobs_target(answers)
        ),
    ))
}

/// `GET /v1/jobs`, oldest first, filtered and paged.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobListParams),
    responses(
        (status = OK, body = JobList, description = "A page of the caller's org's jobs"),
        (status = FORBIDDEN, body = ApiError, description = "org names another org"),
    ))]
pub async fn list(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<JobListParams>,
) -> ApiResult<JobList> {
    if let Some(org) = params.org.as_ref().filter(|org| **org != caller.org) {
        return Err(Failure(ApiError::new(
            ErrorCode::Forbidden,
            format!("a key of org {} cannot list org {org}'s jobs", caller.org),
        )));
    }
    let state: Option<JobState> = params.state.as_deref().map(parsed).transpose()?;
    let machine: Option<MachineId> = params.machine.as_deref().map(parsed).transpose()?;
    let label = params
        .label
        .as_deref()
        .map(|pair| {
            Labels::parse_pair(pair).map_err(|err| Failure(ApiError::bad_request(err.to_string())))
        })
        .transpose()?;
    let limit = params.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Failure(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}"
        ))));
    }
    let range = match (params.order, params.after, params.before) {
        (JobOrder::Oldest, after, None) => {
            JobId(after.map_or(0, |id| id.saturating_add(1)))..JobId(u64::MAX)
        }
        (JobOrder::Newest, None, before) => JobId(0)..JobId(before.unwrap_or(u64::MAX)),
        (JobOrder::Oldest, _, Some(_)) => {
            return Err(Failure(ApiError::bad_request(
                "before pages newest-first lists: use it with order=newest (and after with the default order)",
            )));
        }
        (JobOrder::Newest, Some(_), _) => {
            return Err(Failure(ApiError::bad_request(
                "after pages oldest-first lists: use before with order=newest",
            )));
        }
    };
    if params.consistent {
        node.read_barrier().await?;
    }
    let jobs = node.fleet.read(|fleet| {
        let in_range = fleet.jobs.range(range).map(|(_, job)| job);
        let ordered: Box<dyn Iterator<Item = &JobRecord>> = match params.order {
            JobOrder::Oldest => Box::new(in_range),
            JobOrder::Newest => Box::new(in_range.rev()),
        };
        ordered
            .filter(|job| job.spec.kind == JobKind::Job)
            .filter(|job| state.is_none_or(|s| job.state == s))
            .filter(|job| job.spec.org == caller.org)
            .filter(|job| machine.is_none_or(|m| job.attempts.iter().any(|a| a.machine == m)))
            .filter(|job| {
                label
                    .as_ref()
                    .is_none_or(|(k, v)| job.spec.required_labels.get(k) == Some(v))
            })
            .take(limit)
            .map(|job| redact::job(&caller, job.clone()))
            .collect()
    });
    Ok(Json(JobList { jobs }))
}

pub(super) fn parse_job_id(text: &str) -> Result<JobId, Failure> {
    text.parse::<u64>().map(JobId).map_err(|_| {
        Failure(ApiError::bad_request(format!(
            "job id must be a number, got {text:?}"
        )))
    })
}

/// `GET /v1/jobs/{id}`.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = u64, Path, description = "The job"), ReadParams),
    responses(
        (status = OK, body = JobView, description = "The job"),
        (status = NOT_FOUND, body = ApiError, description = "No such job in the caller's org"),
    ))]
pub async fn show(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<ReadParams>,
) -> ApiResult<JobView> {
    let id = parse_job_id(&id)?;
    barrier_if(&node, &params).await?;
    let job = visible_job(&node, &caller, id)?;
    Ok(Json(redact::job(&caller, job)))
}

/// The job, if the caller's org may see it; another org's job is as good as absent.
pub(super) fn visible_job(node: &Node, caller: &Caller, id: JobId) -> Result<JobRecord, Failure> {
    node.fleet
        .read(|fleet| {
            fleet
                .jobs
                .get(&id)
                .filter(|job| job.spec.org == caller.org)
                .cloned()
        })
        .ok_or_else(|| Failure(ApiError::not_found(format!("no job with id {id}"))))
}

/// Sessions are made from templates, with `POST /v1/sessions`.
fn not_a_session(spec: &JobSpec) -> Result<(), Failure> {
    if spec.kind == JobKind::Session {
        return Err(Failure(ApiError::bad_request(
            "kind session: create sessions from a template with POST /v1/sessions",
        )));
    }
    Ok(())
}

/// Seals `secret_env`, given in clear, for the caller's org (the only org its jobs and
/// templates may be in): the log never holds the values.
pub(super) fn seal_secrets(
    node: &Node,
    caller: &Caller,
    secret_env: &mut BTreeMap<String, String>,
) -> Result<(), Failure> {
    crate::secrets::env::seal_all(&node.cluster_secret, &caller.org, secret_env)
        .map_err(|message| Failure(ApiError::bad_request(message)))
}

/// Puts a job in the caller's org: a spec without an org takes it, another org is refused.
pub(super) fn in_callers_org(caller: &Caller, spec: &mut JobSpec) -> Result<(), Failure> {
    if spec.org == DEFAULT_ORG {
        spec.org = caller.org.clone();
    }
    if spec.org != caller.org {
        return Err(Failure(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "a key of org {} cannot submit jobs for org {}",
                caller.org, spec.org
            ),
        )));
    }
    Ok(())
}

/// `POST /v1/jobs/{id}/cancel`.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = u64, Path, description = "The job")),
    responses(
        (status = OK, body = JobView, description = "The job, cancelled or with its cancel requested"),
        (status = NOT_FOUND, body = ApiError, description = "No such job in the caller's org"),
        (status = CONFLICT, body = ApiError, description = "The job has already finished"),
    ))]
pub async fn cancel(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<JobView> {
    let id = parse_job_id(&id)?;
    visible_job(&node, &caller, id)?;
    let job = cancel_job(&node, &caller, id).await?;
    Ok(Json(redact::job(&caller, job)))
}

/// Cancels job (or session) `id` for `caller`, who may see it, answering with the job.
pub(super) async fn cancel_job(
    node: &Node,
    caller: &Caller,
    id: JobId,
) -> Result<JobRecord, Failure> {
    let outcome = node
        .write_as(
            caller,
            Command::CancelJob {
                job: id,
                at_ms: now_ms(),
            },
        )
        .await?;
    job_of(outcome.response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submitted(id: u64) -> Response {
        let job = JobRecord::queued(JobId(id), JobSpec::new(["true"]), JobTarget::Any, 1, id);
        Response::Submitted {
            job: Box::new(job),
            created: true,
        }
    }

    #[test]
    fn a_batch_refused_in_part_says_which_jobs_went_in() {
        let over = Response::Rejected {
            code: ErrorCode::BudgetExceeded,
            message: "org default has spent $1.000000 today".into(),
        };
        let Failure(err) = in_part(2, &[submitted(7), submitted(8), over.clone(), over.clone()]);
        assert_eq!(err.code, ErrorCode::BudgetExceeded);
        assert_eq!(
            err.message,
            "jobs[2]: org default has spent $1.000000 today; 2 of the 4 jobs were submitted all the same: jobs 7-8"
        );
        let Failure(err) = in_part(0, &[over.clone(), over]);
        assert_eq!(
            err.message,
            "jobs[0]: org default has spent $1.000000 today"
        );
    }
}
