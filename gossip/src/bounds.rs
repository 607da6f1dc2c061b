//! What an opened datagram may ask of chitchat.
//!
//! Chitchat trusts what it decodes: a version near `u64::MAX` overflows its counters and trips
//! the asserts in its `state.rs`; a `SetMaxVersion` below the versions of the keys before it
//! trips `node_delta.max_version >= self.max_version`; every node a digest names becomes a node
//! state it keeps, and once its own digest no longer leaves room for a delta in one datagram,
//! `mtu >= 100` in its `delta.rs` fails. Sealing keeps strangers out, but a holder of the fleet
//! key (a member, or a buggy build) could still send any of these. So each opened body is read
//! here first, against chitchat 0.13's wire format, and dropped if it breaks a bound:
//!
//! - every version, garbage-collection version and heartbeat is at most [`MAX_VERSION`];
//! - within one node's delta, a `SetMaxVersion` is not below the versions of its keys;
//! - a node id is at most [`MAX_NODE_ID`] bytes, a key at most [`MAX_KEY`] bytes and one of
//!   Shoal's (`shoal.` prefix), at most [`MAX_KEYS_PER_NODE`] keys per node in one delta;
//! - compressed streams expand to at most [`MAX_EXPANDED`] bytes;
//! - the digest may not bring chitchat's node states past [`MAX_NODES`] ([`NodeCap`]).
//!
//! A body that does not follow the format is dropped as chitchat would drop it
//! ([`Breach::Undecodable`]).
//!
//! Chitchat's codec is crate-private, so the format is read here with its public primitives
//! ([`Deserializable`]); the layout is chitchat 0.13's `message_serialize.rs`, `digest.rs` and
//! `delta.rs`, and `tests` below check it against messages chitchat itself encodes.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chitchat::{ChitchatId, Deserializable};
use tokio::sync::watch;

/// The most node states chitchat may hold (live, dead and not yet collected). At 512, this
/// node's own digest stays under 40 KB, so a reply always has room for a delta.
pub const MAX_NODES: usize = 512;

/// The highest version, garbage-collection version or heartbeat accepted: 2^48, which a node
/// bumping one key a millisecond reaches in nine thousand years, and far enough from
/// `u64::MAX` that chitchat's `+ 1` never overflows.
pub const MAX_VERSION: u64 = 1 << 48;

/// The longest node id accepted (Shoal's are 16 hex digits).
pub const MAX_NODE_ID: usize = 64;

/// The longest key accepted.
pub const MAX_KEY: usize = 64;

/// The prefix of every key Shoal publishes (see [`crate::keys`]).
pub const KEY_PREFIX: &str = "shoal.";

/// The most keys one node's delta may carry.
pub const MAX_KEYS_PER_NODE: usize = 16;

/// The most bytes a datagram's compressed streams may expand to.
pub const MAX_EXPANDED: usize = 256 * 1024;

/// Chitchat's largest block, expanded.
const MAX_BLOCK: usize = u16::MAX as usize;

/// How long a node a digest named stays counted before chitchat's state is seen holding it.
const PENDING_FOR: Duration = Duration::from_secs(60);

/// Chitchat's magic number, the first two bytes of every message.
const MAGIC: u16 = 45_139;

/// Why a body was not handed to chitchat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    /// Not chitchat 0.13's format: chitchat would have dropped it too.
    Undecodable,
    VersionTooHigh,
    MaxVersionBelowKeys,
    NodeIdTooLong,
    KeyNotShoals,
    TooManyKeys,
    TooLarge,
    TooManyNodes,
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Breach::Undecodable => "not chitchat's format",
            Breach::VersionTooHigh => "a version or heartbeat above 2^48",
            Breach::MaxVersionBelowKeys => "a node's max version below its keys' versions",
            Breach::NodeIdTooLong => "a node id over 64 bytes",
            Breach::KeyNotShoals => "a key that is not one of Shoal's",
            Breach::TooManyKeys => "more than 16 keys for one node",
            Breach::TooLarge => "compressed streams that expand past 256 KiB",
            Breach::TooManyNodes => "more nodes than the 512 a node keeps",
        })
    }
}

/// Counts the node states chitchat holds, and those digests were let add since it was last
/// seen, so that together they never pass [`MAX_NODES`].
pub(crate) struct NodeCap {
    /// The ids of chitchat's node states, as last published by the gossip runner.
    held: watch::Receiver<Arc<HashSet<ChitchatId>>>,
    /// Ids let in since, not yet seen in `held`, with when.
    let_in: HashMap<ChitchatId, Instant>,
}

impl NodeCap {
    pub(crate) fn new(held: watch::Receiver<Arc<HashSet<ChitchatId>>>) -> Self {
        NodeCap {
            held,
            let_in: HashMap::new(),
        }
    }

    /// Lets in the nodes `named` that chitchat does not hold yet, or refuses them all.
    fn admit(&mut self, named: Vec<ChitchatId>, now: Instant) -> Result<(), Breach> {
        let held = self.held.borrow_and_update().clone();
        self.let_in
            .retain(|id, at| !held.contains(id) && now.duration_since(*at) < PENDING_FOR);
        let new: HashSet<ChitchatId> = named
            .into_iter()
            .filter(|id| !held.contains(id) && !self.let_in.contains_key(id))
            .collect();
        if held.len() + self.let_in.len() + new.len() > MAX_NODES {
            return Err(Breach::TooManyNodes);
        }
        self.let_in.extend(new.into_iter().map(|id| (id, now)));
        Ok(())
    }
}

