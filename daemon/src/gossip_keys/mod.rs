//! The gossip keyring on a node: the keys it holds in clear ([`NodeKeys`]), how it learns
//! new ones from the log (`chain`), rolls them out (`rollout`), and, as leader, makes them
//! (`rotation`). See `shoal_protocol::gossip_keys` for what the log holds.
//!
//! ```text
//!  admin ─RequestGossipKeyRotation─▶ log ◀─RetireMachine (level 7)
//!                                     │ rotation due (and removed machines out of Raft)
//!  leader: random key, sealed under the current one ─RotateGossipKey─▶ log
//!  every node, on apply: open it (chain) ─▶ accepting(new) ─switch─▶ rotate_to(new)
//!                                            ─grace─▶ new(new): the old key is refused
//! ```

pub mod chain;
pub mod file;
pub mod rollout;
pub mod rotation;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use shoal_gossip::{ClusterKey, GossipKey, GossipKeyring};
use tokio::sync::watch;

use self::file::StoredKeyring;

/// The gossip keys this node holds in clear: generation 0 (derived from the cluster
/// secret) and the newest it learned, at most [`file::MAX_STORED_KEYS`] of them, kept in
/// `data_dir/gossip.keyring`; and the generation it seals with.
pub struct NodeKeys {
    dir: PathBuf,
    root: GossipKey,
    known: Mutex<BTreeMap<u32, GossipKey>>,
    sealing: watch::Sender<u32>,
}

impl NodeKeys {
    /// The keys stored in `dir` (none before the first rotation) and the keyring gossip
    /// starts with: the sealing key, opening the other stored one too.
    pub fn load(dir: &Path, cluster_key: &ClusterKey) -> anyhow::Result<(NodeKeys, GossipKeyring)> {
        let root = GossipKey::derive(shoal_gossip::keyring::DEFAULT_GENERATION, cluster_key);
        let stored = file::load(dir)?;
        let keys = match &stored {
            Some(stored) => stored.keys()?,
            None => Vec::new(),
        };
        let known: BTreeMap<u32, GossipKey> =
            keys.into_iter().map(|k| (k.generation(), k)).collect();
        let sealing = stored.map_or(0, |s| s.sealing);
        let keys = NodeKeys {
            dir: dir.to_path_buf(),
            root,
            known: Mutex::new(known),
            sealing: watch::Sender::new(0),
        };
        let current = keys.key(sealing).unwrap_or_else(|| keys.newest());
        let mut ring = GossipKeyring::new(current.clone());
        if let Some(other) = keys.newest_except(current.generation()) {
            ring = ring.accepting(other)?;
        }
        keys.sealing.send_replace(current.generation());
        Ok((keys, ring))
    }

    /// The key of `generation`, if this node holds it.
    pub fn key(&self, generation: u32) -> Option<GossipKey> {
        if generation == self.root.generation() {
            return Some(self.root.clone());
        }
        self.lock().get(&generation).cloned()
    }

    /// The newest key this node holds.
    pub fn newest(&self) -> GossipKey {
        self.lock()
            .last_key_value()
            .map(|(_, key)| key.clone())
            .unwrap_or_else(|| self.root.clone())
    }

    /// The generation of [`Self::newest`], without copying the key.
    pub fn newest_generation(&self) -> u32 {
        self.lock()
            .last_key_value()
            .map_or(self.root.generation(), |(generation, _)| *generation)
    }

    fn newest_except(&self, generation: u32) -> Option<GossipKey> {
        self.all()
            .into_iter()
            .filter(|key| key.generation() != generation)
            .max_by_key(|key| key.generation())
    }

    /// Every key this node holds, generation 0 included, oldest first.
    pub fn all(&self) -> Vec<GossipKey> {
        let known = self.lock();
        std::iter::once(self.root.clone())
            .chain(known.values().cloned())
            .collect()
    }

    /// The generation gossip is sealed with now.
    pub fn sealing(&self) -> u32 {
        *self.sealing.borrow()
    }

    /// Keeps `keys` (newly opened from the log), forgetting all but the newest
    /// [`file::MAX_STORED_KEYS`], and stores them before gossip uses them.
    pub fn learn(&self, keys: Vec<GossipKey>) -> anyhow::Result<()> {
        {
            let mut known = self.lock();
            for key in keys {
                known.insert(key.generation(), key);
            }
            while known.len() > file::MAX_STORED_KEYS {
                known.pop_first();
            }
        }
        self.store()
    }

    /// Records that gossip seals with `generation` from now on, and stores it.
    pub fn sealing_with(&self, generation: u32) -> anyhow::Result<()> {
        self.sealing.send_replace(generation);
        self.store()
    }

    /// What this node hands a machine joining with a token: its keys and the one it seals
    /// with; `None` before the first rotation (the secret gives generation 0).
    pub fn for_joiner(&self) -> Option<StoredKeyring> {
        let known = self.lock();
        (!known.is_empty()).then(|| StoredKeyring::of(self.sealing(), known.values()))
    }

    fn store(&self) -> anyhow::Result<()> {
        let record = {
            let known = self.lock();
            StoredKeyring::of(self.sealing(), known.values())
        };
        file::store(&self.dir, &record)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, GossipKey>> {
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Keeps a keyring received when joining, so the first start opens gossip with it.
pub fn store_joined(dir: &Path, keyring: &StoredKeyring) -> anyhow::Result<()> {
    keyring.keys()?;
    file::store(dir, keyring)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ClusterKey {
        ClusterKey::from_secret("the secret").unwrap()
    }

    #[test]
    fn a_restart_seals_with_the_stored_generation_and_opens_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, ring) = NodeKeys::load(dir.path(), &cluster()).unwrap();
        assert_eq!(ring, GossipKeyring::from_cluster_key(&cluster()));
        assert_eq!(keys.for_joiner(), None);
        let (one, two, three) = (
            GossipKey::random(1),
            GossipKey::random(2),
            GossipKey::random(3),
        );
        keys.learn(vec![one.clone(), two.clone()]).unwrap();
        keys.sealing_with(1).unwrap();
        let (again, ring) = NodeKeys::load(dir.path(), &cluster()).unwrap();
        assert_eq!(ring.current(), &one);
        assert_eq!(ring.other(), Some(&two));
        assert_eq!(again.sealing(), 1);
        assert_eq!(again.newest(), two);
        again.learn(vec![three.clone()]).unwrap();
        assert_eq!(again.key(1), None, "only the newest two are kept");
        assert_eq!(again.key(0), Some(GossipKey::derive(0, &cluster())));
        assert_eq!(again.all().len(), 3);
    }
}
