//! `GET /v1/snapshot` (admin): a consistent point-in-time copy of the fleet state in the
//! snapshot format (`shoal_raft::snapshot_format`), from any node.
//!
//! ```text
//!  read barrier (leader's read index, applied here) ─▶ copy under the read lock
//!      ─▶ encode in the blocking pool ─▶ bytes (application/octet-stream)
//! ```
//!
//! The barrier makes the copy include every write acknowledged before the request. The
//! read is not audited (reads never are); the node logs it with the caller's key id.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use shoal_protocol::{ApiError, ErrorCode};
use shoal_raft::snapshot_format;

use super::Failure;
use crate::keys::Caller;
use crate::node::Node;

/// The header that carries the copy's last log index.
pub const INDEX_HEADER: &str = "x-shoal-snapshot-index";
/// The header that carries the copy's SHA-256 (also its last 32 bytes), in hex.
pub const SHA256_HEADER: &str = "x-shoal-snapshot-sha256";

/// A consistent copy of the fleet state, encoded now on this node.
pub async fn take(node: &Node) -> Result<(u64, Vec<u8>), ApiError> {
    node.read_barrier().await?;
    let copy = node.fleet.copy().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "this node has not applied the fleet log yet",
        )
    })?;
    let index = copy.meta.last_log_id.map_or(0, |id| id.index);
    let bytes = tokio::task::spawn_blocking(move || snapshot_format::encode(&copy))
        .await
        .map_err(|err| ApiError::new(ErrorCode::Internal, err.to_string()))?
        .map_err(|err| ApiError::new(ErrorCode::Internal, err.to_string()))?;
    Ok((index, bytes))
}

/// `GET /v1/snapshot`: the fleet state as of now, with its checksum.
#[utoipa::path(get, path = "/v1/snapshot", tag = "operate",
    responses((status = OK, content_type = "application/octet-stream", body = Vec<u8>,
        description = "The fleet state in the snapshot format: header, metadata, state, \
                       SHA-256. Its last log index and SHA-256 are in the \
                       X-Shoal-Snapshot-Index and X-Shoal-Snapshot-Sha256 headers")))]
pub async fn save(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Failure> {
    let started = std::time::Instant::now();
    let (index, bytes) = take(&node).await?;
    let sha256 = snapshot_format::digest_hex(&bytes)
        .map_err(|err| ApiError::new(ErrorCode::Internal, err.to_string()))?;
    tracing::info!(actor = %caller.key_id, index, bytes = bytes.len(),
        elapsed_ms = started.elapsed().as_millis() as u64, "fleet snapshot taken");
    let disposition = format!("attachment; filename=\"fleet-{index}.snap\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::HeaderName::from_static(INDEX_HEADER),
                index.to_string(),
            ),
            (header::HeaderName::from_static(SHA256_HEADER), sha256),
        ],
        bytes,
    )
        .into_response())
}
