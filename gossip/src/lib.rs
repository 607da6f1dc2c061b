//! Shoal's membership layer: chitchat gossip whose published state is authenticated with the
//! cluster key, a typed view of every verified peer, and machine status derivation.
//!
//! Every machine publishes one sealed [`Announcement`](shoal_protocol::Announcement) under
//! [`keys::ANNOUNCE`] (see [`auth`]). Chitchat's transport is not sealed (its wire codec is
//! private), so authentication is end to end on the published value instead: a node whose
//! value does not open with the cluster key is never live (chitchat's liveness predicate) and
//! never enters the [`PeerView`] list, and no one without the key can forge or alter what
//! another machine published. Gossip carries no secrets.
//!
//! ```text
//!  watch<MachineInfo> --> publisher --seal--> chitchat self state --UDP--> peers
//!                                                  |
//!  watch<Arc<Vec<PeerView>>> <-- PeerTracker <--open-- chitchat node states + liveness
//!                                    |
//!                        derive_status (leader, pure)
//! ```

pub mod auth;
pub mod keys;
mod node;
pub mod status;
pub mod view;

pub use auth::{ClusterKey, open, seal};
pub use chitchat::ChitchatId;
pub use chitchat::transport::Socket;
pub use node::{Gossip, GossipConfig, bind_udp};
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
