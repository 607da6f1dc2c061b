//! Gossip nodes on real UDP sockets (127.0.0.1, OS-assigned ports) finding each other,
//! spreading labels, refusing nodes without the cluster key, and noticing a node leave.
//! Attacks on the sealed datagrams themselves are in `tests/sealed/`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal_gossip::{ClusterKey, DropReason, Gossip, GossipConfig, PeerView, bind_udp};
use shoal_protocol::{Labels, MachineId, MachineInfo};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};

const DEADLINE: Duration = Duration::from_secs(10);

struct Node {
    gossip: Gossip,
    info: watch::Sender<MachineInfo>,
    id: MachineId,
    addr: SocketAddr,
}

impl Node {
    async fn start(id: u64, secret: &str, seeds: &[SocketAddr], zone: &str) -> Node {
        let (socket, addr) = bind_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let id = MachineId(id);
        let key = ClusterKey::from_secret(secret).unwrap();
        let mut config = GossipConfig::new(id, 1, addr, "test-fleet", key);
        config.seeds = seeds.iter().map(ToString::to_string).collect();
        config.gossip_interval = Duration::from_millis(50);
        config.heartbeat_interval = Duration::from_millis(100);
        config.initial_interval = Duration::from_millis(100);
        config.max_interval = Duration::from_secs(2);
        config.dead_node_grace_period = Duration::from_secs(30);
        let info = MachineInfo {
            id,
            name: format!("node-{id}"),
            labels: Labels::from_pairs([format!("zone={zone}").as_str()]).unwrap(),
            max_running: 4,
            ..MachineInfo::default()
        };
        let (info_tx, info_rx) = watch::channel(info);
        let gossip = Gossip::start(config, info_rx, socket).await.unwrap();
        Node {
            gossip,
            info: info_tx,
            id,
            addr,
        }
    }

    fn view(&self, id: MachineId) -> Option<PeerView> {
        let peers = self.gossip.peers();
        peers.borrow().iter().find(|p| p.info.id == id).cloned()
    }
}

/// Waits until `pred` holds for the node's peer view, or panics with the last view.
async fn wait_for(node: &Node, what: &str, pred: impl Fn(&[PeerView]) -> bool) {
    let mut peers = node.gossip.peers();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let current: Arc<Vec<PeerView>> = peers.borrow_and_update().clone();
        if pred(&current) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || timeout(left, peers.changed()).await.is_err() {
            panic!("node {} never saw {what}; its view: {current:#?}", node.id);
        }
    }
}

fn live_zone(peers: &[PeerView], id: MachineId, zone: &str) -> bool {
    peers
        .iter()
        .any(|p| p.info.id == id && p.live && p.info.labels.get("zone") == Some(zone))
}

async fn three_nodes(base: u64, secret: &str) -> [Node; 3] {
    let a = Node::start(base + 1, secret, &[], "a").await;
    let b = Node::start(base + 2, secret, &[a.addr], "b").await;
    let c = Node::start(base + 3, secret, &[a.addr], "c").await;
    [a, b, c]
}

async fn wait_all_live(nodes: &[Node], zones: &[(MachineId, &str)]) {
    for node in nodes {
        wait_for(node, "every node live with its labels", |peers| {
            zones.iter().all(|(id, zone)| live_zone(peers, *id, zone))
        })
        .await;
    }
}

#[tokio::test]
async fn nodes_with_the_same_secret_see_each_other_live_with_labels() {
    let nodes = three_nodes(0x100, "shared").await;
    let zones: Vec<_> = nodes
        .iter()
        .zip(["a", "b", "c"])
        .map(|(n, z)| (n.id, z))
        .collect();
    wait_all_live(&nodes, &zones).await;
    for node in &nodes {
        let peers = node.gossip.peers();
        let peers = peers.borrow();
        assert_eq!(peers.len(), 3, "{peers:#?}");
        assert!(
            peers
                .iter()
                .all(|p| p.heartbeat_age < Duration::from_secs(2))
        );
        assert!(peers.iter().all(|p| p.info.max_running == 4));
    }
    for node in nodes {
        node.gossip.shutdown().await;
    }
}

