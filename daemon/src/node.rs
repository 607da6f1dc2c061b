//! One `shoald` node: binds its listeners, opens its store, and starts every task.
//!
//! ```text
//!   sampler ─▶ info watch ─▶ gossip (signed heartbeats) ─▶ peer view ─┬─▶ leader reconcile ─▶ Raft writes
//!                                                                     ├─▶ allow-list + address book (p2p)
//!   admin API ─▶ Node::write ─▶ leader (local or forwarded over p2p) ─┘
//!   admin API ◀─ fleet state (local replica) + live peer view
//! ```
//!
//! Every task stops when the shutdown watch flips to true.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use libp2p::PeerId;
use shoal_gossip::{ClusterKey, Gossip, GossipConfig, GossipStats, PeerView};
use shoal_protocol::{MachineId, MachineInfo, MemberAddr};
use shoal_raft::{CommitIndex, FleetHandle, Raft, RaftTimings};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::dispatch::{DOCKER_LABEL, PROCESS_JOBS_LABEL};
use crate::exec::process::ProcessConfig;
use crate::exec::run_as::RunAs;
use crate::gossip_keys::NodeKeys;
use crate::p2p::{self, P2pHandle};
use crate::proposer::Proposer;
use crate::raft_network::{AddressBook, PeerNetwork};
use crate::runner::{self, Runner};
use crate::sampler::{HostFacts, Sampler};
use crate::{
    api, backups, diagnose, dispatch, gossip_keys, gossip_mode, identity, leadership, reconcile,
    rpc,
};

/// The directory inside the data directory that holds the Raft log and snapshot.
pub const RAFT_DIR: &str = "raft";

/// The crate's version, published to the fleet.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub use shoal_protocol::now_ms;

/// The sockets a node serves on, bound before it starts so tests can use port 0.
pub struct Listeners {
    pub api: TcpListener,
    pub gossip: shoal_gossip::GossipSocket,
}

impl Listeners {
    /// Binds the API (TCP) and gossip (UDP) ports of `config`.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let api = TcpListener::bind(config.api_addr())
            .await
            .with_context(|| format!("cannot listen for the admin API on {}", config.api_addr()))?;
        let (gossip, _) = shoal_gossip::bind_udp(config.gossip_addr())
            .await
            .with_context(|| format!("cannot listen for gossip on {}", config.gossip_addr()))?;
        Ok(Listeners { api, gossip })
    }
}

/// Shared state of a running node, handed to the API and the background tasks.
pub struct Node {
    pub id: MachineId,
    pub config: Config,
    pub raft: Raft,
    pub fleet: FleetHandle,
    pub commit_index: CommitIndex,
    pub p2p: P2pHandle,
    pub book: AddressBook,
    pub peers: watch::Receiver<Arc<Vec<PeerView>>>,
    /// Whether gossip is sealed now, and the datagrams it dropped (for `/metrics`).
    pub gossip: GossipStats,
    /// The gossip keys this node holds and the generation it seals with.
    pub gossip_keys: Arc<NodeKeys>,
    pub info: watch::Sender<MachineInfo>,
    pub runner: Arc<Runner>,
    pub proposer: Proposer,
    pub api_addr: SocketAddr,
    pub metrics: crate::metrics::Metrics,
    /// This machine's last hour of resource samples.
    pub history: crate::history::History,
    /// The fleet's secret, handed to machines that join with a registration token.
    pub cluster_secret: String,
    /// When this node last heard from a leader, and whether it is cut off from a quorum.
    pub leadership: crate::leadership::Leadership,
    /// The fleet CA (once this node has it) and the certificate the API serves.
    pub tls: crate::tls::NodeTls,
    /// Faults a test turns on in this node's write path.
    #[cfg(feature = "testsuite")]
    pub faults: crate::faults::Faults,
}

/// A started node: its shared state and the tasks to stop.
pub struct RunningNode {
    pub node: Arc<Node>,
    gossip: Arc<Gossip>,
    shutdown: watch::Sender<bool>,
    /// Tasks that run until shutdown; one ending early means the node failed.
    tasks: JoinSet<()>,
    /// Tasks that finish on their own (forming the fleet).
    setup: JoinSet<()>,
    /// Whether the Raft log's database is still open.
    store: shoal_raft::StoreOpen,
}

