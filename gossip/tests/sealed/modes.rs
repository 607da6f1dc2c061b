//! Moving a fleet to sealed gossip one machine at a time: nodes in `Plain` mode (a build
//! without sealing), `Open` and `Sealed` mode keep hearing each other through every step,
//! and a newcomer in `Open` mode joins a fleet that seals as well as one that does not.

use std::time::Duration;

use shoal_gossip::{DropReason, GossipMode};
use tokio::time::sleep;

use crate::fleet::{Node, wait_all_live, wait_for_newer_seq, wait_until};

/// Waits until every node hears a newer announcement of every other.
async fn all_hear_each_other(nodes: &[&Node]) {
    for observer in nodes {
        for other in nodes {
            if observer.id != other.id {
                let seq = observer.live_seq(other.id).unwrap_or(0);
                wait_for_newer_seq(observer, other.id, seq + 2).await;
            }
        }
    }
}

#[tokio::test]
async fn a_fleet_moves_to_sealed_gossip_one_node_at_a_time() {
    let a = Node::start_in(0x801, &[], None, GossipMode::Plain).await;
    let b = Node::start_in(0x802, &[a.addr], None, GossipMode::Plain).await;
    let c = Node::start_in(0x803, &[a.addr], None, GossipMode::Plain).await;
    let nodes = [&a, &b, &c];
    wait_all_live(&nodes).await;

    // Upgraded one by one (an upgraded node reads both forms until its fleet seals)...
    for node in nodes {
        node.gossip.set_mode(GossipMode::Open);
        all_hear_each_other(&nodes).await;
    }
    // ...then each seals as it learns the fleet does, a moment apart.
    for node in nodes {
        node.gossip.set_mode(GossipMode::Sealed);
        sleep(Duration::from_millis(100)).await;
    }
    all_hear_each_other(&nodes).await;

    // Once all seal, nothing more is dropped, and plain chitchat no longer gets in.
    let before: Vec<u64> = nodes
        .iter()
        .map(|n| n.gossip.dropped_datagrams().total())
        .collect();
    all_hear_each_other(&nodes).await;
    for (node, before) in nodes.iter().zip(before) {
        let dropped = node.gossip.dropped_datagrams();
        assert_eq!(dropped.total(), before, "{:?}: {dropped:?}", node.id);
        assert_eq!(node.gossip.mode(), GossipMode::Sealed);
        assert_eq!(dropped.get(DropReason::BadTag), 0);
    }
    for node in [a, b, c] {
        node.gossip.shutdown().await;
    }
}

#[tokio::test]
async fn a_node_that_seals_and_one_that_cannot_never_meet() {
    let sealed = Node::start_in(0x811, &[], None, GossipMode::Sealed).await;
    let plain = Node::start_in(0x812, &[sealed.addr], None, GossipMode::Plain).await;
    wait_until("the sealed node dropping plain datagrams", || {
        sealed.gossip.dropped_datagrams().get(DropReason::Plain) > 0
    })
    .await;
    sleep(Duration::from_millis(500)).await;
    assert_eq!(sealed.view(), [(sealed.id, true)]);
    assert_eq!(plain.view(), [(plain.id, true)]);
    for node in [sealed, plain] {
        node.gossip.shutdown().await;
    }
}

#[tokio::test]
async fn a_newcomer_in_open_mode_joins_a_fleet_that_seals_and_one_that_does_not() {
    let a = Node::start_in(0x821, &[], None, GossipMode::Sealed).await;
    let b = Node::start_in(0x822, &[a.addr], None, GossipMode::Sealed).await;
    let joins_sealed = Node::start_in(0x823, &[a.addr], None, GossipMode::Open).await;
    wait_all_live(&[&a, &b, &joins_sealed]).await;
    all_hear_each_other(&[&a, &b, &joins_sealed]).await;
    // Its first datagrams went out in both forms; the sealed fleet dropped the plain copy.
    assert!(a.gossip.dropped_datagrams().get(DropReason::Plain) > 0);

    let p = Node::start_in(0x831, &[], None, GossipMode::Plain).await;
    let q = Node::start_in(0x832, &[p.addr], None, GossipMode::Plain).await;
    let joins_plain = Node::start_in(0x833, &[p.addr], None, GossipMode::Open).await;
    wait_all_live(&[&p, &q, &joins_plain]).await;
    all_hear_each_other(&[&p, &q, &joins_plain]).await;
    // There, chitchat's decoder could not read the sealed copy, as on an older build.
    assert!(p.gossip.dropped_datagrams().get(DropReason::Undecodable) > 0);
    for node in [a, b, joins_sealed, p, q, joins_plain] {
        node.gossip.shutdown().await;
    }
}