#[tokio::test]
async fn a_label_change_reaches_the_other_nodes() {
    let nodes = three_nodes(0x200, "shared").await;
    let zones: Vec<_> = nodes
        .iter()
        .zip(["a", "b", "c"])
        .map(|(n, z)| (n.id, z))
        .collect();
    wait_all_live(&nodes, &zones).await;

    let changed = nodes[2].id;
    let seq_before = nodes[0].view(changed).unwrap().seq;
    nodes[2].info.send_modify(|info| {
        info.labels.insert("zone", "moved").unwrap();
        info.draining = true;
    });
    for node in &nodes[..2] {
        wait_for(node, "the new label", |peers| {
            live_zone(peers, changed, "moved")
        })
        .await;
        let seen = node.view(changed).unwrap();
        assert!(seen.info.draining);
        assert!(seen.seq > seq_before);
    }
    for node in nodes {
        node.gossip.shutdown().await;
    }
}

#[tokio::test]
async fn a_node_without_the_secret_is_never_seen_and_sees_no_one() {
    let a = Node::start(0x301, "shared", &[], "a").await;
    let b = Node::start(0x302, "shared", &[a.addr], "b").await;
    let intruder = Node::start(0x303, "guessed", &[a.addr, b.addr], "x").await;
    let intruder_id = intruder.gossip.chitchat_id().clone();
    let good = [&a, &b];

    // The intruder really sends: both honest nodes drop its datagrams, which fail the tag
    // (sealed gossip keeps even its chitchat state out, not only its announcement).
    let deadline = Instant::now() + DEADLINE;
    while !good
        .iter()
        .all(|n| n.gossip.dropped_datagrams().get(DropReason::BadTag) > 0)
    {
        assert!(
            Instant::now() < deadline,
            "the honest nodes never dropped the intruder's datagrams"
        );
        sleep(Duration::from_millis(50)).await;
    }
    for node in good {
        wait_for(node, "the other honest node", |peers| {
            live_zone(peers, a.id, "a") && live_zone(peers, b.id, "b")
        })
        .await;
    }

    // Over many heartbeats, the intruder never enters an honest view, and its own view
    // holds only itself.
    for _ in 0..20 {
        for node in good {
            let peers = node.gossip.peers();
            let peers = peers.borrow();
            assert!(peers.iter().all(|p| p.info.id != intruder.id), "{peers:#?}");
            assert_eq!(peers.len(), 2);
        }
        for node in good {
            assert!(!node.gossip.members().await.contains(&intruder_id));
        }
        assert_eq!(
            intruder.gossip.members().await,
            std::slice::from_ref(&intruder_id)
        );
        let own = intruder.gossip.peers();
        let own: Vec<_> = own.borrow().iter().map(|p| p.info.id).collect();
        assert_eq!(own, [intruder.id]);
        sleep(Duration::from_millis(50)).await;
    }
    for node in [a, b, intruder] {
        node.gossip.shutdown().await;
    }
}

#[tokio::test]
async fn a_node_that_shuts_down_stops_being_live() {
    let [a, b, c] = three_nodes(0x400, "shared").await;
    let zones = [(a.id, "a"), (b.id, "b"), (c.id, "c")];
    let nodes = [a, b];
    wait_all_live(&nodes, &zones).await;
    wait_for(&c, "everyone", |peers| {
        zones.iter().all(|(id, z)| live_zone(peers, *id, z))
    })
    .await;

    let gone = c.id;
    let stopped_at = Instant::now();
    c.gossip.shutdown().await;
    for node in &nodes {
        wait_for(node, "the stopped node go down", |peers| {
            peers.iter().any(|p| p.info.id == gone && !p.live)
        })
        .await;
    }
    assert!(stopped_at.elapsed() < Duration::from_secs(5));
    // The survivors still see each other, and the stopped node's heartbeat ages.
    for node in &nodes {
        let age = node.view(gone).unwrap().heartbeat_age;
        assert!(age > Duration::ZERO);
        assert!(node.view(nodes[0].id).unwrap().live);
        assert!(node.view(nodes[1].id).unwrap().live);
    }
    for node in nodes {
        node.gossip.shutdown().await;
    }
}
