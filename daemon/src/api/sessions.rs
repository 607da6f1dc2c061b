//! `/v1/sessions`: long-lived containers made from a template, placed like jobs, driven
//! with commands (`exec`), watched (`logs`) and terminated, from any node.

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use shoal_protocol::keys::Scope;
use shoal_protocol::params::{LogParams, SessionParams};
use shoal_protocol::sessions::{
    AttachParams, CreateSessionRequest, ExecRequest, ExecResult, SessionList, SessionState,
    SessionView,
};
use shoal_protocol::templates::check_template_name;
use shoal_protocol::{ApiError, ErrorCode, JobId, JobKind, JobRecord, MachineId};

use super::jobs::{cancel_job, in_callers_org, parse_job_id, submit_one, visible_job};
use super::{ApiJson, ApiQuery, ApiResult, Failure, parsed, templates};
use crate::keys::Caller;
use crate::node::Node;

/// The session `id` if the caller's org has it.
fn visible_session(node: &Node, caller: &Caller, id: JobId) -> Result<JobRecord, Failure> {
    let job = visible_job(node, caller, id)
        .map_err(|_| Failure(ApiError::not_found(format!("no session with id {id}"))))?;
    if job.spec.kind != JobKind::Session {
        return Err(Failure(ApiError::not_found(format!(
            "job {id} is a job, not a session"
        ))));
    }
    Ok(job)
}

/// `POST /v1/sessions`: 201 with the new session (200 with the existing one for a known
/// idempotency key), placed like a job on the least-loaded capable machine.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = CreateSessionRequest,
    responses(
        (status = CREATED, body = SessionView, description = "The new session"),
        (status = OK, body = SessionView, description = "The session made before with this idempotency key"),
        (status = NOT_FOUND, body = ApiError, description = "No such template"),
        (status = TOO_MANY_REQUESTS, body = ApiError, description = "The org's daily budget or runner-minute quota is met"),
    ))]
pub async fn create(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<CreateSessionRequest>,
) -> Result<(StatusCode, Json<SessionView>), Failure> {
    check_template_name(&request.template_id).map_err(|m| Failure(ApiError::bad_request(m)))?;
    let template = templates::find(&node, &caller, &request.template_id).await?;
    let current = template.current().ok_or_else(|| {
        Failure(ApiError::not_found(format!(
            "template {} has no current version",
            template.name
        )))
    })?;
    let mut spec = current.spec.session_job(&template.name, current.version);
    spec.required_labels.extend(request.required_labels);
    if request.agent_id.as_deref() == Some(shoal_protocol::job::ALL_ONLINE) {
        return Err(Failure(ApiError::bad_request(
            "agent_id: a session runs on one machine; give a machine id or leave it out",
        )));
    }
    spec.agent_id = request.agent_id;
    spec.idempotency_key = request.idempotency_key;
    spec.validate()
        .map_err(|m| Failure(ApiError::bad_request(m)))?;
    in_callers_org(&caller, &mut spec)?;
    let (job, created) = submit_one(&node, &caller, spec).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(SessionView::of(&job))))
}

/// `GET /v1/sessions`: the caller's org's sessions, newest first.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", params(SessionParams),
    responses(
        (status = OK, body = SessionList, description = "The sessions that match"),
        (status = FORBIDDEN, body = ApiError, description = "org names another org and the key is not an admin"),
    ))]
pub async fn list(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<SessionParams>,
) -> ApiResult<SessionList> {
    let state: Option<SessionState> = params.state.as_deref().map(parsed).transpose()?;
    let machine: Option<MachineId> = params.machine.as_deref().map(parsed).transpose()?;
    let org = match params.org {
        Some(org) if org != caller.org && caller.scope < Scope::Admin => {
            return Err(Failure(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "a key of org {} cannot list org {org}'s sessions",
                    caller.org
                ),
            )));
        }
        Some(org) => org,
        None => caller.org.clone(),
    };
    let sessions = node.fleet.read(|fleet| {
        fleet
            .jobs
            .values()
            .rev()
            .filter(|job| job.spec.kind == JobKind::Session && job.spec.org == org)
            .map(SessionView::of)
            .filter(|s| state.is_none_or(|want| s.state == want))
            .filter(|s| machine.is_none_or(|want| s.machine == Some(want)))
            .collect()
    });
    Ok(Json(SessionList { sessions }))
}

/// `GET /v1/sessions/{id}`.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = u64, Path, description = "The session")),
    responses(
        (status = OK, body = SessionView, description = "The session"),
        (status = NOT_FOUND, body = ApiError, description = "No such session in the caller's org"),
    ))]
pub async fn show(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<SessionView> {
    let job = visible_session(&node, &caller, parse_job_id(&id)?)?;
    Ok(Json(SessionView::of(&job)))
}

/// `POST /v1/sessions/{id}/terminate`: its container is stopped; it ends `terminated`.
#[utoipa::path(post, path = "/v1/sessions/{id}/terminate", tag = "sessions",
    params(("id" = u64, Path, description = "The session")),
    responses(
        (status = OK, body = SessionView, description = "The session, terminated or being stopped"),
        (status = NOT_FOUND, body = ApiError, description = "No such session in the caller's org"),
        (status = CONFLICT, body = ApiError, description = "The session has already ended"),
    ))]
