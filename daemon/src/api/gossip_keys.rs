//! `POST /v1/fleet/rotate-key`: an admin asks for a new gossip key (see
//! [`crate::gossip_keys`]). The request is committed, the leader makes the key, and every
//! node rolls it out; the answer says which generation that is and whether the log holds
//! it already.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use shoal_protocol::api::GossipKeyRotation;
use shoal_protocol::{ApiError, Command, ErrorCode};

use super::{Failure, accepted};
use crate::keys::Caller;
use crate::node::Node;

/// How long the answer waits for the leader to commit the new key before it says 202.
const COMMIT_WAIT: Duration = Duration::from_secs(3);

/// `POST /v1/fleet/rotate-key` (admin): 200 once this node's replica holds the new
/// generation, 202 while the rotation is due but not made yet.
#[utoipa::path(post, path = "/v1/fleet/rotate-key", tag = "fleet",
    responses(
        (status = OK, body = GossipKeyRotation, description = "The new generation is in the log; every node seals with it within moments"),
        (status = ACCEPTED, body = GossipKeyRotation, description = "The rotation is due; the leader makes it once no removed machine is left in Raft"),
        (status = CONFLICT, body = ApiError, description = "The fleet's protocol level is below 7: the message names the machines to upgrade"),
    ))]
pub async fn rotate(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
) -> Result<(StatusCode, Json<GossipKeyRotation>), Failure> {
    let before = node.fleet.read(|state| state.gossip_keys.generation());
    let next = before.checked_add(1).ok_or_else(|| {
        Failure(ApiError::new(
            ErrorCode::Conflict,
            "the gossip key generation cannot go higher",
        ))
    })?;
    let outcome = node
        .write_as(&caller, Command::RequestGossipKeyRotation)
        .await?;
    accepted(outcome.response)?;
    tracing::info!(actor = %caller.key_id, "gossip key rotation requested");
    let generation = || node.fleet.read(|state| state.gossip_keys.generation());
    let mut applied = node.fleet.applied();
    let committed = tokio::time::timeout(COMMIT_WAIT, async {
        while generation() < next {
            if applied.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    })
    .await
    .is_ok();
    let (status, generation) = if committed {
        (StatusCode::OK, generation())
    } else {
        (StatusCode::ACCEPTED, next)
    };
    Ok((
        status,
        Json(GossipKeyRotation {
            generation,
            committed,
        }),
    ))
}
