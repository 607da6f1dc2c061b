//! `GET /v1/audit`: the audit log, newest first, for the whole fleet or one machine.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use shoal_protocol::audit::{AuditList, AuditView};
use shoal_protocol::params::AuditParams;
use shoal_protocol::{ApiError, MachineId};

use super::{ApiQuery, ApiResult, Failure, parsed};
use crate::node::Node;

/// Most entries one page returns.
const MAX_PAGE: usize = 1000;

/// `GET /v1/audit?machine=ID&actor=KEY&before=SEQ&limit=N`.
#[utoipa::path(get, path = "/v1/audit", tag = "access", params(AuditParams),
    responses((status = OK, body = AuditList, description = "Audit entries, newest first")))]
pub async fn list(
    State(node): State<Arc<Node>>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> ApiResult<AuditList> {
    let machine: Option<MachineId> = params.machine.as_deref().map(parsed).transpose()?;
    let limit = params.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Failure(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}"
        ))));
    }
    let entries = node.fleet.read(|state| {
        state
            .audit
            .iter()
            .rev()
            .filter(|e| params.before.is_none_or(|before| e.seq < before))
            .filter(|e| machine.is_none_or(|m| e.machines.contains(&m)))
            .filter(|e| params.actor.as_ref().is_none_or(|a| &e.actor == a))
            .take(limit)
            .map(AuditView::from)
            .collect()
    });
    Ok(Json(AuditList { entries }))
}
