//! Machines waiting to be admitted: listed with `GET /v1/machines` as `pending`, and let
//! in with `POST /v1/machines/{id}/approve` (see [`crate::admission`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use shoal_protocol::api::{MachineApproved, PendingMachine};
use shoal_protocol::{ApiError, Command, ErrorCode, MachineId};

use super::machines::parse_id;
use super::{ApiResult, Failure, accepted};
use crate::admission::{Admission, admission, name_holder, name_taken};
use crate::keys::Caller;
use crate::node::{Node, members};

/// The machines this node sees in gossip, with the fleet's key, that the log has not
/// admitted, by id.
pub(super) fn pending(node: &Node) -> Vec<PendingMachine> {
    let raft_members: BTreeSet<MachineId> = members(&node.raft).into_keys().collect();
    let peers = node.peers.borrow();
    node.fleet.read(|state| {
        let mut waiting: Vec<PendingMachine> = peers
            .iter()
            .filter(|peer| peer.live)
            .filter(|peer| admission(state, &raft_members, peer.info.id) == Admission::Pending)
            .map(|peer| PendingMachine {
                id: peer.info.id,
                name: peer.info.name.clone(),
                hostname: peer.info.hostname.clone(),
                version: peer.info.version.clone(),
                addr: peer.info.addr.clone(),
                last_heartbeat_ms: peer.last_heartbeat_ms,
            })
            .collect();
        waiting.sort_by_key(|m| m.id);
        waiting
    })
}

/// `POST /v1/machines/{id}/approve`: admits a machine that came with the cluster secret
/// alone; the leader records it and adds it to Raft once it is seen. A machine may be
/// approved before it shows up.
#[utoipa::path(post, path = "/v1/machines/{id}/approve", tag = "machines",
    params(("id" = MachineId, Path, description = "The machine")),
    responses(
        (status = OK, body = MachineApproved, description = "The machine is admitted"),
        (status = CONFLICT, body = ApiError, description = "The machine was removed (it needs a registration token), or the fleet is below the protocol level"),
    ))]
pub async fn approve(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<MachineApproved> {
    let id = parse_id(&id)?;
    // A machine already in gossip under a running machine's name is refused, saying so.
    if let Some(peer) = node.peer(id) {
        let name = peer.info.name;
        if let Some(holder) = node.fleet.read(|state| name_holder(state, &name, id)) {
            return Err(Failure(ApiError::new(
                ErrorCode::Conflict,
                name_taken(&name, holder),
            )));
        }
    }
    let outcome = node
        .write_as(&caller, Command::ApproveMachine { id })
        .await?;
    accepted(outcome.response)?;
    Ok(Json(MachineApproved { approved: id }))
}
