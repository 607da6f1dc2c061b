//! The sealing socket on loopback: both forms, each mode, drops by reason.

use super::*;
use crate::bounds::tests::Wire;
use crate::keyring::GossipKey;

const WINDOW: Duration = Duration::from_secs(30);

fn ring() -> GossipKeyring {
    GossipKeyring::new(GossipKey::from_secret(1, "fleet").unwrap())
}

async fn socket_in(mode: GossipMode) -> (SealedSocket, SocketAddr, Arc<DropCounters>) {
    let (wire, addr) = bind_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (_, keyring) = watch::channel(ring());
    let (_, mode) = watch::channel(mode);
    let (_, held) = watch::channel(Arc::new(HashSet::new()));
    let drops = Arc::new(DropCounters::default());
    let socket = SealedSocket::open(wire, keyring, mode, held, drops.clone(), WINDOW)
        .await
        .unwrap();
    (socket, addr, drops)
}

async fn sealed_socket() -> (SealedSocket, SocketAddr, Arc<DropCounters>) {
    socket_in(GossipMode::Sealed).await
}

async fn raw() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

fn sealed(body: &[u8]) -> Vec<u8> {
    datagram::seal(ring().current(), rand::random(), now_ms(), body).unwrap()
}

async fn recv(socket: &mut SealedSocket) -> RecvOutcome {
    time::timeout(Duration::from_secs(5), socket.recv())
        .await
        .expect("nothing received")
        .unwrap()
}

fn bad_cluster() -> ChitchatEnvelope {
    ChitchatEnvelope {
        version: ProtocolVersion::V0,
        message: ChitchatMessage::BadCluster,
    }
}

#[tokio::test]
async fn envelopes_cross_sealed_and_arrive_from_their_sender() {
    let (mut a, a_addr, _) = sealed_socket().await;
    let (mut b, b_addr, b_drops) = sealed_socket().await;
    let syn = ChitchatEnvelope {
        version: ProtocolVersion::V0,
        message: ChitchatMessage::Syn {
            cluster_id: "fleet".into(),
            digest: Default::default(),
        },
    };
    let sent = a.send(b_addr, syn).await.unwrap();
    let got = recv(&mut b).await;
    assert_eq!(got.from_addr, a_addr);
    assert!(matches!(
        got.envelope.message,
        ChitchatMessage::Syn { ref cluster_id, .. } if cluster_id == "fleet"
    ));
    assert_eq!(
        sent.num_bytes_sent,
        got.num_bytes_received + datagram::OVERHEAD
    );
    b.send(a_addr, bad_cluster()).await.unwrap();
    assert_eq!(recv(&mut a).await.from_addr, b_addr);
    assert_eq!(b_drops.snapshot().total(), 0);
}

#[tokio::test]
async fn a_sealed_body_chitchat_cannot_decode_is_counted_and_skipped() {
    let (mut node, addr, drops) = sealed_socket().await;
    let (peer, peer_addr) = raw().await;
    peer.send_to(&sealed(b"not chitchat"), addr).await.unwrap();
    peer.send_to(&sealed(&node.marker), addr).await.unwrap();
    let got = recv(&mut node).await;
    assert_eq!(got.from_addr, peer_addr);
    assert_eq!(got.envelope, bad_cluster());
    assert_eq!(drops.snapshot().get(DropReason::Undecodable), 1);
    assert_eq!(drops.snapshot().total(), 1);
}

#[tokio::test]
async fn what_a_local_process_sends_to_the_decoder_is_dropped() {
    let (mut node, addr, drops) = sealed_socket().await;
    let codec_addr = node.codec.local_addr().unwrap();
    let (local, _) = raw().await;
    let (peer, peer_addr) = raw().await;
    local.send_to(&node.marker, codec_addr).await.unwrap();
    peer.send_to(&sealed(&node.marker), addr).await.unwrap();
    let got = recv(&mut node).await;
    assert_eq!(got.from_addr, peer_addr);
    assert_eq!(drops.snapshot().get(DropReason::Stray), 1);
}

#[tokio::test]
async fn unsealed_and_replayed_datagrams_never_reach_chitchat() {
    let (mut node, addr, drops) = sealed_socket().await;
    let (peer, peer_addr) = raw().await;
    let once = sealed(&node.marker);
    peer.send_to(&node.marker, addr).await.unwrap();
    peer.send_to(&once, addr).await.unwrap();
    peer.send_to(&once, addr).await.unwrap();
    assert_eq!(recv(&mut node).await.from_addr, peer_addr);
    let nothing = time::timeout(Duration::from_millis(200), node.recv()).await;
    assert!(nothing.is_err(), "a second envelope came through");
    let drops = drops.snapshot();
    assert_eq!(drops.get(DropReason::Plain), 1);
    assert_eq!(drops.get(DropReason::Replayed), 1);
}