impl Node {
    /// Starts a node on the given listeners.
    pub async fn start(config: Config, listeners: Listeners) -> anyhow::Result<RunningNode> {
        identity::make_private(&config.data_dir).context("data_dir")?;
        let keypair = identity::load_or_create_keypair(&config.data_dir)?;
        let peer_id = keypair.public().to_peer_id();
        let id = identity::machine_id(&peer_id);
        let secret =
            identity::load_or_create_secret(&config.data_dir, config.cluster_secret.as_deref())?;
        let key = ClusterKey::from_secret(secret.as_bytes())?;
        // The keyring stored at the last rotation, before Raft catches up.
        let (node_keys, keyring) =
            NodeKeys::load(&config.data_dir, &key).context("the gossip keyring")?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let p2p::P2p {
            handle: p2p,
            inbound,
            discovered,
        } = p2p::start(keypair, config.p2p_addr(), config.mdns, shutdown_rx.clone())?;
        let p2p_listen = p2p.listen_addr().await?;
        let api_listen = listeners.api.local_addr()?;
        let gossip_listen = listeners.gossip.local_addr()?;
        let addr = MemberAddr {
            peer_id: peer_id.to_string(),
            p2p_addr: SocketAddr::new(config.advertise, p2p_listen.port()).to_string(),
            api_addr: SocketAddr::new(config.advertise, api_listen.port()).to_string(),
            gossip_addr: SocketAddr::new(config.advertise, gossip_listen.port()).to_string(),
        };

        let (log_store, state_machine) = shoal_raft::open(&config.data_dir.join(RAFT_DIR))?;
        let fleet = state_machine.handle();
        let commit_index = log_store.commit_index();
        let store = log_store.open_watch();
        let book = AddressBook::default();
        let raft_config = shoal_raft::raft_config(&RaftTimings {
            heartbeat: config.timings.raft_heartbeat,
            election_min: config.timings.raft_election_min,
            election_max: config.timings.raft_election_max,
            snapshot_every_logs: config.timings.snapshot_every_logs,
        })?;
        let network = PeerNetwork {
            p2p: p2p.clone(),
            book: book.clone(),
        };
        let raft = Raft::new(id, Arc::new(raft_config), network, log_store, state_machine)
            .await
            .context("starting raft")?;

        let process = match config.allow_process_jobs {
            true => Some(ProcessConfig {
                run_as: RunAs::resolve(config.process_user.as_deref())?,
                ..ProcessConfig::default()
            }),
            false => None,
        };
        let runner = Arc::new(Runner::new(id, process, config.containers).await);
        let mut labels = config.labels.clone();
        if runner.has_docker() {
            labels.insert(DOCKER_LABEL, "true")?;
        }
        if config.allow_process_jobs {
            labels.insert(PROCESS_JOBS_LABEL, "true")?;
        }
        let mut gpu_sampler = crate::gpus::GpuSampler::new(crate::gpus::source(&config));
        let gpus = gpu_sampler.sample().unwrap_or_default();
        if let Err(err) = crate::gpus::add_labels(&mut labels, &gpus) {
            tracing::warn!(%err, "the gpu labels do not fit beside the configured ones");
        }
        let facts = HostFacts::read();
        // A machine that founds a fleet alone makes the fleet CA now; any other gets it
        // when it joins, or from a member (`tls::fetch::ca_loop`).
        let founds_alone = config.bootstrap_expect == 1
            && config.join.is_empty()
            && !config.mdns
            && members(&raft).keys().all(|member| *member == id);
        let tls = crate::tls::NodeTls::start(
            config.api_tls.clone(),
            config.data_dir.clone(),
            SocketAddr::new(config.advertise, api_listen.port()),
            config.bind,
            &facts.hostname,
            founds_alone,
        )?;
        let mut sampler = Sampler::new(&config.data_dir)?;
        let resources = sampler.sample();
        let info = MachineInfo {
            id,
            name: config.node_name.clone(),
            hostname: facts.hostname,
            os: facts.os,
            arch: facts.arch,
            version: VERSION.to_string(),
            protocol_level: config.protocol_level,
            addr: addr.clone(),
            labels,
            diagnosis: diagnose::run(&config.data_dir, &resources, runner.docker_version()),
            resources,
            running: 0,
            max_running: config.max_running,
            draining: false,
            images: Vec::new(),
            started_at_ms: now_ms(),
            gpus,
        };
        let (info_tx, info_rx) = watch::channel(info);
        let gossip_advertise = SocketAddr::new(config.advertise, gossip_listen.port());
        // Seed gossip from --join and from every member this node knew before a restart.
        let mut seeds = config.seeds();
        for (member, known) in members(&raft) {
            if member != id && !seeds.contains(&known.0.gossip_addr) {
                seeds.push(known.0.gossip_addr);
            }
        }
        // Sealed at once only if the stored fleet already is; else `gossip_mode::mode_loop`
        // seals once the replica applies the level.
        let fleet_level = fleet.read(|state| state.fleet_level);
        let gossip_config = GossipConfig {
            seeds,
            mode: gossip_mode::mode_for(config.protocol_level, fleet_level),
            gossip_interval: config.timings.gossip_interval,
            heartbeat_interval: config.timings.heartbeat_interval,
            initial_interval: config.timings.gossip_interval,
            max_interval: config.timings.gossip_interval * 20,
            keyring: Some(keyring),
            ..GossipConfig::new(id, now_ms(), gossip_advertise, "shoal", key)
        };
        let gossip = Arc::new(Gossip::start(gossip_config, info_rx, listeners.gossip).await?);

        let proposer = Proposer::start(raft.clone());
        let node = Arc::new(Node {
            id,
            peers: gossip.peers(),
            gossip: gossip.stats(),
            gossip_keys: Arc::new(node_keys),
            config,
            raft,
            fleet,
            commit_index,
            p2p,
            book,
            info: info_tx,
            runner: runner.clone(),
            proposer,
            api_addr: api_listen,
            cluster_secret: secret.clone(),
            metrics: Default::default(),
            history: Default::default(),
            leadership: Default::default(),
            tls,
            #[cfg(feature = "testsuite")]
            faults: Default::default(),
        });
        tracing::info!(machine_id = %id, name = %node.config.node_name, api = %addr.api_addr,
            gossip = %gossip_listen, p2p = %addr.p2p_addr, "node started");

        let mut tasks = JoinSet::new();
        tasks.spawn(rpc::serve_inbound(
            node.clone(),
            inbound,
            shutdown_rx.clone(),
        ));
        tasks.spawn(sample_loop(
            node.clone(),
            sampler,
            gpu_sampler,
            shutdown_rx.clone(),
        ));
        tasks.spawn(crate::seed_watch::warn_loop(
            node.clone(),
            shutdown_rx.clone(),
        ));
        tasks.spawn(crate::image_facts::publish_loop(
            node.clone(),
            shutdown_rx.clone(),
        ));
        tasks.spawn(peer_access_loop(node.clone(), shutdown_rx.clone()));
        tasks.spawn(reconcile::leader_loop(node.clone(), shutdown_rx.clone()));
        tasks.spawn(leadership::leadership_loop(
            node.clone(),
            shutdown_rx.clone(),
        ));
        tasks.spawn(dispatch::dispatch_loop(node.clone(), shutdown_rx.clone()));
        tasks.spawn(backups::backup_loop(node.clone(), shutdown_rx.clone()));
        if node.config.run_jobs {
            tasks.spawn(runner::runner_loop(
                node.clone(),
                runner,
                shutdown_rx.clone(),
            ));
        }
        tasks.spawn(discovery_loop(
            gossip.clone(),
            discovered,
            shutdown_rx.clone(),
        ));
        tasks.spawn(gossip_mode::mode_loop(
            node.clone(),
            gossip.clone(),
            shutdown_rx.clone(),
        ));
        tasks.spawn(gossip_keys::rollout::rollout_loop(
            node.clone(),
            gossip.clone(),
            shutdown_rx.clone(),
        ));
        let api_tls = node
            .tls
            .server_config()
            .context("the admin api's tls config")?;
        tasks.spawn(api::serve(
            node.clone(),
            listeners.api,
            api_tls,
            shutdown_rx.clone(),
        ));
        let mut setup = JoinSet::new();
        if !node.tls.has_ca() {
            setup.spawn(crate::tls::fetch::ca_loop(
                node.clone(),
                shutdown_rx.clone(),
            ));
        }
        setup.spawn(reconcile::bootstrap(node.clone(), shutdown_rx));
        Ok(RunningNode {
            node,
            gossip,
            shutdown,
            tasks,
            setup,
            store,
        })
    }

