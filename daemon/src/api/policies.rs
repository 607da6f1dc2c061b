//! `/v1/policies`: governance policies (admin). Each machine checks the policies that
//! select it before it starts a container.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use shoal_protocol::policies::{
    Policy, PolicyList, PolicyRequest, PolicySpec, PolicyView, check_policy_name,
};
use shoal_protocol::{ApiError, Command};

use super::{ApiJson, ApiResult, Failure, accepted};
use crate::keys::Caller;
use crate::node::{Node, now_ms};

fn list_of(node: &Node) -> PolicyList {
    PolicyList {
        policies: node
            .fleet
            .read(|state| state.policies.values().map(PolicyView::from).collect()),
    }
}

/// `PUT /v1/policies/{name}`: sets the policy; machines apply it to what they start next.
#[utoipa::path(put, path = "/v1/policies/{name}", tag = "sessions",
    params(("name" = String, Path, description = "The policy")),
    request_body = PolicyRequest,
    responses((status = OK, body = PolicyView, description = "The policy as set")))]
pub async fn put(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<PolicyRequest>,
) -> ApiResult<PolicyView> {
    check_policy_name(&name).map_err(|m| Failure(ApiError::bad_request(m)))?;
    let spec = PolicySpec::from(request);
    spec.validate()
        .map_err(|m| Failure(ApiError::bad_request(m)))?;
    let policy = Policy {
        name: name.clone(),
        spec,
        updated_at_ms: now_ms(),
        updated_by: caller.key_id.clone(),
    };
    let outcome = node
        .write_as(
            &caller,
            Command::SetPolicy {
                name,
                policy: Some(Box::new(policy.clone())),
            },
        )
        .await?;
    accepted(outcome.response)?;
    Ok(Json(PolicyView::from(&policy)))
}

/// `GET /v1/policies`.
#[utoipa::path(get, path = "/v1/policies", tag = "sessions",
    responses((status = OK, body = PolicyList, description = "Every policy")))]
pub async fn list(State(node): State<Arc<Node>>) -> Json<PolicyList> {
    Json(list_of(&node))
}

/// `DELETE /v1/policies/{name}`.
#[utoipa::path(delete, path = "/v1/policies/{name}", tag = "sessions",
    params(("name" = String, Path, description = "The policy")),
    responses(
        (status = OK, body = PolicyList, description = "The policies left"),
        (status = NOT_FOUND, body = ApiError, description = "No such policy"),
    ))]
pub async fn remove(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<PolicyList> {
    let outcome = node
        .write_as(&caller, Command::SetPolicy { name, policy: None })
        .await?;
    accepted(outcome.response)?;
    Ok(Json(list_of(&node)))
}
