//! Peer RPC over libp2p: TCP, noise (authenticated and encrypted), yamux, and a
//! request-response protocol carrying [`PeerRequest`]s.
//!
//! ```text
//!  callers ──P2pHandle::request──▶ swarm task ──TCP/noise/yamux──▶ peer's swarm task
//!                                      │                                │ allowed peer?
//!  callers ◀──────── oneshot ◀─────────┘         ◀── response ──  inbound channel ─▶ Node
//! ```
//!
//! One task owns the [`Swarm`]; everything else talks to it through channels.
//! Requests from peers that are not machines of the fleet are refused, except `Hello` and
//! the two steps of a join (the token is the credential).
//! With mDNS on, every peer found on the LAN is asked `Hello`, and its gossip address
//! comes out of [`P2p::discovered`] for gossip to contact.

mod codec;
pub mod messages;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, mdns, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot, watch};

pub use codec::MAX_MESSAGE_BYTES;
pub use messages::{Credential, PeerRequest, PeerResponse, WriteOutcome};

type Rpc = request_response::Behaviour<codec::PeerCodec>;

/// How often mDNS asks the LAN who is there.
const MDNS_QUERY_INTERVAL: Duration = Duration::from_secs(2);

#[derive(NetworkBehaviour)]
struct Behaviour {
    rpc: Rpc,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// Why a request to a peer got no answer.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    #[error("bad peer address {0:?}")]
    BadAddress(String),
    #[error("peer rpc is shutting down")]
    Closed,
    #[error("peer {peer} did not answer: {reason}")]
    Failed { peer: PeerId, reason: String },
    /// The peer (its id, or the address dialled) did not answer in time.
    #[error("peer {0} did not answer in time")]
    Timeout(String),
    /// The request encodes to more than a peer message may hold; nothing was sent.
    #[error("request of {bytes} bytes is over the {MAX_MESSAGE_BYTES} byte peer message limit")]
    TooLarge { bytes: usize },
}

/// A request that arrived from an allowed peer, to be answered through `reply`.
pub struct Inbound {
    pub from: PeerId,
    pub request: PeerRequest,
    pub reply: oneshot::Sender<PeerResponse>,
}

enum Outbound {
    Request {
        peer: PeerId,
        addr: Multiaddr,
        request: PeerRequest,
        reply: oneshot::Sender<Result<PeerResponse, P2pError>>,
    },
    /// To whoever answers at `addr`: its identity is learnt in the handshake.
    RequestAt {
        addr: Multiaddr,
        request: PeerRequest,
        reply: oneshot::Sender<Result<PeerResponse, P2pError>>,
    },
}

/// A cheap, cloneable way to talk to the swarm task.
#[derive(Clone)]
pub struct P2pHandle {
    local_peer_id: PeerId,
    outbound: mpsc::UnboundedSender<Outbound>,
    allowed: Arc<RwLock<HashSet<PeerId>>>,
    listen_addr: watch::Receiver<Option<SocketAddr>>,
    /// A test's partition: nothing goes out, nothing coming in is answered.
    isolated: Arc<AtomicBool>,
}

