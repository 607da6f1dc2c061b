//! Shoal's membership layer: chitchat gossip sealed with the fleet key, announcements
//! authenticated with the cluster key, a typed view of every verified peer, and machine status
//! derivation.
//!
//! # What is sealed, and why
//!
//! **Every datagram** (once the fleet seals). Chitchat's parser and state machine trust their
//! input: a stranger on the LAN could stop a node with a few crafted datagrams (an `Ack` carrying a
//! version near `u64::MAX` trips an assert in chitchat's `state.rs`; a digest of a couple of
//! thousand made-up nodes trips `mtu >= 100` in its `delta.rs`), and one plain `Syn` got back
//! everything the fleet announces. So the socket chitchat is given ([`sealed`]) seals each datagram
//! it sends with XChaCha20-Poly1305 under the fleet's gossip key ([`keyring`]), and hands
//! chitchat only what opens. The format ([`datagram`]): a version byte, the key generation, a
//! random 24-byte nonce, then the ciphertext of the sender's clock and chitchat's bytes, with the
//! version and generation as associated data. A datagram sealed outside a window around this node's
//! clock, or whose nonce was seen within it, is dropped too (replay), with the nonces kept in a set
//! of bounded size. A datagram that does not open gets no answer at all, and is counted by reason
//! ([`Gossip::dropped_datagrams`]). The keyring holds a current key (sealing) and one other
//! (opening too), and can be replaced while running ([`Gossip::set_keyring`]), so the key can be
//! rotated without stopping the fleet. Generation 0 is derived from the cluster key; later ones
//! are random, and travel in the fleet's log sealed under the one before ([`key_chain`]).
//!
//! **Every announcement, end to end.** Each machine publishes one HMAC'd
//! [`Announcement`](shoal_protocol::Announcement) under [`keys::ANNOUNCE`] (see [`auth`]),
//! bound to the publishing node's chitchat id. Peers relay other nodes' state, so sealing the
//! hop is not enough to know who said what: a value that does not open with the cluster key
//! is never live (chitchat's liveness predicate) and never enters the [`PeerView`] list.
//!
//! **Bounded, even for the fleet key's holders.** A member (or a buggy build) can still seal
//! whatever it likes: the asserts above, a delta whose compressed blocks expand to many
//! megabytes, made-up nodes that chitchat then keeps. So each opened body is read first
//! against chitchat's wire format ([`bounds`]) and dropped (`out_of_bounds`, with a warning
//! naming the sender) if a version or heartbeat passes 2^48, a node's max version is below its
//! keys', a key is not one of Shoal's, its streams expand past 256 KiB, or its digest would
//! bring chitchat past 512 node states. Chitchat's encoder and decoder run on a loopback socket
//! (see [`sealed`]): a process on the same machine can reach that port, and what it sends is
//! decoded but never acted on (dropped as `stray`). A chitchat message within 53 bytes of
//! chitchat's largest datagram cannot be sealed into one UDP datagram and is not sent
//! (`too_large_to_seal`); chitchat only builds those when a fleet's state outgrows 64 KB.
//!
//! **On the wire**, a build without sealing cannot read a sealed datagram, and a sealing
//! node refuses plain ones. So a node has a [`GossipMode`] ([`mode`]): `Plain` (what an older
//! build does), `Open` (reads both, sends each peer the form it speaks: used while a fleet
//! upgrades) and `Sealed`; the daemon switches a node to `Sealed` once its fleet's protocol
//! level says every member seals ([`Gossip::set_mode`]). A plain datagram is told from a
//! sealed one by its first byte. Plain datagrams a sealed node drops are counted as `plain`.
//!
//! ```text
//!  watch<MachineInfo> --> publisher --HMAC--> chitchat self state --seal--UDP--> peers
//!                                                  |
//!  watch<Arc<Vec<PeerView>>> <-- PeerTracker <--verify-- chitchat node states <--open-- UDP
//!                                    |
//!                        derive_status (leader, pure)
//! ```

pub mod auth;
pub mod bounds;
pub mod datagram;
mod drops;
pub mod key_chain;
pub mod keyring;
pub mod keys;
pub mod mode;
mod node;
mod replay;
pub mod sealed;
pub mod status;
pub mod view;

pub use auth::{ClusterKey, open, seal};
pub use chitchat::ChitchatId;
pub use drops::{DropReason, DroppedDatagrams};
pub use keyring::{GossipKey, GossipKeyring};
pub use mode::GossipMode;
pub use node::{Gossip, GossipConfig, GossipStats};
pub use sealed::{GossipSocket, bind_udp};
pub use status::{Observation, StatusConfig, derive_status};
pub use view::{NodeSnapshot, PeerTracker, PeerView};

use shoal_protocol::MachineId;
use shoal_protocol::frame::FrameError;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// The value is not `<64 lowercase hex>.<base64url>`.
    #[error("malformed gossip value: {0}")]
    Malformed(&'static str),
    /// Wrong cluster key, a changed byte, or a value copied from another node.
    #[error("gossip value failed authentication")]
    BadMac,
    /// The announcement names another machine than the node that published it.
    #[error("gossip value names machine {claimed} but was published by node {node}")]
    WrongNode { claimed: MachineId, node: String },
    #[error("gossip value of {0} bytes is too large")]
    TooLarge(usize),
    #[error("gossip frame: {0}")]
    Frame(#[from] FrameError),
    /// A configuration value that cannot work; the message names the field.
    #[error("invalid gossip config: {0}")]
    Config(String),
    /// The gossip node has shut down.
    #[error("gossip has stopped")]
    Stopped,
}
