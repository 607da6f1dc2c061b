//! The keys that seal gossip datagrams: one [`GossipKey`] per generation (generation 0
//! derived from the cluster key, later ones random, see [`crate::key_chain`]), and the
//! [`GossipKeyring`] a node seals with (current) and opens with (current or one other).
//!
//! Rotating without losing a datagram takes three steps, each applied on every node
//! (through [`crate::Gossip::set_keyring`]) before the next one starts:
//!
//! ```text
//!  1. ring.accepting(new)   seal with old, open old or new
//!  2. ring.rotate_to(new)   seal with new, open new or old
//!  3. GossipKeyring::new(new)  old is refused
//! ```
//!
//! Skipping step 1 works too; replies of nodes that rotated are then dropped by nodes that
//! have not (counted as `unknown_generation`) until they rotate as well.

use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{ClusterKey, GossipError};

/// Domain string hashed with the generation and the cluster key to derive a datagram key.
const KEY_DOMAIN: &[u8] = b"shoal gossip datagram key v1\0";

/// The generation [`GossipKeyring::from_cluster_key`] gives the configured key.
pub const DEFAULT_GENERATION: u32 = 0;

/// A 256-bit XChaCha20-Poly1305 key with the generation number that names it on the wire.
///
/// Its `Debug` output never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct GossipKey {
    generation: u32,
    key: [u8; 32],
}

impl GossipKey {
    /// Derives the key of `generation`: SHA-256 of a domain string, the generation and the
    /// cluster key, so each generation of one secret gets its own key.
    pub fn derive(generation: u32, cluster_key: &ClusterKey) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(KEY_DOMAIN);
        hasher.update(generation.to_be_bytes());
        hasher.update(cluster_key.as_bytes());
        GossipKey {
            generation,
            key: hasher.finalize().into(),
        }
    }

    /// A new random key of `generation`, from a CSPRNG (rand's `ThreadRng`: ChaCha12
    /// seeded by the operating system). Nothing, the cluster secret included, computes it.
    pub fn random(generation: u32) -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        GossipKey { generation, key }
    }

    /// The key of `generation` with these bytes (one a node stored, or opened from the
    /// fleet's key chain).
    pub fn from_bytes(generation: u32, key: [u8; 32]) -> Self {
        GossipKey { generation, key }
    }

    /// The key's bytes, for a node to store in its private keyring file or hand to a
    /// joining machine over an encrypted channel. Never log them.
    pub fn secret_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// Derives the key of `generation` from a cluster secret (see [`ClusterKey::from_secret`]).
    pub fn from_secret(generation: u32, secret: impl AsRef<[u8]>) -> Result<Self, GossipError> {
        Ok(Self::derive(generation, &ClusterKey::from_secret(secret)?))
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.key
    }
}

impl fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GossipKey(generation {}, <redacted>)", self.generation)
    }
}

/// What a node seals with (`current`) and what it opens (`current`, or `other`: the previous
/// key after a rotation, or the next one before it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipKeyring {
    current: GossipKey,
    other: Option<GossipKey>,
}

impl GossipKeyring {
    /// A keyring of one key.
    pub fn new(current: GossipKey) -> Self {
        GossipKeyring {
            current,
            other: None,
        }
    }

    /// The keyring the cluster key alone gives: one key, of [`DEFAULT_GENERATION`].
    pub fn from_cluster_key(cluster_key: &ClusterKey) -> Self {
        Self::new(GossipKey::derive(DEFAULT_GENERATION, cluster_key))
    }

    /// This keyring, also opening datagrams sealed with `key` (step 1 of a rotation, or
    /// keeping an old key). Replaces any other key it opened; refuses the current generation.
    pub fn accepting(&self, key: GossipKey) -> Result<Self, GossipError> {
        if key.generation == self.current.generation {
            return Err(GossipError::Config(format!(
                "keyring: generation {} is already the current key",
                key.generation
            )));
        }
        Ok(GossipKeyring {
            current: self.current.clone(),
            other: Some(key),
        })
    }

    /// Seals with `next` from now on and still opens the current key (step 2 of a rotation).
    pub fn rotate_to(&self, next: GossipKey) -> Result<Self, GossipError> {
        if next.generation == self.current.generation {
            return Err(GossipError::Config(format!(
                "keyring: generation {} is already the current key",
                next.generation
            )));
        }
        Ok(GossipKeyring {
            current: next,
            other: Some(self.current.clone()),
        })
    }

    /// The key every datagram is sealed with.
    pub fn current(&self) -> &GossipKey {
        &self.current
    }

    /// The other key datagrams may be opened with, if any.
    pub fn other(&self) -> Option<&GossipKey> {
        self.other.as_ref()
    }

    /// The key that opens datagrams of `generation`, if this keyring holds one.
    pub fn for_generation(&self, generation: u32) -> Option<&GossipKey> {
        std::iter::once(&self.current)
            .chain(&self.other)
            .find(|key| key.generation == generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(secret: &str) -> ClusterKey {
        ClusterKey::from_secret(secret).unwrap()
    }

    #[test]
    fn keys_differ_by_secret_and_generation() {
        let a1 = GossipKey::derive(1, &cluster("a"));
        assert_eq!(a1, GossipKey::from_secret(1, "a").unwrap());
        assert_ne!(a1.bytes(), GossipKey::derive(2, &cluster("a")).bytes());
        assert_ne!(a1.bytes(), GossipKey::derive(1, &cluster("b")).bytes());
        // Not the announcement key either.
        assert_ne!(a1.bytes(), cluster("a").as_bytes());
        assert!(GossipKey::from_secret(1, "").is_err());
    }

    #[test]
    fn debug_hides_the_key() {
        let key = GossipKey::derive(7, &cluster("secret"));
        let ring = GossipKeyring::new(key.clone());
        for shown in [format!("{key:?}"), format!("{ring:?}")] {
            assert!(!shown.contains(&hex::encode(key.bytes())), "{shown}");
            assert!(shown.contains("generation 7"), "{shown}");
        }
    }

    #[test]
    fn rotation_seals_with_the_new_key_and_opens_both() {
        let old = GossipKey::derive(1, &cluster("s"));
        let new = GossipKey::derive(2, &cluster("s"));
        let ring = GossipKeyring::new(old.clone());
        assert_eq!(ring.for_generation(2), None);

        let step1 = ring.accepting(new.clone()).unwrap();
        assert_eq!(step1.current(), &old);
        assert_eq!(step1.for_generation(2), Some(&new));

        let step2 = step1.rotate_to(new.clone()).unwrap();
        assert_eq!(step2.current(), &new);
        assert_eq!(step2.other(), Some(&old));
        assert_eq!(step2.for_generation(1), Some(&old));

        let step3 = GossipKeyring::new(new.clone());
        assert_eq!(step3.for_generation(1), None);
        assert_eq!(step3.for_generation(2), Some(&new));
    }

    #[test]
    fn the_current_generation_cannot_be_added_twice() {
        let ring = GossipKeyring::new(GossipKey::derive(3, &cluster("s")));
        let same_generation = GossipKey::derive(3, &cluster("t"));
        assert!(ring.accepting(same_generation.clone()).is_err());
        assert!(ring.rotate_to(same_generation).is_err());
    }

    #[test]
    fn the_cluster_key_gives_one_key_of_the_default_generation() {
        let ring = GossipKeyring::from_cluster_key(&cluster("s"));
        assert_eq!(ring.current().generation(), DEFAULT_GENERATION);
        assert_eq!(ring.other(), None);
    }
}