impl P2pHandle {
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The address the swarm listens on, once it does.
    pub async fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        let mut rx = self.listen_addr.clone();
        let addr = rx
            .wait_for(Option::is_some)
            .await
            .context("peer rpc stopped before listening")?;
        Ok(addr.expect("waited for some"))
    }

    /// Cuts this machine's peer RPC off from every other machine, or heals the cut: a
    /// partition for tests (gossip is not cut).
    #[cfg(feature = "testsuite")]
    pub fn isolate(&self, isolated: bool) {
        self.isolated.store(isolated, Ordering::SeqCst);
    }

    /// Replaces the set of peers whose requests are answered.
    pub fn set_allowed(&self, peers: HashSet<PeerId>) {
        *self.allowed.write().expect("allowed peers lock") = peers;
    }

    /// Sends `request` to whatever machine listens at `addr` (`ip:port`), learning its
    /// identity in the handshake: for a machine joining with only an address to go on.
    pub async fn request_at(
        &self,
        addr: &str,
        request: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, P2pError> {
        let target = addr.to_string();
        let addr = multiaddr(addr).ok_or_else(|| P2pError::BadAddress(target.clone()))?;
        let outbound = |reply| Outbound::RequestAt {
            addr,
            request,
            reply,
        };
        self.exchange(outbound, timeout, target).await
    }

    /// Sends `request` to the peer at `addr` (`ip:port`) and waits up to `timeout` for the answer.
    pub async fn request(
        &self,
        peer_id: &str,
        addr: &str,
        request: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, P2pError> {
        let peer: PeerId = peer_id
            .parse()
            .map_err(|_| P2pError::BadAddress(peer_id.to_string()))?;
        let addr = multiaddr(addr).ok_or_else(|| P2pError::BadAddress(addr.to_string()))?;
        let outbound = |reply| Outbound::Request {
            peer,
            addr,
            request,
            reply,
        };
        self.exchange(outbound, timeout, peer.to_string()).await
    }

    /// Hands the swarm task one request and waits up to `timeout` for its answer.
    async fn exchange(
        &self,
        outbound: impl FnOnce(oneshot::Sender<Result<PeerResponse, P2pError>>) -> Outbound,
        timeout: Duration,
        target: String,
    ) -> Result<PeerResponse, P2pError> {
        if self.isolated.load(Ordering::Relaxed) {
            tokio::time::sleep(timeout.min(Duration::from_millis(200))).await;
            return Err(P2pError::Timeout(target));
        }
        let (reply, rx) = oneshot::channel();
        self.outbound
            .send(outbound(reply))
            .map_err(|_| P2pError::Closed)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(P2pError::Closed),
            Err(_) => Err(P2pError::Timeout(target)),
        }
    }
}

/// `ip:port` as a TCP multiaddr.
fn multiaddr(addr: &str) -> Option<Multiaddr> {
    let addr: SocketAddr = addr.parse().ok()?;
    let ip = match addr.ip() {
        IpAddr::V4(ip) => Protocol::Ip4(ip),
        IpAddr::V6(ip) => Protocol::Ip6(ip),
    };
    Some(Multiaddr::empty().with(ip).with(Protocol::Tcp(addr.port())))
}