    /// The leader this node knows of, if any: none while it is cut off from a quorum (a
    /// leader no quorum answers, or a member no leader reaches).
    pub fn leader(&self) -> Option<MachineId> {
        if self.leadership.cut_off().is_some() {
            return None;
        }
        self.raft.metrics().borrow().current_leader
    }

    /// The latest verified view of one peer.
    pub fn peer(&self, id: MachineId) -> Option<PeerView> {
        self.peers
            .borrow()
            .iter()
            .find(|peer| peer.info.id == id)
            .cloned()
    }

    /// The address of a Raft member or gossip peer.
    pub fn member_addr(&self, id: MachineId) -> Option<MemberAddr> {
        self.book.get(id).or_else(|| {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .cloned()
        })
    }
}

impl RunningNode {
    /// Stops every task and waits for them; the data directory stays as it is.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        match tokio::time::timeout(Duration::from_secs(10), self.node.raft.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(%err, "raft did not stop cleanly"),
            Err(_) => tracing::warn!("raft did not stop within 10s"),
        }
        while self.tasks.join_next().await.is_some() {}
        while self.setup.join_next().await.is_some() {}
        // Tasks the node spawned (a run's watcher, Raft's replication) see the shutdown and
        // let go of the store; wait for the last, so the data directory can be opened again.
        let RunningNode {
            node,
            gossip,
            store,
            ..
        } = self;
        drop(node);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while store.is_open() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if store.is_open() {
            tracing::warn!("the raft store is still open 5s after shutdown");
        }
        // Every task that shared the gossip handle has ended.
        match Arc::try_unwrap(gossip) {
            Ok(gossip) => gossip.shutdown().await,
            Err(_) => tracing::warn!("gossip still in use at shutdown"),
        }
    }

    /// Waits until a long-running task ends on its own, which means the node failed.
    pub async fn wait(&mut self) {
        self.tasks.join_next().await;
    }
}

