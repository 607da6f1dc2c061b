//! `/v1/tokens/registration`: admins make single-use, expiring tokens for machines to join
//! (`shoald join --token`), list them and revoke unused ones.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use shoal_protocol::job_spec::check_org;
use shoal_protocol::tokens::{
    CreateTokensRequest, CreatedTokens, RegistrationToken, TokenList, TokenView,
};
use shoal_protocol::{ApiError, Command};

use super::{ApiJson, ApiResult, Failure, accepted};
use crate::keys::{Caller, random_hex, sha256_hex};
use crate::node::{Node, now_ms};

/// Most tokens one request makes.
const MAX_COUNT: u32 = 100;
/// Longest a token lives: 30 days.
const MAX_TTL_SECONDS: u64 = 30 * 24 * 3600;

/// `POST /v1/tokens/registration`: 201 with the whole tokens, shown this once.
#[utoipa::path(post, path = "/v1/tokens/registration", tag = "access", request_body = CreateTokensRequest,
    responses((status = CREATED, body = CreatedTokens, description = "The new tokens, shown this once")))]
pub async fn create(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<CreateTokensRequest>,
) -> Result<(StatusCode, Json<CreatedTokens>), Failure> {
    if !(1..=MAX_COUNT).contains(&request.count) {
        return Err(Failure(ApiError::bad_request(format!(
            "count must be 1 to {MAX_COUNT}, got {}",
            request.count
        ))));
    }
    if !(1..=MAX_TTL_SECONDS).contains(&request.ttl_seconds) {
        return Err(Failure(ApiError::bad_request(format!(
            "ttl_seconds must be 1 to {MAX_TTL_SECONDS}, got {}",
            request.ttl_seconds
        ))));
    }
    let org = request.org.unwrap_or_else(|| caller.org.clone());
    check_org(&org).map_err(|message| Failure(ApiError::bad_request(message)))?;
    let now = now_ms();
    let expires_at_ms = now + request.ttl_seconds * 1000;
    let mut tokens = Vec::new();
    let mut records = Vec::new();
    for _ in 0..request.count {
        let (id, secret) = (random_hex(8), random_hex(32));
        tokens.push(format!("shoaljoin_{id}_{secret}"));
        records.push(RegistrationToken {
            id,
            secret_sha256: sha256_hex(&secret),
            org: org.clone(),
            labels: request.labels.clone(),
            created_at_ms: now,
            expires_at_ms,
            created_by: caller.key_id.clone(),
            used_by: None,
            used_at_ms: None,
            revoked_at_ms: None,
        });
    }
    let outcome = node
        .write_as(&caller, Command::CreateTokens { tokens: records })
        .await?;
    accepted(outcome.response)?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedTokens {
            tokens,
            expires_at_ms,
        }),
    ))
}

/// `GET /v1/tokens/registration`: every token, without secrets.
#[utoipa::path(get, path = "/v1/tokens/registration", tag = "access",
    responses((status = OK, body = TokenList, description = "Every token, without secrets")))]
pub async fn list(State(node): State<Arc<Node>>) -> ApiResult<TokenList> {
    let tokens = node
        .fleet
        .read(|state| state.tokens.values().map(TokenView::from).collect());
    Ok(Json(TokenList { tokens }))
}

/// `DELETE /v1/tokens/registration/{id}`: an unused token can no longer be used.
#[utoipa::path(delete, path = "/v1/tokens/registration/{id}", tag = "access",
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = OK, body = TokenList, description = "Every token, the revoked one marked"),
        (status = NOT_FOUND, body = ApiError, description = "No such token"),
    ))]
pub async fn revoke(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<TokenList> {
    let outcome = node
        .write_as(
            &caller,
            Command::RevokeToken {
                id: id.clone(),
                at_ms: now_ms(),
            },
        )
        .await?;
    accepted(outcome.response)?;
    let token = node
        .fleet
        .read(|state| state.tokens.get(&id).map(TokenView::from));
    Ok(Json(TokenList {
        tokens: token.into_iter().collect(),
    }))
}
