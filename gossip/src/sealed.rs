//! The chitchat [`Socket`] that seals every datagram: chitchat's own codec encodes and decodes
//! on loopback, and only sealed bytes cross the real socket, so nothing from the network
//! reaches chitchat's parser before it opened with a fleet key.
//!
//! ```text
//!  send:  chitchat --envelope--> codec --bytes--> hop --seal--> wire --> peer
//!  recv:  peer --> wire --open, replay check--> hop --bytes--> codec --envelope--> chitchat
//!                                              mark --marker--> codec
//! ```
//!
//! `codec` is chitchat's `UdpSocket` on 127.0.0.1 (its wire codec is crate-private); `hop` and
//! `mark` are loopback sockets connected to it. Chitchat's decoder skips bytes it cannot
//! decode without a word, so after each opened body `mark` sends a marker (chitchat's
//! `BadCluster`): a marker with no envelope from `hop` before it means the body did not
//! decode. Loopback delivers a datagram (or drops it) within the send call, in order, so one
//! body and its marker are in flight at a time and an envelope is handed to chitchat with the
//! address of the peer that sealed it.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, UdpSocket as ChitchatUdp};
use chitchat::{ChitchatEnvelope, ChitchatMessage, ProtocolVersion};
use shoal_protocol::UnixMillis;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time;
use tracing::{debug, warn};

use crate::datagram::{self, MAX_DATAGRAM, NONCE_LEN};
use crate::drops::{DropCounters, DropReason};
use crate::keyring::GossipKeyring;
use crate::replay::{MAX_SEEN, ReplayGuard};

/// Longer than loopback ever takes: a datagram not there by then was dropped.
const LOOPBACK_WAIT: Duration = Duration::from_secs(1);

/// The UDP socket gossip listens on, bound by the caller before the node starts.
#[derive(Debug)]
pub struct GossipSocket(UdpSocket);

impl GossipSocket {
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        let socket = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("failed to bind to {addr}/UDP for gossip"))?;
        Ok(GossipSocket(socket))
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.0
            .local_addr()
            .context("failed to get the gossip socket's address")
    }
}

/// Binds a UDP socket for gossip; returns it with the address it got (port 0 picks one).
pub async fn bind_udp(addr: SocketAddr) -> anyhow::Result<(GossipSocket, SocketAddr)> {
    let socket = GossipSocket::bind(addr).await?;
    let local = socket.local_addr()?;
    Ok((socket, local))
}

/// What the decoder owes us next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// Nothing in flight: read the wire.
    Idle,
    /// The envelope of a body opened from this peer, or the marker if it did not decode.
    Body(SocketAddr),
    /// The marker behind a body that decoded.
    Marker,
}

pub(crate) struct SealedSocket {
    wire: UdpSocket,
    codec: ChitchatUdp,
    hop: UdpSocket,
    hop_addr: SocketAddr,
    mark: UdpSocket,
    mark_addr: SocketAddr,
    marker: Vec<u8>,
    waiting: Waiting,
    keyring: watch::Receiver<GossipKeyring>,
    replay: ReplayGuard,
    drops: Arc<DropCounters>,
    /// One byte over the largest datagram, so a longer one shows as oversize.
    buf: Box<[u8]>,
}

impl SealedSocket {
    pub(crate) async fn open(
        wire: GossipSocket,
        keyring: watch::Receiver<GossipKeyring>,
        drops: Arc<DropCounters>,
        window: Duration,
    ) -> anyhow::Result<Self> {
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut codec = ChitchatUdp::open(loopback).await?;
        let codec_addr = codec.local_addr()?;
        let connected = || async {
            let socket = UdpSocket::bind(loopback).await?;
            socket.connect(codec_addr).await?;
            let addr = socket.local_addr()?;
            anyhow::Ok((socket, addr))
        };
        let (hop, hop_addr) = connected().await.context("gossip loopback socket")?;
        let (mark, mark_addr) = connected().await.context("gossip loopback socket")?;
        let mut buf = vec![0; MAX_DATAGRAM + 1].into_boxed_slice();
        let bad_cluster = ChitchatEnvelope {
            version: ProtocolVersion::V0,
            message: ChitchatMessage::BadCluster,
        };
        codec.send(hop_addr, bad_cluster).await?;
        let len = time::timeout(LOOPBACK_WAIT, hop.recv(&mut buf))
            .await
            .context("gossip encoder: no marker on loopback")??;
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        Ok(SealedSocket {
            wire: wire.0,
            codec,
            hop,
            hop_addr,
            mark,
            mark_addr,
            marker: buf[..len].to_vec(),
            waiting: Waiting::Idle,
            keyring,
            replay: ReplayGuard::new(window_ms, MAX_SEEN),
            drops,
            buf,
        })
    }

    fn dropped(&self, reason: DropReason, from: SocketAddr) {
        self.drops.count(reason);
        debug!(from = %from, reason = reason.name(), "dropped a gossip datagram");
    }

