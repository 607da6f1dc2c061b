//! The leader's part of a rotation: once one is due (an admin asked, or a machine was
//! removed and has left the Raft configuration), it makes a random key, seals it under
//! the current one and commits it ([`Command::RotateGossipKey`]).

use shoal_gossip::GossipKey;
use shoal_gossip::key_chain::seal_next;
use shoal_protocol::levels::GOSSIP_KEYRING_LEVEL;
use shoal_protocol::{ApiError, Command, ErrorCode, Response};

use crate::node::{Node, members};

/// Commits the next gossip key if a rotation is due and may happen now.
pub async fn rotate_when_due(node: &Node) -> Result<(), ApiError> {
    let (due, awaiting, generation, level) = node.fleet.read(|state| {
        let keys = &state.gossip_keys;
        (
            keys.rotation_due,
            keys.awaiting_removal.clone(),
            keys.generation(),
            state.fleet_level,
        )
    });
    if !due || level < GOSSIP_KEYRING_LEVEL {
        return Ok(());
    }
    let raft_members = members(&node.raft);
    if awaiting.iter().any(|id| raft_members.contains_key(id)) {
        return Ok(()); // a removed machine is still in Raft: it would get the new key
    }
    let Some(current) = node.gossip_keys.key(generation) else {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("this leader does not hold gossip key generation {generation} yet"),
        ));
    };
    let Some(next_generation) = generation.checked_add(1) else {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the gossip key generation cannot go higher",
        ));
    };
    let next = GossipKey::random(next_generation);
    let sealed_key = seal_next(&current, &next)
        .map_err(|err| ApiError::new(ErrorCode::Internal, err.to_string()))?;
    let outcome = node
        .write(Command::RotateGossipKey {
            generation: next_generation,
            sealed_key,
        })
        .await?;
    match outcome.response {
        Response::Rejected { message, .. } => Err(ApiError::new(ErrorCode::Conflict, message)),
        _ => {
            tracing::info!(generation = next_generation, "rotated the gossip key");
            Ok(())
        }
    }
}
