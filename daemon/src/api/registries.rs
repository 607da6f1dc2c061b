//! `/v1/registries`: the credentials machines pull images with (admin). A login's password
//! is sealed here, before it goes to the log, and no answer carries it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use shoal_protocol::registries::{RegistryEntry, RegistryList, RegistryLogin, check_registry};
use shoal_protocol::{ApiError, Command, ErrorCode};

use super::{ApiJson, ApiResult, Failure, accepted};
use crate::keys::Caller;
use crate::node::{Node, now_ms};

fn list_of(node: &Node) -> RegistryList {
    RegistryList {
        registries: node.fleet.read(|state| {
            let credentials = state.registry_credentials.values();
            credentials.map(|credential| credential.entry()).collect()
        }),
    }
}

/// `PUT /v1/registries/{registry}`: machines pull this registry's images with these
/// credentials from now on.
#[utoipa::path(put, path = "/v1/registries/{registry}", tag = "access",
    params(("registry" = String, Path, description = "The registry, as image references name it (`ghcr.io`, `registry.lan:5000`, `docker.io`)")),
    request_body = RegistryLogin,
    responses((status = OK, body = RegistryEntry, description = "The credentials as kept, without the password")))]
pub async fn login(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(registry): Path<String>,
    ApiJson(login): ApiJson<RegistryLogin>,
) -> ApiResult<RegistryEntry> {
    let bad = |message: String| Failure(ApiError::bad_request(message));
    check_registry(&registry).map_err(bad)?;
    login.validate().map_err(bad)?;
    let sealed = crate::secrets::registry::seal(
        &node.cluster_secret,
        &registry,
        &login,
        &caller.key_id,
        now_ms(),
    )
    .map_err(|why| Failure(ApiError::new(ErrorCode::Internal, why)))?;
    let entry = sealed.entry();
    let command = Command::SetRegistryCredential {
        registry,
        credential: Some(Box::new(sealed)),
    };
    accepted(node.write_as(&caller, command).await?.response)?;
    Ok(Json(entry))
}

/// `GET /v1/registries`.
#[utoipa::path(get, path = "/v1/registries", tag = "access",
    responses((status = OK, body = RegistryList, description = "Every registry with credentials, without passwords")))]
pub async fn list(State(node): State<Arc<Node>>) -> Json<RegistryList> {
    Json(list_of(&node))
}

/// `DELETE /v1/registries/{registry}`: machines pull from it without credentials again.
#[utoipa::path(delete, path = "/v1/registries/{registry}", tag = "access",
    params(("registry" = String, Path, description = "The registry")),
    responses(
        (status = OK, body = RegistryList, description = "The registries left"),
        (status = NOT_FOUND, body = ApiError, description = "No credentials for that registry"),
    ))]
pub async fn logout(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(registry): Path<String>,
) -> ApiResult<RegistryList> {
    check_registry(&registry).map_err(|m| Failure(ApiError::bad_request(m)))?;
    let command = Command::SetRegistryCredential {
        registry,
        credential: None,
    };
    accepted(node.write_as(&caller, command).await?.response)?;
    Ok(Json(list_of(&node)))
}
