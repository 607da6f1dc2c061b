//! `data_dir/gossip.keyring`: the gossip keys this node holds in clear (generations after
//! 0; generation 0 is derived from the cluster secret) and the one it seals with, so a
//! restart opens gossip with the right key before Raft catches up. Mode 0600, written to a
//! temporary file and renamed over the old one; JSON with a format number.
//!
//! The same record travels to a machine that joins with a registration token, inside the
//! join answer (over the noise-encrypted peer channel).

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use shoal_gossip::GossipKey;

/// The file's name in the data directory.
pub const KEYRING_FILE: &str = "gossip.keyring";

/// The format this build writes.
const FORMAT: u8 = 1;

/// The most keys a record holds (the newest and the one before it); a longer one is refused.
pub const MAX_STORED_KEYS: usize = 2;

/// A file larger than this is not a keyring.
const MAX_FILE_BYTES: u64 = 4096;

/// One key in clear, hex-encoded.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    pub generation: u32,
    pub key: String,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredKey(generation {}, <redacted>)", self.generation)
    }
}

/// What `gossip.keyring` holds, and what a join answer carries. A later format changes
/// `format` (which an older build refuses, saying so) rather than adding fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKeyring {
    /// The record's format (1).
    pub format: u8,
    /// The generation this node seals with.
    pub sealing: u32,
    /// The keys after generation 0, oldest first (at most [`MAX_STORED_KEYS`]).
    pub keys: Vec<StoredKey>,
}

impl StoredKeyring {
    /// A record of `keys` (generation 0 left out: it is derived), sealing with `sealing`.
    pub fn of<'a>(sealing: u32, keys: impl IntoIterator<Item = &'a GossipKey>) -> Self {
        let mut keys: Vec<StoredKey> = keys
            .into_iter()
            .filter(|key| key.generation() > 0)
            .map(|key| StoredKey {
                generation: key.generation(),
                key: hex::encode(key.secret_bytes()),
            })
            .collect();
        keys.sort_by_key(|key| key.generation);
        let excess = keys.len().saturating_sub(MAX_STORED_KEYS);
        keys.drain(..excess);
        StoredKeyring {
            format: FORMAT,
            sealing,
            keys,
        }
    }

    /// The keys it holds, checked: a known format, at most [`MAX_STORED_KEYS`] keys of
    /// 32 bytes each, distinct generations after 0.
    pub fn keys(&self) -> anyhow::Result<Vec<GossipKey>> {
        if self.format != FORMAT {
            anyhow::bail!("gossip keyring format {} is not known", self.format);
        }
        if self.keys.len() > MAX_STORED_KEYS {
            anyhow::bail!("a gossip keyring holds at most {MAX_STORED_KEYS} keys");
        }
        let mut out: Vec<GossipKey> = Vec::with_capacity(self.keys.len());
        for stored in &self.keys {
            let bytes: [u8; 32] = hex::decode(&stored.key)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .with_context(|| {
                    format!(
                        "gossip key generation {} is not 32 bytes of hex",
                        stored.generation
                    )
                })?;
            if stored.generation == 0 || out.iter().any(|k| k.generation() == stored.generation) {
                anyhow::bail!(
                    "gossip key generation {} is repeated or 0",
                    stored.generation
                );
            }
            out.push(GossipKey::from_bytes(stored.generation, bytes));
        }
        Ok(out)
    }
}

/// The keyring stored in `dir`, if there is one.
pub fn load(dir: &Path) -> anyhow::Result<Option<StoredKeyring>> {
    let path = dir.join(KEYRING_FILE);
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    if meta.len() > MAX_FILE_BYTES {
        anyhow::bail!("{} is too large to be a gossip keyring", path.display());
    }
    let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let stored: StoredKeyring = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a gossip keyring", path.display()))?;
    stored
        .keys()
        .with_context(|| format!("{}", path.display()))?;
    Ok(Some(stored))
}

/// Stores `keyring` in `dir` (0600, write then rename).
pub fn store(dir: &Path, keyring: &StoredKeyring) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(keyring)?;
    crate::identity::write_private(&dir.join(KEYRING_FILE), &bytes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_keyring_survives_a_restart_privately_and_never_holds_generation_zero() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let zero = GossipKey::from_secret(0, "secret").unwrap();
        let (one, two, three) = (
            GossipKey::random(1),
            GossipKey::random(2),
            GossipKey::random(3),
        );
        let ring = StoredKeyring::of(2, [&three, &zero, &one, &two]);
        assert_eq!(ring.keys().unwrap(), vec![two.clone(), three.clone()]);
        store(dir.path(), &ring).unwrap();
        let loaded = load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded, ring);
        let mode = std::fs::metadata(dir.path().join(KEYRING_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{loaded:?}").contains(&hex::encode(two.secret_bytes())));
    }

    #[test]
    fn a_damaged_keyring_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = "ab".repeat(32);
        let bad = [
            "not json".to_string(),
            format!(r#"{{"format":2,"sealing":1,"keys":[{{"generation":1,"key":"{key}"}}]}}"#),
            r#"{"format":1,"sealing":1,"keys":[{"generation":1,"key":"abcd"}]}"#.to_string(),
            format!(r#"{{"format":1,"sealing":0,"keys":[{{"generation":0,"key":"{key}"}}]}}"#),
            format!(
                r#"{{"format":1,"sealing":1,"keys":[{{"generation":1,"key":"{key}"}},{{"generation":1,"key":"{key}"}}]}}"#
            ),
            "x".repeat(MAX_FILE_BYTES as usize + 1),
        ];
        for text in bad {
            std::fs::write(dir.path().join(KEYRING_FILE), &text).unwrap();
            assert!(load(dir.path()).is_err(), "{text}");
        }
    }
}
