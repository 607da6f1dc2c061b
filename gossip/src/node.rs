//! The running gossip node: chitchat on a pre-bound UDP socket whose datagrams are sealed
//! (see [`crate::sealed`]; or, while a fleet upgrades, not: [`crate::mode`]), a publisher that
//! seals this machine's announcement every heartbeat and whenever its info changes, and the
//! verified peer view it keeps refreshed.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{
    Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ListenerHandle,
    NodeState, ProtocolVersion, spawn_chitchat,
};
use rand::seq::IteratorRandom;
use shoal_protocol::{Announcement, MachineId, MachineInfo, UnixMillis, now_ms};
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::{self, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::drops::{DropCounters, DroppedDatagrams};
use crate::keyring::GossipKeyring;
use crate::mode::GossipMode;
use crate::sealed::{GossipSocket, SealedSocket};
use crate::view::{NodeSnapshot, PeerTracker, PeerView};
use crate::{ClusterKey, GossipError, auth, keys};

/// Chitchat's default sampling window for the phi-accrual detector.
const SAMPLING_WINDOW: usize = 1_000;
/// Tombstones are never written by Shoal; this only bounds chitchat's bookkeeping.
const TOMBSTONE_GRACE: Duration = Duration::from_secs(60 * 60);
/// Peers a changed announcement is pushed to at once (chitchat's own rounds pick 3).
const PUSH_FANOUT: usize = 3;
/// Pushes are at least this far apart; a change within it leaves with the next round.
const PUSH_GAP: Duration = Duration::from_millis(100);
/// Refreshes for peers' new announcements are at least this far apart; what arrives within
/// it is folded in at its end, so a large or chatty fleet costs at most 20 refreshes a second.
const REFRESH_GAP: Duration = Duration::from_millis(50);

/// How a gossip node is identified, found and tuned.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    pub node_id: MachineId,
    /// Must grow every time the daemon starts (the start time in ms does).
    pub generation: u64,
    /// The address peers gossip to; the bound socket's address unless behind NAT.
    pub advertise_addr: SocketAddr,
    /// `host:port` or `ip:port` of nodes to contact first.
    pub seeds: Vec<String>,
    /// Nodes of another cluster id are refused by chitchat itself.
    pub cluster_id: String,
    /// Seals the announcements (see [`crate::auth`]) and, unless `keyring` is set, the
    /// datagrams too.
    pub key: ClusterKey,
    /// The keys that seal and open datagrams at start; `None` means
    /// [`GossipKeyring::from_cluster_key`] of `key`. Replace it later with
    /// [`Gossip::set_keyring`].
    pub keyring: Option<GossipKeyring>,
    /// How far a datagram's send time may lie from this node's clock, either way; its nonce
    /// is remembered that long. Machines whose clocks differ by more cannot gossip.
    pub datagram_window: Duration,
    /// Whether datagrams are sealed at start ([`GossipMode::Sealed`] unless set); change it
    /// later with [`Gossip::set_mode`].
    pub mode: GossipMode,
    /// How often chitchat gossips with a few peers.
    pub gossip_interval: Duration,
    /// How often this node republishes its announcement (seq + 1).
    pub heartbeat_interval: Duration,
    /// Phi above which the failure detector declares a node down.
    pub phi_threshold: f64,
    /// The assumed heartbeat interval before any has been measured.
    pub initial_interval: Duration,
    /// Longer gaps between heartbeats are not sampled.
    pub max_interval: Duration,
    /// How long chitchat keeps the state of a node it considers down.
    pub dead_node_grace_period: Duration,
}

impl GossipConfig {
    /// A config with production timings.
    pub fn new(
        node_id: MachineId,
        generation: u64,
        advertise_addr: SocketAddr,
        cluster_id: impl Into<String>,
        key: ClusterKey,
    ) -> Self {
        GossipConfig {
            node_id,
            generation,
            advertise_addr,
            seeds: Vec::new(),
            cluster_id: cluster_id.into(),
            key,
            keyring: None,
            datagram_window: Duration::from_secs(30),
            mode: GossipMode::Sealed,
            gossip_interval: Duration::from_millis(500),
            heartbeat_interval: Duration::from_secs(1),
            phi_threshold: 8.0,
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(10),
            dead_node_grace_period: Duration::from_secs(60 * 60),
        }
    }

