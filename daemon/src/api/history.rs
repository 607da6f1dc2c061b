//! `GET /v1/machines/{id}/history`: a machine's last hour of CPU, load, memory and disk
//! samples, from any node (read from the machine itself, see [`crate::history`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use shoal_protocol::api::MachineHistory;

use super::machines::parse_id;
use super::{ApiQuery, ApiResult};
use crate::history;
use crate::node::Node;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// Only samples taken after this time (Unix milliseconds).
    since_ms: Option<u64>,
}

/// `GET /v1/machines/{id}/history[?since_ms=T]`.
pub async fn history(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> ApiResult<MachineHistory> {
    let id = parse_id(&id)?;
    Ok(Json(history::read(&node, id, params.since_ms).await?))
}
