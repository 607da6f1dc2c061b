//! The chitchat [`Socket`] that seals every datagram: chitchat's own codec encodes and decodes
//! on loopback, and only sealed bytes cross the real socket, so nothing from the network
//! reaches chitchat's parser before it opened with a fleet key. Until the fleet seals (see
//! [`crate::mode`]), the same socket also sends and reads chitchat's bytes as they are.
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
//!
//! Every opened body is read against [`crate::bounds`] before it goes to the decoder.
//!
//! The mode is read for every datagram, so [`crate::Gossip::set_mode`] takes effect at once.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, UdpSocket as ChitchatUdp};
use chitchat::{ChitchatEnvelope, ChitchatId, ChitchatMessage, ProtocolVersion};
use shoal_protocol::now_ms;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time;
use tracing::{debug, warn};

use crate::bounds::{self, Breach, NodeCap};
use crate::datagram::{self, MAX_CHITCHAT, MAX_DATAGRAM, NONCE_LEN};
use crate::drops::{DropCounters, DropReason};
use crate::keyring::GossipKeyring;
use crate::mode::{Form, GossipMode, PeerForms, form_of, forms_to_send};
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
    /// Chitchat's magic number, the first two bytes of a plain datagram.
    magic: [u8; 2],
    waiting: Waiting,
    keyring: watch::Receiver<GossipKeyring>,
    mode: watch::Receiver<GossipMode>,
    /// What each peer last sent, for [`GossipMode::Open`].
    peers: PeerForms,
    replay: ReplayGuard,
    nodes: NodeCap,
    drops: Arc<DropCounters>,
    /// One byte over the largest datagram, so a longer one shows as oversize.
    buf: Box<[u8]>,
}

impl SealedSocket {
    pub(crate) async fn open(
        wire: GossipSocket,
        keyring: watch::Receiver<GossipKeyring>,
        mode: watch::Receiver<GossipMode>,
        held: watch::Receiver<Arc<HashSet<ChitchatId>>>,
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
        let magic = match buf[..len] {
            [first, second, ..] if first != datagram::VERSION => [first, second],
            _ => anyhow::bail!(
                "chitchat's datagrams start with the sealed version byte: plain and sealed \
                 gossip cannot be told apart"
            ),
        };
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        Ok(SealedSocket {
            wire: wire.0,
            codec,
            hop,
            hop_addr,
            mark,
            mark_addr,
            marker: buf[..len].to_vec(),
            magic,
            waiting: Waiting::Idle,
            keyring,
            mode,
            peers: PeerForms::default(),
            replay: ReplayGuard::new(window_ms, MAX_SEEN),
            nodes: NodeCap::new(held),
            drops,
            buf,
        })
    }

    fn dropped(&self, reason: DropReason, from: SocketAddr) {
        self.drops.count(reason);
        debug!(from = %from, reason = reason.name(), "dropped a gossip datagram");
    }

    /// What of the datagram of `len` bytes in `buf` goes to chitchat's decoder, in `mode`.
    fn accept(
        &mut self,
        mode: GossipMode,
        from: SocketAddr,
        len: usize,
    ) -> Result<Vec<u8>, DropReason> {
        let datagram = &self.buf[..len];
        let form = match mode {
            // As a build without sealing: chitchat's decoder judges every datagram.
            GossipMode::Plain => Form::Plain,
            _ => form_of(datagram, self.magic).ok_or(if len > MAX_DATAGRAM {
                DropReason::Oversize
            } else {
                DropReason::Malformed
            })?,
        };
        let body = match form {
            Form::Plain if mode == GossipMode::Sealed => return Err(DropReason::Plain),
            Form::Plain if len > MAX_CHITCHAT => return Err(DropReason::Oversize),
            Form::Plain => datagram.to_vec(),
            Form::Sealed => open(&self.keyring, &mut self.replay, datagram)?,
        };
        match bounds::check(&body, &mut self.nodes, Instant::now()) {
            Ok(()) => {}
            Err(Breach::Undecodable) => return Err(DropReason::Undecodable),
            Err(breach) => {
                warn!(from = %from, breach = %breach, "dropped a gossip datagram out of bounds");
                return Err(DropReason::OutOfBounds);
            }
        }
        if mode == GossipMode::Open {
            self.peers.heard(from, form, Instant::now());
        }
        Ok(body)
    }

    /// Sends chitchat's `body` to `to` in `form`; returns the bytes sent (none when it is
    /// too large to seal).
    async fn send_as(&self, form: Form, to: SocketAddr, body: &[u8]) -> anyhow::Result<usize> {
        let sealed;
        let bytes = match form {
            Form::Plain => body,
            Form::Sealed => {
                let key = self.keyring.borrow().current().clone();
                let nonce: [u8; NONCE_LEN] = rand::random();
                sealed = match datagram::seal(&key, nonce, now_ms(), body) {
                    Ok(sealed) => sealed,
                    Err(reason) => {
                        self.drops.count(reason);
                        warn!(to = %to, len = body.len(), reason = reason.name(),
                            "gossip message not sent");
                        return Ok(0);
                    }
                };
                &sealed
            }
        };
        self.wire
            .send_to(bytes, to)
            .await
            .with_context(|| format!("failed to send gossip to {to}"))
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
        let body = self.buf[..len].to_vec();
        let mode = *self.mode.borrow();
        let mut num_bytes_sent = 0;
        for form in forms_to_send(mode, self.peers.last(to, Instant::now())) {
            num_bytes_sent += self.send_as(*form, to, &body).await?;
        }
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
            let mode = *self.mode.borrow();
            match self.accept(mode, from, len) {
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

#[cfg(test)]
mod tests;