    /// Rejects values that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), GossipError> {
        let bad = |field: &str, why: &str| Err(GossipError::Config(format!("{field} {why}")));
        if self.cluster_id.is_empty() {
            return bad("cluster_id", "must not be empty");
        }
        if self.advertise_addr.port() == 0 || self.advertise_addr.ip().is_unspecified() {
            return bad("advertise_addr", "must be a concrete address and port");
        }
        let durations = [
            ("gossip_interval", self.gossip_interval),
            ("heartbeat_interval", self.heartbeat_interval),
            ("initial_interval", self.initial_interval),
            ("max_interval", self.max_interval),
            ("dead_node_grace_period", self.dead_node_grace_period),
            ("datagram_window", self.datagram_window),
        ];
        for (field, value) in durations {
            if value.is_zero() {
                return bad(field, "must be longer than zero");
            }
        }
        if !(self.phi_threshold.is_finite() && self.phi_threshold > 0.0) {
            return bad("phi_threshold", "must be a positive number");
        }
        Ok(())
    }

    fn chitchat_id(&self) -> ChitchatId {
        ChitchatId::new(
            self.node_id.to_string(),
            self.generation,
            self.advertise_addr,
        )
    }
}

/// A running gossip node. Dropping it stops it too; [`Gossip::shutdown`] waits for that.
pub struct Gossip {
    handle: Arc<ChitchatHandle>,
    peers: watch::Receiver<Arc<Vec<PeerView>>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    keyring: watch::Sender<GossipKeyring>,
    mode: watch::Sender<GossipMode>,
    drops: Arc<DropCounters>,
}

/// What a running gossip node counts, readable without holding the node: its mode and the
/// datagrams it dropped. Cheap to clone.
#[derive(Clone)]
pub struct GossipStats {
    mode: watch::Receiver<GossipMode>,
    drops: Arc<DropCounters>,
}

impl GossipStats {
    /// Whether the node seals its datagrams now.
    pub fn mode(&self) -> GossipMode {
        *self.mode.borrow()
    }

    /// How many datagrams the node dropped since it started, by reason.
    pub fn dropped_datagrams(&self) -> DroppedDatagrams {
        self.drops.snapshot()
    }
}

impl Gossip {
    /// Starts chitchat on `socket` (already bound by the caller) and publishes `info`.
    pub async fn start(
        config: GossipConfig,
        info: watch::Receiver<MachineInfo>,
        socket: GossipSocket,
    ) -> anyhow::Result<Gossip> {
        config.validate()?;
        let published_id = info.borrow().id;
        if published_id != config.node_id {
            return Err(GossipError::Config(format!(
                "node_id {} differs from the published machine id {published_id}",
                config.node_id
            ))
            .into());
        }
        let listen_addr = socket.local_addr()?;
        let chitchat_id = config.chitchat_id();
        let mut publisher = Publisher {
            key: config.key.clone(),
            node: chitchat_id.clone(),
            node_id: config.node_id,
            seq: 0,
        };
        let first = publisher.seal_next(info.borrow().clone(), now_ms())?;
        let predicate_key = config.key.clone();
        let chitchat_config = ChitchatConfig {
            chitchat_id: chitchat_id.clone(),
            cluster_id: config.cluster_id.clone(),
            gossip_interval: config.gossip_interval,
            listen_addr,
            seed_nodes: config.seeds.clone(),
            failure_detector_config: FailureDetectorConfig::new(
                config.phi_threshold,
                SAMPLING_WINDOW,
                config.max_interval,
                config.initial_interval,
                config.dead_node_grace_period,
            ),
            marked_for_deletion_grace_period: TOMBSTONE_GRACE,
            catchup_callback: None,
            extra_liveness_predicate: Some(Box::new(move |state: &NodeState| {
                verifies(&predicate_key, state)
            })),
            protocol_version: ProtocolVersion::V0,
        };
        let keyring = config
            .keyring
            .clone()
            .unwrap_or_else(|| GossipKeyring::from_cluster_key(&config.key));
        let (keyring, keyring_rx) = watch::channel(keyring);
        let (mode, mode_rx) = watch::channel(config.mode);
        let drops = Arc::new(DropCounters::default());
        let (held, held_rx) = watch::channel(Arc::new(HashSet::new()));
        let sealed = SealedSocket::open(
            socket,
            keyring_rx,
            mode_rx,
            held_rx,
            drops.clone(),
            config.datagram_window,
        )
        .await
        .context("opening the sealed gossip socket")?;
        let transport = PreBound(StdMutex::new(Some(Box::new(sealed))));
        let handle = spawn_chitchat(
            chitchat_config,
            vec![(keys::ANNOUNCE.to_string(), first)],
            &transport,
        )
        .await
        .context("starting chitchat")?;

        let handle = Arc::new(handle);
        let chitchat = handle.chitchat();
        // A peer's new announcement refreshes the view as soon as its delta is applied,
        // not at the end of this node's next gossip round.
        let announced = Arc::new(Notify::new());
        let (live, listener) = {
            let guard = chitchat.lock().await;
            let notify = announced.clone();
            let self_id = chitchat_id.clone();
            let listener = guard.subscribe_event(keys::ANNOUNCE, move |event| {
                if *event.node != self_id {
                    notify.notify_one();
                }
            });
            (guard.live_nodes_watcher(), listener)
        };
        let (peers_tx, peers) = watch::channel(Arc::new(Vec::new()));
        let (stop, stop_rx) = watch::channel(false);
        let mut runner = Runner {
            handle: handle.clone(),
            chitchat,
            self_id: chitchat_id.clone(),
            publisher,
            tracker: PeerTracker::new(config.key.clone()),
            info,
            live,
            announced,
            _listener: listener,
            pushed_at: None,
            refreshed_at: time::Instant::now(),
            peers_tx,
            held,
            heartbeat_interval: config.heartbeat_interval,
        };
        runner.refresh().await;
        let task = tokio::spawn(runner.run(stop_rx));
        info!(node = ?chitchat_id, listen = %listen_addr, seeds = ?config.seeds,
            mode = config.mode.name(), "gossip started");
        Ok(Gossip {
            handle,
            peers,
            stop,
            task,
            keyring,
            mode,
            drops,
        })
    }

