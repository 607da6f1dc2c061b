//! The bounds against messages chitchat encodes, and against the crafted ones that would
//! stop a node.

use std::net::{Ipv4Addr, SocketAddr};

use chitchat::transport::{Socket, UdpSocket as ChitchatUdp};
use chitchat::{ChitchatEnvelope, ChitchatMessage, ProtocolVersion};
use proptest::prelude::*;

use super::*;

/// Writes messages in chitchat 0.13's layout, as a peer holding the fleet key could.
#[derive(Default)]
pub(crate) struct Wire(pub(crate) Vec<u8>);

impl Wire {
    /// An Ack carrying `ops`.
    pub(crate) fn ack(ops: &Wire) -> Vec<u8> {
        let mut wire = Wire::header(2);
        wire.stream(ops);
        wire.0
    }

    pub(crate) fn header(kind: u8) -> Self {
        let mut wire = Wire::default();
        wire.u16(MAGIC).u8(0).u8(kind);
        wire
    }
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        self.u16(s.len() as u16);
        self.0.extend(s.as_bytes());
        self
    }
    pub(crate) fn id(&mut self, node: &str) -> &mut Self {
        self.str(node).u64(1).u8(4).0.extend([127, 0, 0, 1]);
        self.u16(7000)
    }
    /// A V0 digest naming `nodes`, each at `version`.
    pub(crate) fn digest(&mut self, nodes: &[String], version: u64) -> &mut Self {
        self.u16(nodes.len() as u16);
        for node in nodes {
            self.id(node).u64(1).u64(0).u64(version);
        }
        self
    }
    /// A stream of one uncompressed block holding `ops`.
    pub(crate) fn stream(&mut self, ops: &Wire) -> &mut Self {
        self.u8(2).u16(ops.0.len() as u16);
        self.0.extend(&ops.0);
        self.u8(0)
    }
    pub(crate) fn node_op(&mut self, node: &str) -> &mut Self {
        self.u8(0).id(node).u64(0).u64(0)
    }
    pub(crate) fn kv_op(&mut self, key: &str, version: u64) -> &mut Self {
        self.u8(1).str(key).str("value").u64(version).u8(0)
    }
    pub(crate) fn max_op(&mut self, version: u64) -> &mut Self {
        self.u8(2).u64(version)
    }
}

fn cap() -> (watch::Sender<Arc<HashSet<ChitchatId>>>, NodeCap) {
    let (held, rx) = watch::channel(Arc::new(HashSet::new()));
    (held, NodeCap::new(rx))
}

fn nodes(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i:012}")).collect()
}

/// Chitchat's own encoding of `envelope`, through its UDP socket on loopback.
async fn encoded(envelope: ChitchatEnvelope) -> Vec<u8> {
    let mut codec = ChitchatUdp::open((Ipv4Addr::LOCALHOST, 0).into())
        .await
        .unwrap();
    let sink = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    codec
        .send(sink.local_addr().unwrap(), envelope)
        .await
        .unwrap();
    let mut buf = vec![0; 65_536];
    let len = sink.recv(&mut buf).await.unwrap();
    buf.truncate(len);
    buf
}

fn chitchat_id(node: &str) -> ChitchatId {
    ChitchatId::new(
        node.to_string(),
        1,
        SocketAddr::from((Ipv4Addr::LOCALHOST, 7000)),
    )
}

#[tokio::test]
async fn chitchats_own_syns_pass_in_both_digest_formats() {
    for version in [ProtocolVersion::V0, ProtocolVersion::V1] {
        let message = ChitchatMessage::Syn {
            cluster_id: "fleet".into(),
            digest: Default::default(),
        };
        let body = encoded(ChitchatEnvelope { version, message }).await;
        let (_held, mut cap) = cap();
        assert_eq!(
            check(&body, &mut cap, Instant::now()),
            Ok(()),
            "{version:?}"
        );
    }
}

#[test]
fn a_compressed_digest_names_its_nodes() {
    let mut entries = Wire::default();
    for node in ["a", "b", "c"] {
        entries.id(node).u64(7).u64(0).u64(42);
    }
    let block = zstd::bulk::compress(&entries.0, 3).unwrap();
    let mut syn = Wire::default();
    syn.u16(MAGIC).u8(1).u8(0).u8(1).u16(block.len() as u16);
    syn.0.extend(&block);
    syn.u8(0).str("fleet");
    let (_held, mut cap) = cap();
    assert_eq!(check(&syn.0, &mut cap, Instant::now()), Ok(()));
    let named: HashSet<ChitchatId> = cap.let_in.keys().cloned().collect();
    assert_eq!(named, ["a", "b", "c"].map(chitchat_id).into());
}

#[tokio::test]
async fn chitchats_own_empty_acks_and_bad_cluster_pass() {
    let (_held, mut cap) = cap();
    for message in [
        ChitchatMessage::Ack {
            delta: Default::default(),
        },
        ChitchatMessage::SynAck {
            digest: Default::default(),
            delta: Default::default(),
        },
        ChitchatMessage::BadCluster,
    ] {
        let body = encoded(ChitchatEnvelope {
            version: ProtocolVersion::V0,
            message,
        })
        .await;
        assert_eq!(check(&body, &mut cap, Instant::now()), Ok(()));
    }
}

#[test]
fn a_delta_as_peers_send_it_passes() {
    let mut ops = Wire::default();
    ops.node_op("a")
        .kv_op("shoal.announce", 3)
        .kv_op("shoal.other", 5)
        .node_op("b")
        .max_op(9);
    let (_held, mut cap) = cap();
    assert_eq!(check(&Wire::ack(&ops), &mut cap, Instant::now()), Ok(()));
}

