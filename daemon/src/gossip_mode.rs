//! Whether this node seals its gossip: chosen from the protocol level it speaks and the
//! fleet's level as its replica has applied it, and changed as soon as that level is.
//!
//! ```text
//!  this node's level ──┐
//!  fleet level (applied, watched) ─▶ mode_for ─▶ Gossip::set_mode (Plain | Open | Sealed)
//! ```
//!
//! A node starts in the mode its replica gives when gossip starts, after `Raft::new`
//! replayed the log up to the commit index it saved: a restarted node whose fleet was at
//! level 5 starts `Sealed`. A new machine (an empty state is level 1) starts `Open` and seals
//! once it has been added and applied the log, as does a node that had not yet heard the
//! level-5 entry committed when it stopped.

use std::sync::Arc;

use shoal_gossip::{Gossip, GossipMode};
use shoal_protocol::ProtocolLevel;
use shoal_protocol::levels::SEALED_GOSSIP_LEVEL;
use tokio::sync::watch;

use crate::node::Node;

/// The mode of a node that speaks `own` in a fleet at `fleet`: a node below
/// [`SEALED_GOSSIP_LEVEL`] is an older build (tests play one with `Config::protocol_level`)
/// and never seals; a node that speaks it reads both forms until its fleet is raised to
/// it, then seals.
pub fn mode_for(own: ProtocolLevel, fleet: ProtocolLevel) -> GossipMode {
    if own < SEALED_GOSSIP_LEVEL {
        GossipMode::Plain
    } else if fleet < SEALED_GOSSIP_LEVEL {
        GossipMode::Open
    } else {
        GossipMode::Sealed
    }
}

/// The mode `node` runs in now, by its replica.
pub fn current(node: &Node) -> GossipMode {
    let fleet = node.fleet.read(|state| state.fleet_level);
    mode_for(node.config.protocol_level, fleet)
}

/// Keeps `gossip` in the mode the applied fleet level gives, until shutdown.
pub async fn mode_loop(node: Arc<Node>, gossip: Arc<Gossip>, mut shutdown: watch::Receiver<bool>) {
    let mut applied = node.fleet.applied();
    loop {
        gossip.set_mode(current(&node));
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            Ok(()) = applied.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_seals_once_it_and_its_fleet_speak_the_level() {
        let below = ProtocolLevel(SEALED_GOSSIP_LEVEL.0 - 1);
        let at = SEALED_GOSSIP_LEVEL;
        let above = ProtocolLevel(SEALED_GOSSIP_LEVEL.0 + 1);
        let cases = [
            (
                ProtocolLevel::FIRST,
                ProtocolLevel::FIRST,
                GossipMode::Plain,
            ),
            (below, below, GossipMode::Plain),
            // An older build in a fleet raised past it (it cannot read the log either).
            (below, at, GossipMode::Plain),
            (at, ProtocolLevel::FIRST, GossipMode::Open),
            (at, below, GossipMode::Open),
            (above, below, GossipMode::Open),
            (at, at, GossipMode::Sealed),
            (above, at, GossipMode::Sealed),
            (above, above, GossipMode::Sealed),
        ];
        for (own, fleet, want) in cases {
            assert_eq!(mode_for(own, fleet), want, "own {own}, fleet {fleet}");
        }
    }
}
