//! `/v1/fleet/settings`: settings every leader follows alike because they are in the log
//! (today the job retention). Changing them is an admin's audited write that needs
//! protocol level 2: in a fleet still at level 1 it is refused naming the machines to
//! upgrade.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use shoal_protocol::params::ReadParams;
use shoal_protocol::settings::{FleetSettingsRequest, FleetSettingsView};
use shoal_protocol::{ApiError, Command};

use super::{ApiJson, ApiQuery, ApiResult, Failure, accepted, barrier_if};
use crate::keys::Caller;
use crate::node::Node;

/// `GET /v1/fleet/settings` (`?consistent=true` for a linearizable read).
#[utoipa::path(get, path = "/v1/fleet/settings", tag = "fleet", params(ReadParams),
    responses((status = OK, body = FleetSettingsView, description = "The fleet's settings; a setting not set (null) follows the leader's config")))]
pub async fn show(
    State(node): State<Arc<Node>>,
    ApiQuery(params): ApiQuery<ReadParams>,
) -> ApiResult<FleetSettingsView> {
    barrier_if(&node, &params).await?;
    Ok(Json(
        node.fleet
            .read(|state| FleetSettingsView::from(&state.settings)),
    ))
}

/// `PUT /v1/fleet/settings`: replaces the fleet's settings (admin).
#[utoipa::path(put, path = "/v1/fleet/settings", tag = "fleet", request_body = FleetSettingsRequest,
    responses(
        (status = OK, body = FleetSettingsView, description = "The settings as they now are"),
        (status = CONFLICT, body = ApiError, description = "The fleet's protocol level is below 2: the message names the machines to upgrade"),
    ))]
pub async fn put(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<FleetSettingsRequest>,
) -> ApiResult<FleetSettingsView> {
    let settings = request
        .into_settings()
        .map_err(|message| Failure(ApiError::bad_request(message)))?;
    let outcome = node
        .write_as(
            &caller,
            Command::SetFleetSettings {
                settings: settings.clone(),
            },
        )
        .await?;
    accepted(outcome.response)?;
    tracing::info!(job_retention_seconds = ?settings.job_retention_seconds, actor = %caller.key_id, "fleet settings changed");
    Ok(Json(FleetSettingsView::from(&settings)))
}