pub async fn terminate(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<SessionView> {
    let id = parse_job_id(&id)?;
    visible_session(&node, &caller, id)?;
    let job = cancel_job(&node, &caller, id).await?;
    Ok(Json(SessionView::of(&job)))
}

/// `POST /v1/sessions/{id}/exec`: runs a command in the session's container and answers
/// with its output and exit code.
#[utoipa::path(post, path = "/v1/sessions/{id}/exec", tag = "sessions",
    params(("id" = u64, Path, description = "The session")),
    request_body = ExecRequest,
    responses(
        (status = OK, body = ExecResult, description = "The command's output and exit code"),
        (status = NOT_FOUND, body = ApiError, description = "No such session in the caller's org"),
        (status = CONFLICT, body = ApiError, description = "The session is not running"),
    ))]
pub async fn exec(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ExecRequest>,
) -> ApiResult<ExecResult> {
    let id = parse_job_id(&id)?;
    visible_session(&node, &caller, id)?;
    request
        .validate()
        .map_err(|m| Failure(ApiError::bad_request(m)))?;
    Ok(Json(
        crate::sessions::exec(&node, &caller, id, &request).await?,
    ))
}

/// `GET /v1/sessions/{id}/attach`: an interactive shell in the session over a WebSocket
/// (see [`crate::attach`]), from any node.
#[utoipa::path(get, path = "/v1/sessions/{id}/attach", tag = "sessions",
    params(("id" = u64, Path, description = "The session"), AttachParams),
    responses(
        (status = 101, description = "Switching to a WebSocket: binary messages are the terminal's bytes; text messages are AttachMessage"),
        (status = NOT_FOUND, body = ApiError, description = "No such session in the caller's org"),
        (status = CONFLICT, body = ApiError, description = "The session is not running"),
    ))]
pub async fn attach(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiQuery(size): ApiQuery<AttachParams>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Failure> {
    let id = parse_job_id(&id)?;
    visible_session(&node, &caller, id)?;
    let (cols, rows) = size.size().map_err(|m| Failure(ApiError::bad_request(m)))?;
    let (attempt, machine) = crate::sessions::running(&node, id).await?;
    let upgrade = upgrade.map_err(|_| {
        Failure(ApiError::bad_request(
            "attach is a WebSocket: connect with a WebSocket client (wss://)",
        ))
    })?;
    if machine == node.id {
        return Ok(upgrade.on_upgrade(move |socket| async move {
            crate::attach::local(node, caller, socket, id.0, attempt, (cols, rows)).await;
        }));
    }
    if headers.contains_key(crate::attach::RELAYED_HEADER) {
        return Err(Failure(ApiError::new(
            ErrorCode::Conflict,
            format!("session {id} runs on {machine}, not on this node"),
        )));
    }
    let api_addr = node
        .fleet
        .read(|state| {
            state
                .machines
                .get(&machine)
                .map(|m| m.info.addr.api_addr.clone())
        })
        .ok_or_else(|| {
            Failure(ApiError::new(
                ErrorCode::Unavailable,
                format!("no address known for machine {machine}, which runs session {id}"),
            ))
        })?;
    let key = super::auth::presented_key(&headers).unwrap_or_default();
    // The caller's key goes on: over TLS that proves the fleet CA, never in clear.
    let tls = node.tls.relay_client().ok_or_else(|| {
        Failure(ApiError::new(
            ErrorCode::Unavailable,
            format!("session {id} runs on {machine}, and this node has no fleet CA yet to reach it over TLS"),
        ))
    })?;
    let url = crate::attach::relay_url(&api_addr, id, cols, rows);
    // Connected before the upgrade, so an unreachable machine is a plain error.
    let upstream = crate::attach::connect(&url, key, tls)
        .await
        .map_err(|err| {
            Failure(ApiError::new(
                ErrorCode::Unavailable,
                format!("cannot reach machine {machine}, which runs session {id}: {err}"),
            ))
        })?;
    Ok(upgrade.on_upgrade(move |socket| crate::attach::relay(socket, upstream)))
}

/// `GET /v1/sessions/{id}/logs`: the container's output; `follow=true` over a WebSocket.
#[utoipa::path(get, path = "/v1/sessions/{id}/logs", tag = "sessions",
    params(("id" = u64, Path, description = "The session"), LogParams),
    responses(
        (status = OK, body = shoal_protocol::api::JobLogs, description = "The output so far (with follow=true, a WebSocket of LogChunk messages)"),
        (status = NOT_FOUND, body = ApiError, description = "No such session in the caller's org"),
        (status = CONFLICT, body = ApiError, description = "The session has not started anywhere yet"),
    ))]
pub async fn logs(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    query: ApiQuery<LogParams>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Failure> {
    visible_session(&node, &caller, parse_job_id(&id)?)?;
    super::logs::logs(State(node), Extension(caller), Path(id), query, upgrade).await
}