/// Reads chitchat's `body` and checks it keeps every bound; lets in the nodes its digest names.
pub(crate) fn check(body: &[u8], nodes: &mut NodeCap, now: Instant) -> Result<(), Breach> {
    let mut buf = body;
    if read::<u16>(&mut buf)? != MAGIC {
        return Err(Breach::Undecodable);
    }
    let version = read::<u8>(&mut buf)?;
    let mut named = Vec::new();
    match read::<u8>(&mut buf)? {
        // Syn: digest, cluster id.
        0 => {
            digest(version, &mut buf, &mut named)?;
            read::<String>(&mut buf)?;
        }
        // SynAck: digest, delta.
        1 => {
            digest(version, &mut buf, &mut named)?;
            delta(&mut buf)?;
        }
        // Ack: delta.
        2 => delta(&mut buf)?,
        // BadCluster.
        3 => {}
        _ => return Err(Breach::Undecodable),
    }
    nodes.admit(named, now)
}

fn read<T: Deserializable>(buf: &mut &[u8]) -> Result<T, Breach> {
    T::deserialize(buf).map_err(|_| Breach::Undecodable)
}

fn version(buf: &mut &[u8]) -> Result<u64, Breach> {
    let version = read::<u64>(buf)?;
    if version > MAX_VERSION {
        return Err(Breach::VersionTooHigh);
    }
    Ok(version)
}

fn node_id(buf: &mut &[u8]) -> Result<ChitchatId, Breach> {
    let id = read::<ChitchatId>(buf)?;
    if id.node_id.len() > MAX_NODE_ID {
        return Err(Breach::NodeIdTooLong);
    }
    Ok(id)
}

/// A digest: V0 is a count and entries, V1 a compressed stream of entries.
fn digest(protocol: u8, buf: &mut &[u8], named: &mut Vec<ChitchatId>) -> Result<(), Breach> {
    match protocol {
        0 => {
            for _ in 0..read::<u16>(buf)? {
                digest_entry(buf, named)?;
            }
        }
        1 => {
            let expanded = expand(buf)?;
            let mut entries = &expanded[..];
            while !entries.is_empty() {
                digest_entry(&mut entries, named)?;
            }
        }
        _ => return Err(Breach::Undecodable),
    }
    Ok(())
}

/// Node id, heartbeat, last garbage-collection version, max version.
fn digest_entry(buf: &mut &[u8], named: &mut Vec<ChitchatId>) -> Result<(), Breach> {
    let id = node_id(buf)?;
    for _ in 0..3 {
        version(buf)?;
    }
    named.push(id);
    Ok(())
}

/// A delta: a compressed stream of operations, each node's keys after its `Node` operation.
fn delta(buf: &mut &[u8]) -> Result<(), Breach> {
    let expanded = expand(buf)?;
    let mut ops = &expanded[..];
    // The keys seen for the current node, and the highest version among them.
    let mut node: Option<(usize, u64)> = None;
    while !ops.is_empty() {
        match read::<u8>(&mut ops)? {
            // Node: id, last garbage-collection version, from version (excluded).
            0 => {
                node_id(&mut ops)?;
                version(&mut ops)?;
                version(&mut ops)?;
                node = Some((0, 0));
            }
            // KeyValue: key, value, version, deletion status.
            1 => {
                let (keys, max) = node.as_mut().ok_or(Breach::Undecodable)?;
                let key = read::<String>(&mut ops)?;
                if key.len() > MAX_KEY || !key.starts_with(KEY_PREFIX) {
                    return Err(Breach::KeyNotShoals);
                }
                read::<String>(&mut ops)?;
                let kv_version = version(&mut ops)?;
                if read::<u8>(&mut ops)? > 2 {
                    return Err(Breach::Undecodable);
                }
                *keys += 1;
                if *keys > MAX_KEYS_PER_NODE {
                    return Err(Breach::TooManyKeys);
                }
                *max = (*max).max(kv_version);
            }
            // SetMaxVersion: the node's max version.
            2 => {
                let (_, max) = node.as_mut().ok_or(Breach::Undecodable)?;
                let max_version = version(&mut ops)?;
                if max_version < *max {
                    return Err(Breach::MaxVersionBelowKeys);
                }
                *max = max_version;
            }
            _ => return Err(Breach::Undecodable),
        }
    }
    Ok(())
}

/// Reads a compressed stream (blocks, each zstd or raw, then a 0 byte) and expands it.
fn expand(buf: &mut &[u8]) -> Result<Vec<u8>, Breach> {
    let mut expanded = Vec::new();
    let mut block = vec![0; MAX_BLOCK];
    loop {
        let kind = read::<u8>(buf)?;
        if kind == 0 {
            return Ok(expanded);
        }
        let len = usize::from(read::<u16>(buf)?);
        let bytes = buf.get(..len).ok_or(Breach::Undecodable)?;
        *buf = &buf[len..];
        match kind {
            1 => {
                let n = zstd::bulk::decompress_to_buffer(bytes, &mut block[..])
                    .map_err(|_| Breach::Undecodable)?;
                expanded.extend_from_slice(&block[..n]);
            }
            2 => expanded.extend_from_slice(bytes),
            _ => return Err(Breach::Undecodable),
        }
        if expanded.len() > MAX_EXPANDED {
            return Err(Breach::TooLarge);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