    /// Seals and opens datagrams with `keyring` from the next datagram on (see
    /// [`crate::keyring`] for a rotation without loss).
    pub fn set_keyring(&self, keyring: GossipKeyring) {
        let generation = keyring.current().generation();
        self.keyring.send_replace(keyring);
        info!(node = ?self.handle.chitchat_id(), generation, "gossip keyring replaced");
    }

    /// The keyring datagrams are sealed and opened with now.
    pub fn keyring(&self) -> GossipKeyring {
        self.keyring.borrow().clone()
    }

    /// Sends and reads datagrams in `mode` from the next datagram on (see [`crate::mode`]).
    pub fn set_mode(&self, mode: GossipMode) {
        let before = self.mode.send_replace(mode);
        if before != mode {
            info!(node = ?self.handle.chitchat_id(), from = before.name(), to = mode.name(),
                "gossip mode changed");
        }
    }

    /// Whether this node seals its datagrams now.
    pub fn mode(&self) -> GossipMode {
        *self.mode.borrow()
    }

    /// How many datagrams this node dropped since it started, by reason.
    pub fn dropped_datagrams(&self) -> DroppedDatagrams {
        self.drops.snapshot()
    }

    /// The mode and drop counts, readable after this handle is gone.
    pub fn stats(&self) -> GossipStats {
        GossipStats {
            mode: self.mode.subscribe(),
            drops: self.drops.clone(),
        }
    }

    /// Every verified machine, this one included, refreshed each heartbeat and on change.
    pub fn peers(&self) -> watch::Receiver<Arc<Vec<PeerView>>> {
        self.peers.clone()
    }

    /// This node's chitchat id: machine id in hex, generation, advertised address.
    pub fn chitchat_id(&self) -> &ChitchatId {
        self.handle.chitchat_id()
    }

    /// Gossips with `addr` once, e.g. a peer that discovery just found.
    pub fn gossip_with(&self, addr: SocketAddr) -> Result<(), GossipError> {
        self.handle.gossip(addr).map_err(|_| GossipError::Stopped)
    }

    /// Every node chitchat holds state for, verified or not, for diagnostics.
    pub async fn members(&self) -> Vec<ChitchatId> {
        let chitchat = self.handle.chitchat();
        let guard = chitchat.lock().await;
        guard.node_states().keys().cloned().collect()
    }

