//! A holder of the fleet key sending what would stop a bare chitchat node: each datagram
//! opens, is read against the bounds, and is dropped before chitchat sees it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shoal_gossip::datagram;
use shoal_gossip::{ClusterKey, DropReason, GossipKeyring};

use crate::crafted::{self, SYN_ACK};
use crate::fleet::{
    CLUSTER, DEADLINE, Node, SECRET, answer, stranger, wait_all_live, wait_for_newer_seq,
    wait_until,
};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn a_member_cannot_crash_a_node_or_fill_its_state() {
    let a = Node::start(0x601, &[], None).await;
    let b = Node::start(0x602, &[a.addr], None).await;
    wait_all_live(&[&a, &b]).await;
    let a_id = a.gossip.chitchat_id().clone();
    let members = a.gossip.members().await;
    let view = a.view();

    let fleet = GossipKeyring::from_cluster_key(&ClusterKey::from_secret(SECRET).unwrap());
    let sealed =
        |body: &[u8]| datagram::seal(fleet.current(), rand::random(), now_ms(), body).unwrap();
    let attempts = [
        (
            "Ack near u64::MAX for a's own state",
            crafted::ack(&a_id, u64::MAX),
        ),
        ("Ack one below u64::MAX", crafted::ack(&a_id, u64::MAX - 1)),
        ("1,000 made-up nodes", crafted::syn(CLUSTER, "a", 1_000)),
        ("1,000 more", crafted::syn(CLUSTER, "b", 1_000)),
    ];
    let member = stranger().await;
    for (what, body) in &attempts {
        member.send_to(&sealed(body), a.addr).await.unwrap();
        assert!(
            answer(&member, Duration::from_millis(200)).await.is_none(),
            "{what} was answered"
        );
    }
    wait_until("every attempt counted", || {
        a.gossip.dropped_datagrams().get(DropReason::OutOfBounds) == attempts.len() as u64
    })
    .await;

    // Made-up nodes 200 at a time: they add up, so two batches pass and the third would
    // bring chitchat past 512 node states.
    let mut passed = 0;
    for batch in ["c", "d", "e"] {
        member
            .send_to(&sealed(&crafted::syn(CLUSTER, batch, 200)), a.addr)
            .await
            .unwrap();
        if answer(&member, DEADLINE / 5).await.is_some() {
            passed += 1;
        }
    }
    assert_eq!(
        passed, 2,
        "two batches of 200 fit under 512 node states, not three"
    );
    assert_eq!(a.gossip.dropped_datagrams().get(DropReason::OutOfBounds), 5);

    // Still answering, still writing its own state, and b never saw a thing.
    member
        .send_to(&sealed(&crafted::syn(CLUSTER, "", 0)), a.addr)
        .await
        .unwrap();
    let reply = answer(&member, DEADLINE).await.expect("no answer");
    let opened = datagram::open(&fleet, &reply).expect("the answer is sealed");
    assert_eq!(crafted::message_type(&opened.body), Some(SYN_ACK));
    let seq = b.live_seq(a.id).unwrap();
    wait_for_newer_seq(&b, a.id, seq + 3).await;
    let held = a.gossip.members().await;
    assert_eq!(
        held.len(),
        members.len() + 400,
        "only the two batches let in are kept"
    );
    assert_eq!(a.view(), view, "made-up nodes are never live peers");
    for node in [a, b] {
        node.gossip.shutdown().await;
    }
}
