//! `GET /v1/machines/{id}/history`: a machine's last hour of CPU, load, memory and disk
//! samples, from any node (read from the machine itself, see [`crate::history`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use shoal_protocol::api::MachineHistory;
use shoal_protocol::params::HistoryParams;
use shoal_protocol::{ApiError, MachineId};

use super::machines::parse_id;
use super::{ApiQuery, ApiResult};
use crate::history;
use crate::node::Node;

/// `GET /v1/machines/{id}/history[?since_ms=T]`.
#[utoipa::path(get, path = "/v1/machines/{id}/history", tag = "machines",
    params(("id" = MachineId, Path, description = "The machine"), HistoryParams),
    responses(
        (status = OK, body = MachineHistory, description = "The machine's samples of the last hour"),
        (status = NOT_FOUND, body = ApiError, description = "No such machine"),
    ))]
pub async fn history(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> ApiResult<MachineHistory> {
    let id = parse_id(&id)?;
    Ok(Json(history::read(&node, id, params.since_ms).await?))
}