    /// Stops publishing and gossiping, and waits until both have stopped.
    pub async fn shutdown(self) {
        let node = self.handle.chitchat_id().clone();
        let _ = self.stop.send(true);
        if let Err(err) = self.task.await {
            warn!(node = ?node, error = %err, "gossip publisher ended abnormally");
        }
        // The runner held the only other reference, and it has ended.
        let stopped = match Arc::try_unwrap(self.handle) {
            Ok(handle) => handle.shutdown().await,
            Err(shared) => shared.initiate_shutdown(),
        };
        if let Err(err) = stopped {
            warn!(node = ?node, error = %err, "chitchat stopped with an error");
        }
        info!(node = ?node, "gossip stopped");
    }
}

/// Whether a node's published state opens with the cluster key (the liveness predicate).
fn verifies(key: &ClusterKey, state: &NodeState) -> bool {
    state
        .get(keys::ANNOUNCE)
        .is_some_and(|value| auth::open(key, state.chitchat_id(), value).is_ok())
}

/// Seals this machine's successive announcements.
struct Publisher {
    key: ClusterKey,
    node: ChitchatId,
    node_id: MachineId,
    seq: u64,
}

impl Publisher {
    fn seal_next(&mut self, info: MachineInfo, now_ms: UnixMillis) -> Result<String, GossipError> {
        if info.id != self.node_id {
            return Err(GossipError::Config(format!(
                "published machine id {} differs from node_id {}",
                info.id, self.node_id
            )));
        }
        self.seq += 1;
        let announcement = Announcement {
            info,
            seq: self.seq,
            sent_at_ms: now_ms,
        };
        auth::seal(&self.key, &self.node, &announcement)
    }
}

/// The background task behind a [`Gossip`].
struct Runner {
    handle: Arc<ChitchatHandle>,
    chitchat: Arc<Mutex<Chitchat>>,
    self_id: ChitchatId,
    publisher: Publisher,
    tracker: PeerTracker,
    info: watch::Receiver<MachineInfo>,
    live: watch::Receiver<BTreeMap<ChitchatId, NodeState>>,
    /// Notified when a peer's announcement changes (see [`Gossip::start`]).
    announced: Arc<Notify>,
    /// Keeps that subscription; dropping it ends it.
    _listener: ListenerHandle,
    /// When [`Runner::push`] last pushed.
    pushed_at: Option<time::Instant>,
    /// When [`Runner::refresh`] last ran.
    refreshed_at: time::Instant,
    peers_tx: watch::Sender<Arc<Vec<PeerView>>>,
    /// The ids of chitchat's node states, for the socket's [`crate::bounds::NodeCap`].
    held: watch::Sender<Arc<HashSet<ChitchatId>>>,
    heartbeat_interval: Duration,
}

