//! A sealed datagram captured on the network is accepted once.

use shoal_gossip::DropReason;

use crate::crafted;
use crate::fleet::{DEADLINE, Node, SILENCE, answer, stranger, wait_until};

#[tokio::test]
async fn a_captured_datagram_is_answered_once() {
    // `a` gossips to its seed, where the test listens.
    let sniffer = stranger().await;
    let a = Node::start(0x601, &[sniffer.local_addr().unwrap()], None).await;
    let captured = answer(&sniffer, DEADLINE).await.expect("nothing captured");
    assert_eq!(crafted::message_type(&captured), None, "sent in clear");

    let b = Node::start(0x602, &[], None).await;
    let replayer = stranger().await;
    replayer.send_to(&captured, b.addr).await.unwrap();
    assert!(
        answer(&replayer, DEADLINE).await.is_some(),
        "the first copy is fresh and gets an answer"
    );
    replayer.send_to(&captured, b.addr).await.unwrap();
    assert!(
        answer(&replayer, SILENCE).await.is_none(),
        "a replay was answered"
    );
    // From another address it is the same datagram.
    sniffer.send_to(&captured, b.addr).await.unwrap();
    wait_until("both replays counted", || {
        b.gossip.dropped_datagrams().get(DropReason::Replayed) == 2
    })
    .await;
    assert_eq!(b.gossip.dropped_datagrams().total(), 2);
    for node in [a, b] {
        node.gossip.shutdown().await;
    }
}