fn socket_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for part in addr.iter() {
        match part {
            Protocol::Ip4(v4) => ip = Some(IpAddr::V4(v4)),
            Protocol::Ip6(v6) => ip = Some(IpAddr::V6(v6)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

/// A started swarm: the handle, inbound requests from allowed peers, and gossip
/// addresses of machines mDNS found.
pub struct P2p {
    pub handle: P2pHandle,
    pub inbound: mpsc::Receiver<Inbound>,
    pub discovered: mpsc::UnboundedReceiver<SocketAddr>,
}

/// Starts the swarm listening on `listen`, with mDNS discovery if `use_mdns`.
pub fn start(
    keypair: Keypair,
    listen: SocketAddr,
    use_mdns: bool,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<P2p> {
    let rpc_config = request_response::Config::default()
        .with_request_timeout(Duration::from_secs(30))
        .with_max_concurrent_streams(4096);
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .context("building the peer transport")?
        .with_behaviour(|key| {
            let mdns = if use_mdns {
                let config = mdns::Config {
                    query_interval: MDNS_QUERY_INTERVAL,
                    ..mdns::Config::default()
                };
                Some(mdns::tokio::Behaviour::new(
                    config,
                    key.public().to_peer_id(),
                )?)
            } else {
                None
            };
            let rpc = Rpc::new([(codec::PROTOCOL, ProtocolSupport::Full)], rpc_config);
            Ok(Behaviour {
                rpc,
                mdns: Toggle::from(mdns),
            })
        })
        .context("building the peer rpc behaviour")?
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    let listen_multi = multiaddr(&listen.to_string()).context("peer rpc listen address")?;
    swarm
        .listen_on(listen_multi)
        .with_context(|| format!("cannot listen for peer rpc on {listen}"))?;

    let (outbound_tx, outbound_rx) = mpsc::unbounded_channel();
    let (inbound_tx, inbound_rx) = mpsc::channel(1024);
    let (discovered_tx, discovered_rx) = mpsc::unbounded_channel();
    let (listen_tx, listen_rx) = watch::channel(None);
    let allowed = Arc::new(RwLock::new(HashSet::new()));
    let isolated = Arc::new(AtomicBool::new(false));
    let handle = P2pHandle {
        local_peer_id: *swarm.local_peer_id(),
        outbound: outbound_tx,
        allowed: allowed.clone(),
        listen_addr: listen_rx,
        isolated: isolated.clone(),
    };
    let task = SwarmTask {
        swarm,
        outbound: outbound_rx,
        inbound: inbound_tx,
        allowed,
        isolated,
        listen: listen_tx,
        pending: HashMap::new(),
        answering: FuturesUnordered::new(),
        greeting: HashMap::new(),
        dialing: HashMap::new(),
        discovered: discovered_tx,
    };
    tokio::spawn(task.run(shutdown));
    Ok(P2p {
        handle,
        inbound: inbound_rx,
        discovered: discovered_rx,
    })
}

/// An answer being made; `None` when its handler dropped the request unanswered.
type Answer = BoxFuture<'static, (ResponseChannel<PeerResponse>, Option<PeerResponse>)>;

struct SwarmTask {
    swarm: Swarm<Behaviour>,
    outbound: mpsc::UnboundedReceiver<Outbound>,
    inbound: mpsc::Sender<Inbound>,
    allowed: Arc<RwLock<HashSet<PeerId>>>,
    isolated: Arc<AtomicBool>,
    listen: watch::Sender<Option<SocketAddr>>,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<PeerResponse, P2pError>>>,
    answering: FuturesUnordered<Answer>,
    /// Requests waiting for a connection to an address whose peer is not known yet.
    dialing: HashMap<ConnectionId, (PeerRequest, oneshot::Sender<Result<PeerResponse, P2pError>>)>,
    /// `Hello`s sent to peers mDNS found, by request.
    greeting: HashMap<OutboundRequestId, PeerId>,
    discovered: mpsc::UnboundedSender<SocketAddr>,
}

impl SwarmTask {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                Some(out) = self.outbound.recv() => self.send(out),
                Some((channel, response)) = self.answering.next(), if !self.answering.is_empty() => {
                    // The requester may have gone away; nothing to do then. A request its
                    // handler dropped closes its stream unanswered: the requester sees the
                    // failure, as when a connection breaks, and may retry.
                    if let Some(response) = response {
                        let _ = self.swarm.behaviour_mut().rpc.send_response(channel, response);
                    }
                }
                event = self.swarm.select_next_some() => self.on_event(event),
            }
        }
        tracing::debug!("peer rpc stopped");
    }

    fn send(&mut self, out: Outbound) {
        match out {
            Outbound::Request {
                peer,
                addr,
                request,
                reply,
            } => {
                self.swarm.add_peer_address(peer, addr);
                let id = self.swarm.behaviour_mut().rpc.send_request(&peer, request);
                self.pending.insert(id, reply);
            }
            Outbound::RequestAt {
                addr,
                request,
                reply,
            } => {
                let dial = DialOpts::unknown_peer_id().address(addr).build();
                let connection = dial.connection_id();
                match self.swarm.dial(dial) {
                    Ok(()) => {
                        self.dialing.insert(connection, (request, reply));
                    }
                    Err(err) => {
                        let _ = reply.send(Err(P2pError::Failed {
                            peer: *self.swarm.local_peer_id(),
                            reason: format!("cannot dial: {err}"),
                        }));
                    }
                }
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                if let Some(addr) = socket_addr(&address) {
                    tracing::info!(%addr, "peer rpc listening");
                    self.listen.send_replace(Some(addr));
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            } => {
                if let Some((request, reply)) = self.dialing.remove(&connection_id) {
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .rpc
                        .send_request(&peer_id, request);
                    self.pending.insert(id, reply);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.dialing.remove(&connection_id) {
                    let _ = reply.send(Err(P2pError::Failed {
                        peer: *self.swarm.local_peer_id(),
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(event)) => self.on_rpc(event),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                self.greet(found)
            }
            _ => {}
        }
    }

    fn on_rpc(&mut self, event: request_response::Event<PeerRequest, PeerResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    } else if self.greeting.remove(&request_id).is_some()
                        && let PeerResponse::Hello { gossip_addr } = response
                        && let Ok(addr) = gossip_addr.parse()
                    {
                        tracing::info!(%peer, gossip = %addr, "found a machine on the lan");
                        let _ = self.discovered.send(addr);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.greeting.remove(&request_id);
                if let Some(reply) = self.pending.remove(&request_id) {
                    let failure = match &error {
                        request_response::OutboundFailure::Io(io) => codec::TooLarge::within(io)
                            .map(|too_large| P2pError::TooLarge {
                                bytes: too_large.bytes,
                            }),
                        _ => None,
                    };
                    let _ = reply.send(Err(failure.unwrap_or_else(|| P2pError::Failed {
                        peer,
                        reason: error.to_string(),
                    })));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound peer request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Asks machines mDNS found, and that are not yet in the fleet, where they gossip.
    fn greet(&mut self, found: Vec<(PeerId, Multiaddr)>) {
        let allowed = self.allowed.read().expect("allowed peers lock").clone();
        for (peer, addr) in found {
            if peer == *self.swarm.local_peer_id()
                || allowed.contains(&peer)
                || self.greeting.values().any(|p| *p == peer)
            {
                continue;
            }
            self.swarm.add_peer_address(peer, addr);
            let id = self
                .swarm
                .behaviour_mut()
                .rpc
                .send_request(&peer, PeerRequest::Hello);
            self.greeting.insert(id, peer);
        }
    }

    fn on_request(
        &mut self,
        from: PeerId,
        request: PeerRequest,
        channel: ResponseChannel<PeerResponse>,
    ) {
        if self.isolated.load(Ordering::Relaxed) {
            return; // partitioned: the sender hears nothing back
        }
        let allowed = self
            .allowed
            .read()
            .expect("allowed peers lock")
            .contains(&from);
        if !allowed
            && !matches!(
                request,
                PeerRequest::Hello | PeerRequest::Join { .. } | PeerRequest::JoinChallenge { .. }
            )
        {
            tracing::warn!(peer = %from, "refused peer rpc from a machine outside the fleet");
            let reason = "this peer is not a machine of the fleet".to_string();
            let _ = self
                .swarm
                .behaviour_mut()
                .rpc
                .send_response(channel, PeerResponse::Refused(reason));
            return;
        }
        let (reply, rx) = oneshot::channel();
        if self
            .inbound
            .try_send(Inbound {
                from,
                request,
                reply,
            })
            .is_err()
        {
            let _ = self.swarm.behaviour_mut().rpc.send_response(
                channel,
                PeerResponse::Refused("peer rpc is overloaded".into()),
            );
            return;
        }
        self.answering
            .push(Box::pin(async move { (channel, rx.await.ok()) }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::{Command, MachineId};

    fn listen() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[tokio::test]
    async fn allowed_peers_are_answered_and_strangers_refused() {
        let (_stop_tx, stop) = watch::channel(false);
        let P2p {
            handle: server,
            mut inbound,
            ..
        } = start(Keypair::generate_ed25519(), listen(), false, stop.clone()).unwrap();
        let client = start(Keypair::generate_ed25519(), listen(), false, stop.clone())
            .unwrap()
            .handle;
        let stranger = start(Keypair::generate_ed25519(), listen(), false, stop)
            .unwrap()
            .handle;
        server.set_allowed(HashSet::from([client.local_peer_id()]));
        tokio::spawn(async move {
            while let Some(req) = inbound.recv().await {
                let _ = req.reply.send(PeerResponse::ReadIndex(Ok(42)));
            }
        });
        let addr = server.listen_addr().await.unwrap().to_string();
        let peer = server.local_peer_id().to_string();
        let ask = |handle: P2pHandle| {
            let (addr, peer) = (addr.clone(), peer.clone());
            async move {
                let req = PeerRequest::Forward(Command::RemoveMachine { id: MachineId(1) });
                handle
                    .request(&peer, &addr, req, Duration::from_secs(10))
                    .await
                    .unwrap()
            }
        };
        assert!(matches!(ask(client).await, PeerResponse::ReadIndex(Ok(42))));
        assert!(matches!(
            ask(stranger.clone()).await,
            PeerResponse::Refused(_)
        ));
        // Hello is answered for anyone: it only tells where to gossip.
        let hello = stranger
            .request(&peer, &addr, PeerRequest::Hello, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(matches!(hello, PeerResponse::ReadIndex(Ok(42))));
    }
}
