//! Rotating the gossip key on a running fleet, in the three steps `keyring` describes.

use shoal_gossip::{DropReason, GossipKeyring};

use crate::fleet::{Node, SECRET, key, wait_all_live, wait_for_newer_seq, wait_until};

#[tokio::test]
async fn two_nodes_keep_gossiping_across_a_key_rotation() {
    let old = GossipKeyring::new(key(1, SECRET));
    let new = key(2, "the next secret");
    let a = Node::start(0x701, &[], Some(old.clone())).await;
    let b = Node::start(0x702, &[a.addr], Some(old.clone())).await;
    // `c` never rotates.
    let c = Node::start(0x703, &[a.addr], Some(old.clone())).await;
    wait_all_live(&[&a, &b, &c]).await;

    let steps = [
        old.accepting(new.clone()).unwrap(),
        old.rotate_to(new.clone()).unwrap(),
        GossipKeyring::new(new.clone()),
    ];
    for (step, ring) in steps.iter().enumerate() {
        a.gossip.set_keyring(ring.clone());
        b.gossip.set_keyring(ring.clone());
        assert_eq!(a.gossip.keyring(), *ring);
        // They keep hearing each other.
        let a_seq = b.live_seq(a.id).unwrap();
        let b_seq = a.live_seq(b.id).unwrap();
        wait_for_newer_seq(&b, a.id, a_seq + 3).await;
        wait_for_newer_seq(&a, b.id, b_seq + 3).await;
        if step < 2 {
            // Until the old key is dropped, not one datagram was lost, c's included.
            for node in [&a, &b] {
                let dropped = node.gossip.dropped_datagrams();
                assert_eq!(dropped.total(), 0, "step {}: {dropped:?}", step + 1);
            }
        }
    }

    // The key in use really changed: `c` cannot open what they send now, and they no
    // longer open what `c` sends. Between themselves, no tag ever failed.
    wait_until("c dropping the new generation", || {
        c.gossip
            .dropped_datagrams()
            .get(DropReason::UnknownGeneration)
            > 0
    })
    .await;
    wait_until("a dropping the old generation", || {
        a.gossip
            .dropped_datagrams()
            .get(DropReason::UnknownGeneration)
            > 0
    })
    .await;
    for node in [&a, &b] {
        assert_eq!(node.gossip.dropped_datagrams().get(DropReason::BadTag), 0);
    }
    for node in [a, b, c] {
        node.gossip.shutdown().await;
    }
}