impl Runner {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut ticker = time::interval(self.heartbeat_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let (mut info_open, mut live_open) = (true, true);
        // When a refresh held back by REFRESH_GAP is due.
        let mut held_back: Option<time::Instant> = None;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = ticker.tick() => {
                    self.publish().await;
                    self.refresh().await;
                }
                changed = self.info.changed(), if info_open => {
                    if changed.is_ok() {
                        self.publish().await;
                        self.push();
                        self.refresh().await;
                    } else {
                        debug!("machine info sender dropped, republishing the last info");
                        info_open = false;
                    }
                }
                _ = self.announced.notified(), if held_back.is_none() => {
                    let due = self.refreshed_at + REFRESH_GAP;
                    if time::Instant::now() >= due {
                        self.refresh().await;
                    } else {
                        held_back = Some(due);
                    }
                }
                _ = time::sleep_until(held_back.unwrap_or_else(time::Instant::now)), if held_back.is_some() => {
                    held_back = None;
                    self.refresh().await;
                }
                changed = self.live.changed(), if live_open => {
                    if changed.is_ok() {
                        self.refresh().await;
                    } else {
                        live_open = false;
                    }
                }
            }
        }
        debug!(node = ?self.self_id, "gossip publisher stopped");
    }

    async fn publish(&mut self) {
        let info = self.info.borrow_and_update().clone();
        match self.publisher.seal_next(info, now_ms()) {
            Ok(value) => {
                let mut chitchat = self.chitchat.lock().await;
                chitchat.self_node_state().set(keys::ANNOUNCE, value);
            }
            Err(err) => warn!(error = %err, "cannot publish machine announcement"),
        }
    }

    /// Starts a gossip round with [`PUSH_FANOUT`] random live peers now, so that changed
    /// info leaves at once rather than at the next round (in which they hear it: a round
    /// is a Syn, the peer's SynAck, and the Ack that carries this node's new state). At
    /// most once per [`PUSH_GAP`], however often the info changes.
    fn push(&mut self) {
        let now = time::Instant::now();
        if self.pushed_at.is_some_and(|at| now - at < PUSH_GAP) {
            return;
        }
        self.pushed_at = Some(now);
        let live = self.live.borrow();
        let peers = live
            .keys()
            .filter(|id| **id != self.self_id)
            .map(|id| id.gossip_advertise_addr)
            .choose_multiple(&mut rand::rng(), PUSH_FANOUT);
        for addr in peers {
            if self.handle.gossip(addr).is_err() {
                debug!("chitchat stopped; not pushing the changed announcement");
                return;
            }
        }
    }

    async fn refresh(&mut self) {
        self.refreshed_at = time::Instant::now();
        let live: HashSet<ChitchatId> = self.live.borrow_and_update().keys().cloned().collect();
        let (snapshots, held): (Vec<NodeSnapshot>, HashSet<ChitchatId>) = {
            let chitchat = self.chitchat.lock().await;
            let states = chitchat.node_states();
            let snapshots = states
                .values()
                .map(|state| {
                    let id = state.chitchat_id();
                    NodeSnapshot::from_state(state, *id == self.self_id || live.contains(id))
                })
                .collect();
            (snapshots, states.keys().cloned().collect())
        };
        self.held.send_if_modified(|ids| {
            let changed = **ids != held;
            if changed {
                *ids = Arc::new(held);
            }
            changed
        });
        let views = self.tracker.update(now_ms(), &snapshots);
        self.peers_tx.send_replace(Arc::new(views));
    }
}

/// Hands chitchat the socket the caller bound, once.
struct PreBound(StdMutex<Option<Box<dyn Socket>>>);

#[async_trait]
impl Transport for PreBound {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let mut slot = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.take()
            .context("the pre-bound gossip socket was already handed over")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GossipConfig {
        GossipConfig::new(
            MachineId(1),
            1,
            "127.0.0.1:7401".parse().unwrap(),
            "fleet",
            ClusterKey::from_secret("s").unwrap(),
        )
    }

    #[test]
    fn validation_names_the_field() {
        assert!(config().validate().is_ok());
        let mut unspecified = config();
        unspecified.advertise_addr = "0.0.0.0:7401".parse().unwrap();
        let mut zero = config();
        zero.heartbeat_interval = Duration::ZERO;
        let mut phi = config();
        phi.phi_threshold = f64::NAN;
        let mut cluster = config();
        cluster.cluster_id.clear();
        let mut window = config();
        window.datagram_window = Duration::ZERO;
        for (bad, field) in [
            (unspecified, "advertise_addr"),
            (zero, "heartbeat_interval"),
            (phi, "phi_threshold"),
            (cluster, "cluster_id"),
            (window, "datagram_window"),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn publisher_counts_up_and_seals_for_its_node() {
        let cfg = config();
        let mut publisher = Publisher {
            key: cfg.key.clone(),
            node: cfg.chitchat_id(),
            node_id: cfg.node_id,
            seq: 0,
        };
        let info = MachineInfo {
            id: MachineId(1),
            ..MachineInfo::default()
        };
        for want in 1..=3 {
            let sealed = publisher.seal_next(info.clone(), 77).unwrap();
            let ann = auth::open(&cfg.key, &cfg.chitchat_id(), &sealed).unwrap();
            assert_eq!((ann.seq, ann.sent_at_ms), (want, 77));
        }
        let stranger = MachineInfo {
            id: MachineId(2),
            ..MachineInfo::default()
        };
        assert!(publisher.seal_next(stranger, 78).is_err());
    }

    #[tokio::test]
    async fn pre_bound_transport_hands_its_socket_over_once() {
        let socket = chitchat::transport::UdpSocket::open("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let transport = PreBound(StdMutex::new(Some(Box::new(socket))));
        let opened = transport.open(addr).await.unwrap();
        assert_eq!(opened.local_addr().unwrap(), addr);
        assert!(transport.open(addr).await.is_err());
    }
}