/// Gossips with every machine mDNS found on the LAN.
async fn discovery_loop(
    gossip: Arc<Gossip>,
    mut discovered: tokio::sync::mpsc::UnboundedReceiver<SocketAddr>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            Some(addr) = discovered.recv() => {
                if let Err(err) = gossip.gossip_with(addr) {
                    tracing::warn!(%addr, %err, "cannot gossip with a discovered machine");
                }
            }
        }
    }
}

/// Runs the checks and publishes them through the info watch if they changed.
async fn diagnose_now(node: Arc<Node>) {
    let resources = node.info.borrow().resources.clone();
    let mut checks = diagnose::run(
        &node.config.data_dir,
        &resources,
        node.runner.docker_version(),
    );
    let images = node.fleet.read(diagnose::template_images);
    if node.runner.has_docker() && !images.is_empty() {
        checks.push(diagnose::images_check(node.runner.docker(), &images).await);
    }
    node.info
        .send_if_modified(|info| std::mem::replace(&mut info.diagnosis, checks.clone()) != checks);
}

/// Samples resources and the GPUs' use and publishes them through the info watch.
async fn sample_loop(
    node: Arc<Node>,
    mut sampler: Sampler,
    mut gpu_sampler: crate::gpus::GpuSampler,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(node.config.timings.sample_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut recheck = tokio::time::interval(diagnose::DIAGNOSE_EVERY);
    recheck.tick().await; // the first diagnosis came with the info
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = recheck.tick() => {
                // The image check asks the engine: off this loop, so sampling goes on.
                tokio::spawn(diagnose_now(node.clone()));
            }
            _ = tick.tick() => {
                let resources = sampler.sample();
                node.history.record(now_ms(), &resources);
                let gpus = gpu_sampler.sample();
                node.info.send_modify(|info| {
                    info.resources = resources;
                    if let Some(gpus) = gpus {
                        info.gpus = gpus;
                    }
                });
            }
        }
    }
}

/// Keeps the peer RPC allow-list and the address book in step with the verified
/// gossip view and the Raft membership.
async fn peer_access_loop(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    let mut peers = node.peers.clone();
    let metrics = node.raft.metrics();
    let mut tick = tokio::time::interval(node.config.timings.reconcile_interval);
    loop {
        let mut allowed: HashSet<PeerId> = HashSet::new();
        let mut book: HashMap<MachineId, MemberAddr> = HashMap::new();
        // A machine an admin removed is refused, gossip or not, until it uses a new token.
        let retired = node.fleet.read(|state| state.retired.clone());
        {
            let metrics = metrics.borrow();
            for (id, addr) in metrics.membership_config.membership().nodes() {
                if !retired.contains(id) {
                    allowed.extend(addr.peer_id.parse::<PeerId>().ok());
                }
                book.insert(*id, addr.clone());
            }
        }
        for peer in peers.borrow_and_update().iter() {
            if !retired.contains(&peer.info.id) {
                allowed.extend(peer.info.addr.peer_id.parse::<PeerId>().ok());
            }
            book.insert(peer.info.id, peer.info.addr.clone());
        }
        node.p2p.set_allowed(allowed);
        node.book.replace(book);
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            Ok(()) = peers.changed() => {}
            _ = tick.tick() => {}
        }
    }
}

/// The membership as the API shows it: each member and whether it votes.
pub fn members(raft: &Raft) -> BTreeMap<MachineId, (MemberAddr, bool)> {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    let membership = metrics.membership_config.membership();
    let voters: HashSet<MachineId> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, addr)| (*id, (addr.clone(), voters.contains(id))))
        .collect()
}

/// How long a write or read barrier may take, every try included, before it fails.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
