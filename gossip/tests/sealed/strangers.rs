//! A stranger on the network, with no key or the wrong one: the datagrams that stop a bare
//! chitchat node get no answer from a sealed one, change nothing, and are counted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shoal_gossip::datagram;
use shoal_gossip::keyring::DEFAULT_GENERATION;
use shoal_gossip::{ClusterKey, DropReason, GossipKey, GossipKeyring};

use crate::crafted::{self, SYN_ACK, bare_chitchat};
use crate::fleet::{
    CLUSTER, DEADLINE, Node, SECRET, SILENCE, answer, key, stranger, wait_all_live,
    wait_for_newer_seq, wait_until,
};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn the_crafted_datagrams_break_a_bare_chitchat_node() {
    let (bare, id) = bare_chitchat(CLUSTER).await;
    let addr = id.gossip_advertise_addr;
    let stranger = stranger().await;
    let chitchat = bare.chitchat();

    // One Syn reads what it publishes.
    stranger
        .send_to(&crafted::syn(CLUSTER, "", 0), addr)
        .await
        .unwrap();
    let reply = answer(&stranger, DEADLINE).await.expect("no answer");
    assert_eq!(crafted::message_type(&reply), Some(SYN_ACK));

    // An Ack makes it take a version near u64::MAX for its own state: its next write of
    // its own state overflows.
    stranger
        .send_to(&crafted::ack(&id, u64::MAX), addr)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let max_version = chitchat
            .lock()
            .await
            .node_state(&id)
            .map(|s| s.max_version());
        if max_version == Some(u64::MAX) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{max_version:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Two digests of made-up nodes: it keeps them all, its own digest no longer fits a
    // reply, and its gossip loop panics (`mtu >= 100`).
    stranger
        .send_to(&crafted::syn(CLUSTER, "a", 1_000), addr)
        .await
        .unwrap();
    assert!(answer(&stranger, DEADLINE).await.is_some());
    stranger
        .send_to(&crafted::syn(CLUSTER, "b", 1_000), addr)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while chitchat.lock().await.node_states().len() <= 2_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the nodes were not kept"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stranger
        .send_to(&crafted::syn(CLUSTER, "", 0), addr)
        .await
        .unwrap();
    assert!(
        answer(&stranger, SILENCE).await.is_none(),
        "the bare node still answers"
    );
    let _ = bare.shutdown().await;
}

#[tokio::test]
async fn a_stranger_gets_no_answer_and_changes_nothing() {
    let a = Node::start(0x501, &[], None).await;
    let b = Node::start(0x502, &[a.addr], None).await;
    wait_all_live(&[&a, &b]).await;
    let a_id = a.gossip.chitchat_id().clone();
    let members = a.gossip.members().await;
    let view = a.view();

    let fleet = GossipKeyring::from_cluster_key(&ClusterKey::from_secret(SECRET).unwrap());
    let wrong = GossipKey::derive(
        DEFAULT_GENERATION,
        &ClusterKey::from_secret("guessed").unwrap(),
    );
    let sealed = |key: &GossipKey, sent_ms: u64, body: &[u8]| {
        datagram::seal(key, rand::random(), sent_ms, body).unwrap()
    };
    let syn = crafted::syn(CLUSTER, "", 0);
    let now = now_ms();
    let mut cut_short = sealed(fleet.current(), now, &syn);
    cut_short.pop();
    let garbage: Vec<u8> = (0..512u32).map(|i| (i * 37 % 251) as u8).collect();

    let attempts: [(&str, Vec<u8>, DropReason); 13] = [
        ("empty", Vec::new(), DropReason::Malformed),
        ("garbage", garbage, DropReason::Malformed),
        ("plain Syn", syn.clone(), DropReason::Plain),
        ("truncated Syn", syn[..5].to_vec(), DropReason::Plain),
        (
            "Ack near u64::MAX",
            crafted::ack(&a_id, u64::MAX),
            DropReason::Plain,
        ),
        (
            "made-up nodes",
            crafted::syn(CLUSTER, "a", 1_000),
            DropReason::Plain,
        ),
        (
            "more made-up nodes",
            crafted::syn(CLUSTER, "b", 1_000),
            DropReason::Plain,
        ),
        ("sealed, cut short", cut_short, DropReason::BadTag),
        (
            "Syn, wrong key",
            sealed(&wrong, now, &syn),
            DropReason::BadTag,
        ),
        (
            "Ack, wrong key",
            sealed(&wrong, now, &crafted::ack(&a_id, u64::MAX)),
            DropReason::BadTag,
        ),
        (
            "unknown generation",
            sealed(&key(7, SECRET), now, &syn),
            DropReason::UnknownGeneration,
        ),
        (
            "a minute old",
            sealed(fleet.current(), now - 60_000, &syn),
            DropReason::Stale,
        ),
        (
            "a minute ahead",
            sealed(fleet.current(), now + 60_000, &syn),
            DropReason::Stale,
        ),
    ];
    let stranger = stranger().await;
    for (what, bytes, _) in &attempts {
        stranger.send_to(bytes, a.addr).await.unwrap();
        assert!(
            answer(&stranger, Duration::from_millis(100))
                .await
                .is_none(),
            "{what} was answered"
        );
    }
    assert!(answer(&stranger, SILENCE).await.is_none());
    wait_until("every attempt counted", || {
        a.gossip.dropped_datagrams().total() == attempts.len() as u64
    })
    .await;
    let dropped = a.gossip.dropped_datagrams();
    for reason in DropReason::ALL {
        let want = attempts.iter().filter(|(_, _, r)| *r == reason).count() as u64;
        assert_eq!(dropped.get(reason), want, "{}: {dropped:?}", reason.name());
    }

    // The same socket, sending the same Syn sealed with the fleet key, is answered: only the
    // key made the difference.
    stranger
        .send_to(&sealed(fleet.current(), now_ms(), &syn), a.addr)
        .await
        .unwrap();
    let reply = answer(&stranger, DEADLINE).await.expect("no answer");
    let opened = datagram::open(&fleet, &reply).expect("the answer is sealed");
    assert_eq!(crafted::message_type(&opened.body), Some(SYN_ACK));

    // Nothing changed: the same members and view, and `a` still writes its own state (after
    // the crafted Ack, its next write would overflow).
    assert_eq!(a.gossip.members().await, members);
    assert_eq!(a.view(), view);
    let seq = b.live_seq(a.id).unwrap();
    wait_for_newer_seq(&b, a.id, seq + 3).await;
    assert_eq!(b.gossip.dropped_datagrams().total(), 0);
    for node in [a, b] {
        node.gossip.shutdown().await;
    }
}
