//! Sealed gossip nodes with test timings, and waiting helpers.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_gossip::{
    ClusterKey, Gossip, GossipConfig, GossipKey, GossipKeyring, GossipMode, bind_udp,
};
use shoal_protocol::{MachineId, MachineInfo};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};

pub const CLUSTER: &str = "test-fleet";
/// The cluster secret every honest node has.
pub const SECRET: &str = "shared";
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How long a node is given to answer before its silence counts.
pub const SILENCE: Duration = Duration::from_secs(1);

pub struct Node {
    pub gossip: Gossip,
    pub id: MachineId,
    pub addr: SocketAddr,
    _info: watch::Sender<MachineInfo>,
}

impl Node {
    pub async fn start(id: u64, seeds: &[SocketAddr], keyring: Option<GossipKeyring>) -> Node {
        Self::start_in(id, seeds, keyring, GossipMode::Sealed).await
    }

    /// A node that starts in `mode`.
    pub async fn start_in(
        id: u64,
        seeds: &[SocketAddr],
        keyring: Option<GossipKeyring>,
        mode: GossipMode,
    ) -> Node {
        let (socket, addr) = bind_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let id = MachineId(id);
        let key = ClusterKey::from_secret(SECRET).unwrap();
        let mut config = GossipConfig::new(id, 1, addr, CLUSTER, key);
        config.keyring = keyring;
        config.mode = mode;
        config.seeds = seeds.iter().map(ToString::to_string).collect();
        config.gossip_interval = Duration::from_millis(50);
        config.heartbeat_interval = Duration::from_millis(100);
        config.initial_interval = Duration::from_millis(100);
        config.max_interval = Duration::from_secs(2);
        config.dead_node_grace_period = Duration::from_secs(30);
        let info = MachineInfo {
            id,
            name: format!("node-{id}"),
            ..MachineInfo::default()
        };
        let (info_tx, info_rx) = watch::channel(info);
        let gossip = Gossip::start(config, info_rx, socket).await.unwrap();
        Node {
            gossip,
            id,
            addr,
            _info: info_tx,
        }
    }

    /// The sequence number of `id`'s newest announcement, if this node sees it live.
    pub fn live_seq(&self, id: MachineId) -> Option<u64> {
        let peers = self.gossip.peers();
        let peers = peers.borrow();
        peers
            .iter()
            .find(|p| p.info.id == id && p.live)
            .map(|p| p.seq)
    }

    /// The ids this node sees, with whether each is live.
    pub fn view(&self) -> Vec<(MachineId, bool)> {
        let peers = self.gossip.peers();
        let peers = peers.borrow();
        peers.iter().map(|p| (p.info.id, p.live)).collect()
    }
}

/// Waits until `check` holds, or panics naming `what`.
pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "never saw {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `observer` sees a newer announcement of `id` than `after`, live.
pub async fn wait_for_newer_seq(observer: &Node, id: MachineId, after: u64) -> u64 {
    wait_until(&format!("{id} announce past seq {after}"), || {
        observer.live_seq(id).is_some_and(|seq| seq > after)
    })
    .await;
    observer.live_seq(id).unwrap()
}

/// Waits until the nodes all see each other live.
pub async fn wait_all_live(nodes: &[&Node]) {
    for node in nodes {
        wait_until("every node live", || {
            nodes.iter().all(|other| node.live_seq(other.id).is_some())
        })
        .await;
    }
}

pub fn key(generation: u32, secret: &str) -> GossipKey {
    GossipKey::from_secret(generation, secret).unwrap()
}

/// The next datagram `socket` receives within `wait`, if any.
pub async fn answer(socket: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0; 65_536];
    let (len, _) = timeout(wait, socket.recv_from(&mut buf)).await.ok()?.ok()?;
    buf.truncate(len);
    Some(buf)
}

pub async fn stranger() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}
