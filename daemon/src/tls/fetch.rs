//! How a member that lacks the fleet CA gets it: it asks the other members over the
//! encrypted peer channel (`PeerRequest::FleetCa`), each of which answers only a machine
//! the fleet admits. If none has one and this node leads, the fleet has none yet (a fleet
//! formed by several machines, or one formed before its build had TLS): the leader makes
//! it, and the others get it from there.
//!
//! An older build does not know the request: it cannot decode it and drops the stream,
//! which the asker takes as "no CA there" and asks the next.

use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use openraft::ServerState;
use tokio::sync::watch;

use super::FleetCa;
use crate::identity;
use crate::node::Node;
use crate::p2p::{PeerRequest, PeerResponse};

/// How often a node without the CA asks for it.
const ASK_EVERY: Duration = Duration::from_secs(1);
/// How long one member may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// On a member: the CA, for a machine the fleet admits (a Raft member, one that used a
/// token, or one an admin approved) and has not removed.
pub fn answer(node: &Node, from: &PeerId) -> PeerResponse {
    let id = identity::machine_id(from);
    let (admitted, retired) = node.fleet.read(|state| {
        (
            state.admitted.contains(&id) || state.machines.contains_key(&id),
            state.retired.contains(&id),
        )
    });
    let member = node
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&id)
        .is_some();
    if retired || !(admitted || member) {
        tracing::warn!(machine = %id, "refused the fleet ca to a machine the fleet does not admit");
        return PeerResponse::Refused("the fleet CA goes only to machines of the fleet".into());
    }
    PeerResponse::FleetCa(node.tls.fleet_ca())
}

/// Until this node holds the CA: asks the members for it, or makes it if it leads and
/// none has one.
pub async fn ca_loop(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    while !node.tls.has_ca() {
        let found = ask_members(&node).await;
        let result = match found {
            Some(ca) => node.tls.adopt(ca),
            None if leads(&node) && node.tls.fleet_ca().is_none() => {
                tracing::info!("no member holds a fleet ca: making one");
                FleetCa::generate().and_then(|ca| node.tls.adopt(ca))
            }
            None => Ok(()),
        };
        if let Err(err) = result {
            tracing::warn!(%err, "cannot take the fleet ca");
        }
        if node.tls.has_ca() {
            return;
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(ASK_EVERY) => {}
        }
    }
}

fn leads(node: &Node) -> bool {
    node.raft.metrics().borrow().state == ServerState::Leader
}

/// The first CA a member hands over, asking every member this node knows of.
async fn ask_members(node: &Node) -> Option<FleetCa> {
    let mut members: Vec<_> = crate::node::members(&node.raft)
        .into_iter()
        .filter(|(id, _)| *id != node.id)
        .map(|(_, (addr, _))| addr)
        .collect();
    for peer in node.peers.borrow().iter() {
        if peer.live && peer.info.id != node.id && !members.contains(&peer.info.addr) {
            members.push(peer.info.addr.clone());
        }
    }
    for addr in members {
        let asked = node
            .p2p
            .request(
                &addr.peer_id,
                &addr.p2p_addr,
                PeerRequest::FleetCa,
                ASK_TIMEOUT,
            )
            .await;
        match asked {
            Ok(PeerResponse::FleetCa(Some(ca))) if ca.check().is_ok() => return Some(ca),
            Ok(PeerResponse::FleetCa(Some(_))) => {
                tracing::warn!(peer = %addr.peer_id, "a member handed over a fleet ca that does not check");
            }
            Ok(_) => {}
            // An older build cannot read the request: it holds no CA either.
            Err(err) => tracing::debug!(peer = %addr.peer_id, %err, "no fleet ca from this member"),
        }
    }
    None
}
