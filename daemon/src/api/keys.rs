//! `/v1/keys`: admins create (for any org), list and revoke API keys.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use shoal_protocol::job_spec::check_org;
use shoal_protocol::keys::{ApiKeyView, CreateKeyRequest, CreatedKey, KeyList};
use shoal_protocol::{ApiError, Command, ErrorCode};

use super::{ApiJson, ApiResult, Failure, accepted};
use crate::keys::{Caller, new_key};
use crate::node::{Node, now_ms};

/// Longest key name, in bytes.
const MAX_NAME_LEN: usize = 100;

/// `POST /v1/keys`: 201 with the whole key, shown this once.
#[utoipa::path(post, path = "/v1/keys", tag = "access", request_body = CreateKeyRequest,
    responses((status = CREATED, body = CreatedKey, description = "The new key, shown this once")))]
pub async fn create(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), Failure> {
    let org = request.org.unwrap_or_else(|| caller.org.clone());
    check_org(&org).map_err(|message| Failure(ApiError::bad_request(message)))?;
    let name = request.name.unwrap_or_default();
    if name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Failure(ApiError::bad_request(format!(
            "name must be at most {MAX_NAME_LEN} printable bytes"
        ))));
    }
    let (key, record) = new_key(&org, request.scope, &name, &caller.key_id, now_ms());
    let outcome = node
        .write_as(
            &caller,
            Command::CreateApiKey {
                record: Box::new(record.clone()),
            },
        )
        .await?;
    accepted(outcome.response)?;
    let created = CreatedKey {
        key,
        record: ApiKeyView::from(&record),
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// `GET /v1/keys`: every key, revoked ones included, without secrets.
#[utoipa::path(get, path = "/v1/keys", tag = "access",
    responses((status = OK, body = KeyList, description = "Every key, without secrets")))]
pub async fn list(State(node): State<Arc<Node>>) -> ApiResult<KeyList> {
    let keys = node
        .fleet
        .read(|state| state.api_keys.values().map(ApiKeyView::from).collect());
    Ok(Json(KeyList { keys }))
}

/// `DELETE /v1/keys/{id}`: revokes the key on every node.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "access",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = OK, body = KeyList, description = "Every key, the revoked one marked"),
        (status = NOT_FOUND, body = ApiError, description = "No such key"),
        (status = CONFLICT, body = ApiError, description = "The key making the request, or the fleet's last admin key"),
    ))]
pub async fn revoke(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<KeyList> {
    if node.fleet.read(|state| !state.api_keys.contains_key(&id)) {
        return Err(Failure(ApiError::not_found(format!("no API key {id}"))));
    }
    if id == caller.key_id {
        return Err(Failure(ApiError::new(
            ErrorCode::Conflict,
            format!("key {id} is the key making this request: revoke it with another admin key"),
        )));
    }
    let outcome = node
        .write_as(
            &caller,
            Command::RevokeApiKey {
                id: id.clone(),
                at_ms: now_ms(),
            },
        )
        .await?;
    accepted(outcome.response)?;
    let keys = node
        .fleet
        .read(|state| state.api_keys.get(&id).map(ApiKeyView::from));
    Ok(Json(KeyList {
        keys: keys.into_iter().collect(),
    }))
}
