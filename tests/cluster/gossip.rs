//! Sealed gossip in a live fleet: a fleet upgraded from protocol level 4 gossips through
//! every step and seals its gossip once the leader raises it to level 5; from then a
//! stranger's plain chitchat `Syn` gets no answer and shows in `/metrics`, while the nodes go
//! on gossiping with each other.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_daemon::testsuite::{Cluster, init_logs, wait_until};
use shoal_protocol::levels::SEALED_GOSSIP_LEVEL;
use shoal_protocol::{MachineId, MachineStatus, ProtocolLevel};
use tokio::net::UdpSocket;

use crate::metrics::{must, promtool_check, scrape};

/// The level before sealed gossip.
const OLD: ProtocolLevel = ProtocolLevel(SEALED_GOSSIP_LEVEL.0 - 1);
/// The chitchat cluster id every Shoal node gossips under.
const CLUSTER_ID: &str = "shoal";
const PLAIN_DROPS: &str = "shoal_gossip_datagrams_dropped_total{reason=\"plain\"}";

/// A plain chitchat 0.13 `Syn` as a stranger sends it: magic number 45139 (little-endian),
/// protocol version 0, message type 0, an empty digest (a u16 count), then the cluster id
/// (a u16 length and its bytes). A node that reads it answers with everything it gossips.
fn plain_syn() -> Vec<u8> {
    let mut syn = 45_139u16.to_le_bytes().to_vec();
    syn.extend([0, 0]);
    syn.extend(0u16.to_le_bytes());
    syn.extend((CLUSTER_ID.len() as u16).to_le_bytes());
    syn.extend(CLUSTER_ID.as_bytes());
    syn
}

/// Whether `bytes` is a plain chitchat `SynAck`.
fn is_plain_syn_ack(bytes: &[u8]) -> bool {
    bytes.len() > 4 && bytes[..2] == 45_139u16.to_le_bytes() && bytes[3] == 1
}

fn gossip_addr(cluster: &Cluster, i: usize) -> SocketAddr {
    let addr = cluster.node(i).info.borrow().addr.gossip_addr.clone();
    addr.parse().expect("a gossip address")
}

/// Sends a plain `Syn` to node `i` from `stranger`; returns the answer, if one comes in
/// `wait`.
async fn ask(stranger: &UdpSocket, cluster: &Cluster, i: usize, wait: Duration) -> Option<Vec<u8>> {
    stranger
        .send_to(&plain_syn(), gossip_addr(cluster, i))
        .await
        .unwrap();
    next_datagram(stranger, wait).await
}

/// The next datagram `stranger` receives within `wait`, if any.
async fn next_datagram(stranger: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0; 65_536];
    let (len, _) = tokio::time::timeout(wait, stranger.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(len);
    Some(buf)
}

/// Waits until every running node hears newer announcements of every other: gossip flows
/// between all of them now.
pub async fn wait_gossiping(cluster: &Cluster) {
    let running = cluster.running();
    let seq = |observer: usize, subject: MachineId| {
        cluster
            .node(observer)
            .peer(subject)
            .filter(|peer| peer.live)
            .map_or(0, |peer| peer.seq)
    };
    let mut pairs = Vec::new();
    for &observer in &running {
        for &subject in &running {
            if observer != subject {
                let id = cluster.node(subject).id;
                pairs.push((observer, id, seq(observer, id)));
            }
        }
    }
    wait_until(
        Duration::from_secs(20),
        "every node hearing newer announcements of every other",
        || {
            pairs
                .iter()
                .all(|(observer, id, before)| seq(*observer, *id) > before + 2)
                .then_some(())
        },
    )
    .await
    .unwrap();
}

/// Waits until `/metrics` of every running node shows gossip in `mode`.
async fn wait_mode(cluster: &Cluster, mode: &str) {
    let series = format!("shoal_gossip_mode{{mode=\"{mode}\"}}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for i in cluster.running() {
        loop {
            let text = scrape(&cluster.api(i)).await;
            if must(&text, &series) == 1.0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {i} not in {mode} mode:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_seals_its_gossip_at_level_5_and_then_ignores_a_strangers_plain_syn() {
    init_logs();
    let mut cluster = Cluster::start_at_level(3, OLD).await.unwrap();
    let ids: Vec<MachineId> = (0..3).map(|i| cluster.node(i).id).collect();
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let patience = Duration::from_secs(5);

    // An older fleet gossips plain chitchat, and answers anyone.
    wait_mode(&cluster, "plain").await;
    let answer = ask(&stranger, &cluster, 0, patience).await;
    assert!(
        answer.as_deref().is_some_and(is_plain_syn_ack),
        "{answer:?}"
    );

    // Upgraded one machine at a time, the fleet keeps gossiping: the new build reads both
    // forms and speaks plain to the old one. It still answers a plain Syn.
    for i in [0, 1] {
        cluster.upgrade(i).await.unwrap();
        wait_gossiping(&cluster).await;
    }
    for i in [0, 1] {
        let text = scrape(&cluster.api(i)).await;
        assert_eq!(
            must(&text, "shoal_gossip_mode{mode=\"open\"}"),
            1.0,
            "{text}"
        );
    }
    let text = scrape(&cluster.api(2)).await;
    assert_eq!(
        must(&text, "shoal_gossip_mode{mode=\"plain\"}"),
        1.0,
        "{text}"
    );
    assert!(
        cluster.node(0).fleet.read(|s| s.fleet_level == OLD),
        "the fleet's level rose with an old member"
    );
    let answer = ask(&stranger, &cluster, 0, patience).await;
    assert!(
        answer.as_deref().is_some_and(is_plain_syn_ack),
        "{answer:?}"
    );

    // The last one is upgraded: the leader raises the fleet to level 5 and every node
    // seals, still gossiping with the others.
    cluster.upgrade(2).await.unwrap();
    cluster
        .wait_every_replica(
            Duration::from_secs(20),
            "the fleet at level 5 on every node",
            |s| s.fleet_level >= SEALED_GOSSIP_LEVEL,
        )
        .await
        .unwrap();
    wait_mode(&cluster, "sealed").await;
    wait_gossiping(&cluster).await;

    // A stranger's plain Syn gets no answer now, and each one is counted.
    let before = must(&scrape(&cluster.api(0)).await, PLAIN_DROPS);
    let sent = 3;
    for _ in 0..sent {
        let answer = ask(&stranger, &cluster, 0, Duration::from_millis(500)).await;
        assert_eq!(answer, None, "a sealed node answered a plain Syn");
    }
    assert_eq!(next_datagram(&stranger, Duration::from_secs(1)).await, None);
    let text = scrape(&cluster.api(0)).await;
    assert_eq!(must(&text, PLAIN_DROPS), before + f64::from(sent), "{text}");
    promtool_check(&text);

    // The node was able to answer all along: it goes on gossiping with its peers, and
    // every machine stays ONLINE everywhere past the time that would make it OFFLINE.
    wait_gossiping(&cluster).await;
    tokio::time::sleep(cluster.node(0).config.timings.offline_after).await;
    for i in cluster.running() {
        for id in &ids {
            assert_eq!(
                cluster.status_seen(i, *id),
                Some(MachineStatus::Online),
                "node {i} sees {id}"
            );
        }
    }
    cluster.shutdown().await;
}