#[test]
fn a_version_near_u64_max_is_refused_wherever_it_is() {
    let (_held, mut cap) = cap();
    let near_max = u64::MAX - 1;
    let mut kv = Wire::default();
    kv.node_op("a").kv_op("shoal.announce", near_max);
    let mut max = Wire::default();
    max.node_op("a").max_op(near_max);
    let mut syn = Wire::header(0);
    syn.digest(&nodes("n", 1), near_max).str("fleet");
    for body in [Wire::ack(&kv), Wire::ack(&max), syn.0] {
        assert_eq!(
            check(&body, &mut cap, Instant::now()),
            Err(Breach::VersionTooHigh)
        );
    }
    let mut at_bound = Wire::default();
    at_bound.node_op("a").kv_op("shoal.announce", MAX_VERSION);
    assert_eq!(
        check(&Wire::ack(&at_bound), &mut cap, Instant::now()),
        Ok(())
    );
}

#[test]
fn a_max_version_below_the_keys_is_refused() {
    let mut ops = Wire::default();
    ops.node_op("a").kv_op("shoal.announce", 100).max_op(5);
    let (_held, mut cap) = cap();
    assert_eq!(
        check(&Wire::ack(&ops), &mut cap, Instant::now()),
        Err(Breach::MaxVersionBelowKeys)
    );
}

#[test]
fn a_digest_of_1800_made_up_nodes_is_refused_and_counts_nothing() {
    let mut syn = Wire::header(0);
    syn.digest(&nodes("fake", 1800), 1).str("fleet");
    let (_held, mut cap) = cap();
    assert_eq!(
        check(&syn.0, &mut cap, Instant::now()),
        Err(Breach::TooManyNodes)
    );
    assert!(cap.let_in.is_empty());
}

#[test]
fn nodes_add_up_across_datagrams_until_chitchat_is_seen_dropping_them() {
    let (held, mut cap) = cap();
    let now = Instant::now();
    let syn = |batch: usize| {
        let mut syn = Wire::header(0);
        syn.digest(&nodes(&format!("b{batch}-"), 200), 1)
            .str("fleet");
        syn.0
    };
    assert_eq!(check(&syn(0), &mut cap, now), Ok(()));
    assert_eq!(check(&syn(1), &mut cap, now), Ok(()));
    // 600 would pass the cap; a node already counted adds nothing.
    assert_eq!(check(&syn(2), &mut cap, now), Err(Breach::TooManyNodes));
    assert_eq!(check(&syn(1), &mut cap, now), Ok(()));

    // Chitchat holds the first batch: still 400 counted.
    let first: HashSet<ChitchatId> = nodes("b0-", 200).iter().map(|n| chitchat_id(n)).collect();
    held.send_replace(Arc::new(first));
    assert_eq!(check(&syn(2), &mut cap, now), Err(Breach::TooManyNodes));

    // The second batch never showed up in chitchat's state: it stops counting in time.
    let later = now + PENDING_FOR;
    assert_eq!(check(&syn(2), &mut cap, later), Ok(()));
}

#[test]
fn keys_that_are_not_shoals_and_too_many_keys_are_refused() {
    let (_held, mut cap) = cap();
    let mut foreign = Wire::default();
    foreign.node_op("a").kv_op("other.key", 1);
    assert_eq!(
        check(&Wire::ack(&foreign), &mut cap, Instant::now()),
        Err(Breach::KeyNotShoals)
    );
    let mut many = Wire::default();
    many.node_op("a");
    for version in 1..=(MAX_KEYS_PER_NODE as u64 + 1) {
        many.kv_op(&format!("shoal.k{version}"), version);
    }
    assert_eq!(
        check(&Wire::ack(&many), &mut cap, Instant::now()),
        Err(Breach::TooManyKeys)
    );
    let mut long_id = Wire::header(0);
    long_id
        .digest(&["x".repeat(MAX_NODE_ID + 1)], 1)
        .str("fleet");
    assert_eq!(
        check(&long_id.0, &mut cap, Instant::now()),
        Err(Breach::NodeIdTooLong)
    );
}

#[test]
fn a_stream_that_expands_past_the_bound_is_refused() {
    // Each block: 64 KiB of zeros in a few dozen compressed bytes.
    let block = zstd::bulk::compress(&vec![0u8; MAX_BLOCK], 3).unwrap();
    let mut wire = Wire::header(2);
    for _ in 0..(MAX_EXPANDED / MAX_BLOCK + 1) {
        wire.u8(1).u16(block.len() as u16);
        wire.0.extend(&block);
    }
    wire.u8(0);
    let (_held, mut cap) = cap();
    assert_eq!(
        check(&wire.0, &mut cap, Instant::now()),
        Err(Breach::TooLarge)
    );
}

#[test]
fn truncated_and_garbage_bodies_are_undecodable() {
    let mut ops = Wire::default();
    ops.node_op("a").kv_op("shoal.announce", 3);
    let whole = Wire::ack(&ops);
    let (_held, mut cap) = cap();
    for len in 0..whole.len() {
        assert_eq!(
            check(&whole[..len], &mut cap, Instant::now()),
            Err(Breach::Undecodable),
            "cut at {len}"
        );
    }
    let mut orphan_key = Wire::default();
    orphan_key.kv_op("shoal.announce", 3);
    assert_eq!(
        check(&Wire::ack(&orphan_key), &mut cap, Instant::now()),
        Err(Breach::Undecodable)
    );
}

proptest! {
    #[test]
    fn any_bytes_are_read_without_a_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let (_held, mut cap) = cap();
        let _ = check(&body, &mut cap, Instant::now());
        let mut framed = Wire::header(2);
        framed.0.extend(&body);
        let _ = check(&framed.0, &mut cap, Instant::now());
    }
}