/// The next datagram `socket` receives, raw.
async fn raw_recv(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0; MAX_DATAGRAM];
    let (len, _) = time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("nothing received")
        .unwrap();
    buf.truncate(len);
    buf
}

#[tokio::test]
async fn an_open_socket_reads_both_forms_and_answers_each_peer_in_its_own() {
    let (mut node, addr, drops) = socket_in(GossipMode::Open).await;
    let (plain_peer, plain_addr) = raw().await;
    let (sealed_peer, sealed_addr) = raw().await;
    let (stranger, stranger_addr) = raw().await;

    plain_peer.send_to(&node.marker, addr).await.unwrap();
    assert_eq!(recv(&mut node).await.from_addr, plain_addr);
    sealed_peer
        .send_to(&sealed(&node.marker), addr)
        .await
        .unwrap();
    assert_eq!(recv(&mut node).await.from_addr, sealed_addr);

    node.send(plain_addr, bad_cluster()).await.unwrap();
    assert_eq!(raw_recv(&plain_peer).await, node.marker);
    node.send(sealed_addr, bad_cluster()).await.unwrap();
    let opened = datagram::open(&ring(), &raw_recv(&sealed_peer).await).unwrap();
    assert_eq!(opened.body, node.marker);
    // Not heard from yet: both forms, plain first.
    let sent = node.send(stranger_addr, bad_cluster()).await.unwrap();
    assert_eq!(raw_recv(&stranger).await, node.marker);
    let opened = datagram::open(&ring(), &raw_recv(&stranger).await).unwrap();
    assert_eq!(opened.body, node.marker);
    assert_eq!(
        sent.num_bytes_sent,
        2 * node.marker.len() + datagram::OVERHEAD
    );
    assert_eq!(drops.snapshot().total(), 0);
}

#[tokio::test]
async fn a_plain_socket_is_a_build_without_sealing() {
    let (mut node, addr, drops) = socket_in(GossipMode::Plain).await;
    let (peer, peer_addr) = raw().await;
    peer.send_to(&sealed(&node.marker), addr).await.unwrap();
    peer.send_to(&node.marker, addr).await.unwrap();
    assert_eq!(recv(&mut node).await.from_addr, peer_addr);
    // The sealed one reached chitchat's decoder, which could not read it.
    assert_eq!(drops.snapshot().get(DropReason::Undecodable), 1);
    assert_eq!(drops.snapshot().total(), 1);
    // Even to a peer that sent sealed, it sends plain.
    node.send(peer_addr, bad_cluster()).await.unwrap();
    assert_eq!(raw_recv(&peer).await, node.marker);
}

#[tokio::test]
async fn the_mode_changes_with_the_next_datagram() {
    let (wire, addr) = bind_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (_, keyring) = watch::channel(ring());
    let (mode_tx, mode) = watch::channel(GossipMode::Open);
    let (_, held) = watch::channel(Arc::new(HashSet::new()));
    let drops = Arc::new(DropCounters::default());
    let mut node = SealedSocket::open(wire, keyring, mode, held, drops.clone(), WINDOW)
        .await
        .unwrap();
    let (peer, peer_addr) = raw().await;
    peer.send_to(&node.marker, addr).await.unwrap();
    assert_eq!(recv(&mut node).await.from_addr, peer_addr);

    mode_tx.send_replace(GossipMode::Sealed);
    peer.send_to(&node.marker, addr).await.unwrap();
    peer.send_to(&sealed(&node.marker), addr).await.unwrap();
    assert_eq!(recv(&mut node).await.from_addr, peer_addr);
    assert_eq!(drops.snapshot().get(DropReason::Plain), 1);
    // It spoke plain last, but a sealed node sends sealed only.
    node.send(peer_addr, bad_cluster()).await.unwrap();
    let opened = datagram::open(&ring(), &raw_recv(&peer).await).unwrap();
    assert_eq!(opened.body, node.marker);
}

#[tokio::test]
async fn a_sealed_ack_out_of_bounds_is_dropped_and_the_next_message_arrives() {
    let (mut node, addr, drops) = sealed_socket().await;
    let (peer, peer_addr) = raw().await;
    // An Ack whose one key carries a version near u64::MAX, sealed with the fleet key.
    let mut ops = Wire::default();
    ops.node_op("a").kv_op("shoal.announce", u64::MAX - 1);
    let ack = Wire::ack(&ops);
    peer.send_to(&sealed(&ack), addr).await.unwrap();
    peer.send_to(&sealed(&node.marker), addr).await.unwrap();

    let outcome = recv(&mut node).await;
    assert_eq!(outcome.from_addr, peer_addr);
    assert!(matches!(
        outcome.envelope.message,
        ChitchatMessage::BadCluster
    ));
    assert_eq!(drops.snapshot().get(DropReason::OutOfBounds), 1);
}
