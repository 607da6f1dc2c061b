//! `/v1/templates`: session templates; each put is a new version, and a rollback points
//! new sessions at an earlier one. A template belongs to the org of the key that made it:
//! another org's template is as good as absent.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use shoal_protocol::levels::TEMPLATE_ORGS_LEVEL;
use shoal_protocol::templates::{
    RollbackRequest, Template, TemplateList, TemplateRequest, TemplateSpec, TemplateView,
    check_template_name,
};
use shoal_protocol::{ApiError, Command, ErrorCode, Response};

use super::{ApiJson, ApiResult, Failure, accepted, redact};
use crate::keys::Caller;
use crate::node::{Node, now_ms};

/// The template a change answered with, as `caller` may see it.
fn template_of(caller: &Caller, response: Response) -> Result<Json<TemplateView>, Failure> {
    match accepted(response)? {
        Response::Template(template) => Ok(Json(redact::template(caller, &template))),
        other => Err(Failure(ApiError::new(
            ErrorCode::Internal,
            format!("the state machine answered {other:?}"),
        ))),
    }
}

fn checked_name(name: &str) -> Result<(), Failure> {
    check_template_name(name).map_err(|m| Failure(ApiError::bad_request(m)))
}

/// The template `name` of the caller's org as this node's replica has it, or after a read
/// through the leader (a template made on another node a moment ago).
pub(super) async fn find(node: &Node, caller: &Caller, name: &str) -> Result<Template, Failure> {
    let read = || {
        node.fleet
            .read(|state| state.template(&caller.org, name).cloned())
    };
    if let Some(template) = read() {
        return Ok(template);
    }
    node.read_barrier().await?;
    read().ok_or_else(|| Failure(ApiError::not_found(format!("no template {name}"))))
}

/// The org a template change acts in: the caller's, once every machine keeps templates by
/// org; before that (a rolling upgrade), none, so older builds apply it as they did.
fn owning_org(node: &Node, caller: &Caller) -> Option<String> {
    let by_org = node
        .fleet
        .read(|state| state.fleet_level >= TEMPLATE_ORGS_LEVEL);
    by_org.then(|| caller.org.clone())
}

/// `PUT /v1/templates/{name}`: a new version (the first makes the template).
#[utoipa::path(put, path = "/v1/templates/{name}", tag = "sessions",
    params(("name" = String, Path, description = "The template")),
    request_body = TemplateRequest,
    responses((status = OK, body = TemplateView, description = "The template with its new version current")))]
pub async fn put(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<TemplateRequest>,
) -> ApiResult<TemplateView> {
    checked_name(&name)?;
    let mut spec = TemplateSpec::from(request);
    super::jobs::seal_secrets(&node, &caller, &mut spec.secret_env)?;
    spec.validate()
        .map_err(|m| Failure(ApiError::bad_request(m)))?;
    let outcome = node
        .write_as(
            &caller,
            Command::PutTemplate {
                org: owning_org(&node, &caller),
                name,
                spec: Box::new(spec),
                by: caller.key_id.clone(),
                at_ms: now_ms(),
            },
        )
        .await?;
    template_of(&caller, outcome.response)
}

/// `GET /v1/templates`.
#[utoipa::path(get, path = "/v1/templates", tag = "sessions",
    responses((status = OK, body = TemplateList, description = "Every template with its versions")))]
pub async fn list(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
) -> Json<TemplateList> {
    let templates = node.fleet.read(|state| {
        state
            .templates_of(&caller.org)
            .map(|t| redact::template(&caller, t))
            .collect()
    });
    Json(TemplateList { templates })
}

/// `GET /v1/templates/{name}`.
#[utoipa::path(get, path = "/v1/templates/{name}", tag = "sessions",
    params(("name" = String, Path, description = "The template")),
    responses(
        (status = OK, body = TemplateView, description = "The template with its versions"),
        (status = NOT_FOUND, body = ApiError, description = "No such template"),
    ))]
pub async fn show(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<TemplateView> {
    checked_name(&name)?;
    let template = find(&node, &caller, &name).await?;
    Ok(Json(redact::template(&caller, &template)))
}

/// `POST /v1/templates/{name}/rollback`: new sessions use `version` from now on.
#[utoipa::path(post, path = "/v1/templates/{name}/rollback", tag = "sessions",
    params(("name" = String, Path, description = "The template")),
    request_body = RollbackRequest,
    responses(
        (status = OK, body = TemplateView, description = "The template, the version asked for current"),
        (status = NOT_FOUND, body = ApiError, description = "No such template or version"),
    ))]
pub async fn rollback(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<RollbackRequest>,
) -> ApiResult<TemplateView> {
    checked_name(&name)?;
    // Another org's template is as good as absent: refused here, with nothing written.
    find(&node, &caller, &name).await?;
    let outcome = node
        .write_as(
            &caller,
            Command::RollbackTemplate {
                org: owning_org(&node, &caller),
                name,
                version: request.version,
            },
        )
        .await?;
    template_of(&caller, outcome.response)
}
