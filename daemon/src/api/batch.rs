//! `POST /v1/batch/{action}`: restart, update or apply-config on selected machines (chosen
//! as a drain chooses them); each machine's outcome, and one audit entry.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use shoal_protocol::batch::{BatchAction, BatchReport};
use shoal_protocol::operate::DrainRequest;
use shoal_protocol::{ApiError, Command};

use super::operate::select;
use super::{ApiJson, ApiResult, Failure, accepted};
use crate::keys::Caller;
use crate::node::Node;

#[utoipa::path(post, path = "/v1/batch/{action}", tag = "sessions",
    params(("action" = BatchAction, Path, description = "restart, update or apply-config")),
    request_body = DrainRequest,
    responses(
        (status = OK, body = BatchReport, description = "What each selected machine did"),
        (status = NOT_FOUND, body = ApiError, description = "A machine named is unknown"),
    ))]
pub async fn run(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(action): Path<String>,
    ApiJson(selection): ApiJson<DrainRequest>,
) -> ApiResult<BatchReport> {
    let action: BatchAction = action
        .parse()
        .map_err(|m: String| Failure(ApiError::bad_request(m)))?;
    if selection.deadline_seconds.is_some() {
        return Err(Failure(ApiError::bad_request(
            "deadline_seconds is for drain: a batch takes machines, a selector, idle_only or all",
        )));
    }
    let machines = node.fleet.read(|state| select(state, &selection))?;
    let outcomes = crate::batch::run(&node, &caller, action, &machines).await;
    let outcome = node
        .write_as(&caller, Command::RecordBatch { action, machines })
        .await?;
    accepted(outcome.response)?;
    Ok(Json(BatchReport {
        action,
        machines: outcomes,
    }))
}