    /// Hands an opened body to the decoder, with the marker behind it.
    fn feed(&mut self, from: SocketAddr, body: &[u8]) {
        if let Err(err) = self.hop.try_send(body) {
            warn!(error = %err, "gossip decoder: loopback send failed");
            self.dropped(DropReason::Undecodable, from);
            return;
        }
        // Without its marker, the wait below times out and nothing worse happens.
        if let Err(err) = self.mark.try_send(&self.marker) {
            warn!(error = %err, "gossip decoder: loopback send failed");
        }
        self.waiting = Waiting::Body(from);
    }

    /// Reads the decoder once; returns an envelope from a peer, if that is what came.
    async fn decoded(&mut self) -> anyhow::Result<Option<RecvOutcome>> {
        let Ok(outcome) = time::timeout(LOOPBACK_WAIT, self.codec.recv()).await else {
            warn!(waiting = ?self.waiting, "gossip decoder: a datagram was lost on loopback");
            if let Waiting::Body(from) = self.waiting {
                self.dropped(DropReason::Undecodable, from);
            }
            self.waiting = Waiting::Idle;
            return Ok(None);
        };
        let outcome = outcome?;
        match (outcome.from_addr, self.waiting) {
            (addr, Waiting::Body(peer)) if addr == self.hop_addr => {
                self.waiting = Waiting::Marker;
                return Ok(Some(RecvOutcome {
                    from_addr: peer,
                    ..outcome
                }));
            }
            (addr, waiting) if addr == self.mark_addr => {
                if let Waiting::Body(peer) = waiting {
                    self.dropped(DropReason::Undecodable, peer);
                }
                self.waiting = Waiting::Idle;
            }
            (addr, _) => self.dropped(DropReason::Stray, addr),
        }
        Ok(None)
    }
}

/// Opens a datagram and checks it is fresh and new; returns chitchat's bytes.
fn open(
    keyring: &watch::Receiver<GossipKeyring>,
    replay: &mut ReplayGuard,
    datagram: &[u8],
) -> Result<Vec<u8>, DropReason> {
    let opened = datagram::open(&keyring.borrow(), datagram)?;
    replay.check(now_ms(), opened.sent_ms, opened.nonce)?;
    Ok(opened.body)
}

#[async_trait]
impl Socket for SealedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.wire
            .local_addr()
            .context("failed to get the gossip socket's address")
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        // Bytes left by a send cancelled half way would be taken for this message.
        while self.hop.try_recv(&mut self.buf).is_ok() {}
        self.codec.send(self.hop_addr, envelope).await?;
        let len = time::timeout(LOOPBACK_WAIT, self.hop.recv(&mut self.buf))
            .await
            .context("gossip encoder: a datagram was lost on loopback")??;
        let key = self.keyring.borrow().current().clone();
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = match datagram::seal(&key, nonce, now_ms(), &self.buf[..len]) {
            Ok(sealed) => sealed,
            Err(reason) => {
                self.drops.count(reason);
                warn!(to = %to, len, reason = reason.name(), "gossip message not sent");
                return Ok(SendOutcome { num_bytes_sent: 0 });
            }
        };
        let num_bytes_sent = self
            .wire
            .send_to(&sealed, to)
            .await
            .with_context(|| format!("failed to send gossip to {to}"))?;
        Ok(SendOutcome { num_bytes_sent })
    }

    /// Cancel-safe: what is in flight on loopback is remembered in `self.waiting`.
    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            if self.waiting != Waiting::Idle {
                if let Some(outcome) = self.decoded().await? {
                    return Ok(outcome);
                }
                continue;
            }
            let (len, from) = match self.wire.recv_from(&mut self.buf).await {
                Ok(received) => received,
                Err(err) if is_transient(&err) => {
                    debug!(error = %err, "transient gossip receive error");
                    continue;
                }
                Err(err) => return Err(err).context("fatal gossip receive error"),
            };
            match open(&self.keyring, &mut self.replay, &self.buf[..len]) {
                Ok(body) => self.feed(from, &body),
                Err(reason) => self.dropped(reason, from),
            }
        }
    }
}

/// The errors chitchat's own UDP socket shrugs off.
fn is_transient(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::OutOfMemory
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

fn now_ms() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as UnixMillis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::GossipKey;

    const WINDOW: Duration = Duration::from_secs(30);

    fn ring() -> GossipKeyring {
        GossipKeyring::new(GossipKey::from_secret(1, "fleet").unwrap())
    }

    async fn sealed_socket() -> (SealedSocket, SocketAddr, Arc<DropCounters>) {
        let (wire, addr) = bind_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let (_, keyring) = watch::channel(ring());
        let drops = Arc::new(DropCounters::default());
        let socket = SealedSocket::open(wire, keyring, drops.clone(), WINDOW)
            .await
            .unwrap();
        (socket, addr, drops)
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
        assert_eq!(drops.get(DropReason::Malformed), 1);
        assert_eq!(drops.get(DropReason::Replayed), 1);
    }
}
