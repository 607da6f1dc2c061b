//! Chitchat datagrams written byte by byte, as a stranger without the key sends them, and a
//! bare chitchat node (no sealing) to show what they do.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chitchat::transport::{Socket, Transport, UdpSocket};
use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ProtocolVersion,
    Serializable, spawn_chitchat,
};

const MAGIC: u16 = 45_139;
const V0: u8 = 0;
const SYN: u8 = 0;
pub const SYN_ACK: u8 = 1;
const ACK: u8 = 2;
const NO_MORE_BLOCKS: u8 = 0;
const UNCOMPRESSED_BLOCK: u8 = 2;
const NODE_OP: u8 = 0;
const KEY_VALUE_OP: u8 = 1;
const SET: u8 = 0;

/// Where made-up nodes claim to gossip: the discard port on loopback, so a node that
/// believes them sends nothing off this machine.
fn nowhere() -> SocketAddr {
    "127.0.0.1:9".parse().unwrap()
}

fn header(kind: u8) -> Vec<u8> {
    let mut buf = Vec::new();
    MAGIC.serialize(&mut buf);
    V0.serialize(&mut buf);
    kind.serialize(&mut buf);
    buf
}

/// The message type of a chitchat datagram, if it is one.
pub fn message_type(bytes: &[u8]) -> Option<u8> {
    (bytes.len() >= 4 && bytes[..2] == MAGIC.to_le_bytes()).then(|| bytes[3])
}

/// A Syn whose digest lists `fake_nodes` made-up nodes named `<prefix><i>`.
pub fn syn(cluster_id: &str, prefix: &str, fake_nodes: u16) -> Vec<u8> {
    let mut buf = header(SYN);
    fake_nodes.serialize(&mut buf);
    for i in 0..fake_nodes {
        ChitchatId::new(format!("{prefix}{i}"), 1, nowhere()).serialize(&mut buf);
        let (heartbeat, last_gc_version, max_version) = (1u64, 0u64, 1u64);
        for field in [heartbeat, last_gc_version, max_version] {
            field.serialize(&mut buf);
        }
    }
    cluster_id.serialize(&mut buf);
    buf
}

/// An Ack whose delta sets a key of `target` at `version`: near `u64::MAX`, the target's
/// next write of its own state overflows.
pub fn ack(target: &ChitchatId, version: u64) -> Vec<u8> {
    let mut ops = Vec::new();
    NODE_OP.serialize(&mut ops);
    target.serialize(&mut ops);
    let (last_gc_version, from_version_excluded) = (0u64, 0u64);
    last_gc_version.serialize(&mut ops);
    from_version_excluded.serialize(&mut ops);
    KEY_VALUE_OP.serialize(&mut ops);
    "shoal.announce".serialize(&mut ops);
    "forged".serialize(&mut ops);
    version.serialize(&mut ops);
    SET.serialize(&mut ops);

    let mut buf = header(ACK);
    UNCOMPRESSED_BLOCK.serialize(&mut buf);
    u16::try_from(ops.len()).unwrap().serialize(&mut buf);
    buf.extend(ops);
    NO_MORE_BLOCKS.serialize(&mut buf);
    buf
}

/// Hands chitchat a socket bound beforehand, so its id can carry the real port.
struct PreBound(Mutex<Option<Box<dyn Socket>>>);

#[async_trait]
impl Transport for PreBound {
    async fn open(&self, _: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        self.0
            .lock()
            .unwrap()
            .take()
            .ok_or_else(|| anyhow::anyhow!("opened twice"))
    }
}

/// A chitchat node as chitchat ships it: plain UDP, no key.
pub async fn bare_chitchat(cluster_id: &str) -> (ChitchatHandle, ChitchatId) {
    let socket = UdpSocket::open("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = socket.local_addr().unwrap();
    let id = ChitchatId::new("bare".to_string(), 1, addr);
    let config = ChitchatConfig {
        chitchat_id: id.clone(),
        cluster_id: cluster_id.into(),
        gossip_interval: Duration::from_millis(50),
        listen_addr: addr,
        seed_nodes: Vec::new(),
        failure_detector_config: FailureDetectorConfig::default(),
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V0,
    };
    let transport = PreBound(Mutex::new(Some(Box::new(socket))));
    let handle = spawn_chitchat(config, vec![("k".into(), "v".into())], &transport)
        .await
        .unwrap();
    (handle, id)
}
