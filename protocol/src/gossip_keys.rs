//! The fleet's gossip keys as the log holds them ([`FleetState::gossip_keys`]): the
//! generations after 0, each a random key sealed under the key of the generation before
//! it (the sealing lives in `shoal_gossip::key_chain`; this crate holds bytes only), and
//! whether a rotation is due.
//!
//! Only the newest [`GOSSIP_KEYS_KEPT`] generations are kept: a machine that holds one of
//! them, or the one before the oldest, opens the newest link by link; one further behind
//! must join again. Commands: [`Command::RequestGossipKeyRotation`] (an admin) and
//! [`Command::RotateGossipKey`] (the leader); from [`GOSSIP_KEYRING_LEVEL`] on, a
//! [`Command::RetireMachine`] marks a rotation due as well.
//!
//! [`FleetState::gossip_keys`]: crate::FleetState::gossip_keys
//! [`Command::RequestGossipKeyRotation`]: crate::Command::RequestGossipKeyRotation
//! [`Command::RotateGossipKey`]: crate::Command::RotateGossipKey
//! [`Command::RetireMachine`]: crate::Command::RetireMachine
//! [`GOSSIP_KEYRING_LEVEL`]: crate::levels::GOSSIP_KEYRING_LEVEL

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::MachineId;

/// How many sealed generations the log keeps: the current one and the one before it.
pub const GOSSIP_KEYS_KEPT: usize = 2;

/// The length of a sealed key: format byte, 24-byte nonce, 32-byte key, 16-byte tag.
pub const SEALED_KEY_LEN: usize = 1 + 24 + 32 + 16;

/// The format of [`GossipKeys`] this build writes.
pub const GOSSIP_KEYS_FORMAT: u8 = 1;

/// How many removed machines a due rotation waits on at most (it waits for each to
/// leave the Raft configuration); past it, the oldest is no longer waited on.
pub const MAX_AWAITED_REMOVALS: usize = 256;

/// One generation of the gossip key, sealed under the key of the generation before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedGossipKey {
    pub generation: u32,
    /// [`SEALED_KEY_LEN`] bytes.
    pub sealed_key: Vec<u8>,
}

/// The gossip keys in the log, and whether a rotation is due. Absent from a state written
/// before [`crate::levels::GOSSIP_KEYRING_LEVEL`]: generation 0 only, nothing due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipKeys {
    /// The record's format ([`GOSSIP_KEYS_FORMAT`]).
    #[serde(default = "first_format")]
    pub format: u8,
    /// The newest generations after 0, oldest first (at most [`GOSSIP_KEYS_KEPT`]).
    #[serde(default)]
    pub sealed: Vec<SealedGossipKey>,
    /// An admin asked for a rotation, or a machine was removed: the leader rotates.
    #[serde(default)]
    pub rotation_due: bool,
    /// Removed machines the due rotation waits on: the leader rotates once none of them
    /// is in the Raft configuration (so none is sent the new key).
    #[serde(default)]
    pub awaiting_removal: BTreeSet<MachineId>,
}

fn first_format() -> u8 {
    GOSSIP_KEYS_FORMAT
}

impl Default for GossipKeys {
    fn default() -> Self {
        GossipKeys {
            format: GOSSIP_KEYS_FORMAT,
            sealed: Vec::new(),
            rotation_due: false,
            awaiting_removal: BTreeSet::new(),
        }
    }
}

impl GossipKeys {
    /// The generation gossip is sealed with once the newest rotation has rolled out (0
    /// before any).
    pub fn generation(&self) -> u32 {
        self.sealed.last().map_or(0, |key| key.generation)
    }

    /// Marks a rotation due (an admin's request).
    pub fn request_rotation(&mut self) {
        self.rotation_due = true;
    }

    /// Marks a rotation due once `machine`, just removed, has left the Raft configuration.
    pub fn rotate_after_removal(&mut self, machine: MachineId) {
        self.rotation_due = true;
        self.awaiting_removal.insert(machine);
        while self.awaiting_removal.len() > MAX_AWAITED_REMOVALS {
            self.awaiting_removal.pop_first();
        }
    }

    /// Why `key` cannot be the next generation, if it cannot: it must follow the current
    /// generation and be [`SEALED_KEY_LEN`] bytes.
    pub fn refuse_next(&self, key: &SealedGossipKey) -> Option<String> {
        let current = self.generation();
        if current.checked_add(1) != Some(key.generation) {
            return Some(format!(
                "gossip key generation {} does not follow the current generation {current}",
                key.generation
            ));
        }
        if key.sealed_key.len() != SEALED_KEY_LEN {
            return Some(format!(
                "a sealed gossip key is {SEALED_KEY_LEN} bytes, not {}",
                key.sealed_key.len()
            ));
        }
        None
    }

    /// Adds the next generation (checked with [`Self::refuse_next`] first), forgets the
    /// generations past [`GOSSIP_KEYS_KEPT`], and clears the due rotation.
    pub fn push(&mut self, key: SealedGossipKey) {
        self.sealed.push(key);
        let excess = self.sealed.len().saturating_sub(GOSSIP_KEYS_KEPT);
        self.sealed.drain(..excess);
        self.rotation_due = false;
        self.awaiting_removal.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(generation: u32) -> SealedGossipKey {
        SealedGossipKey {
            generation,
            sealed_key: vec![generation as u8; SEALED_KEY_LEN],
        }
    }

    #[test]
    fn generations_follow_one_another_and_only_the_newest_are_kept() {
        let mut keys = GossipKeys::default();
        assert_eq!(keys.generation(), 0);
        keys.rotate_after_removal(MachineId(3));
        assert!(keys.rotation_due);
        for generation in 1..=4 {
            assert_eq!(keys.refuse_next(&sealed(generation)), None);
            keys.push(sealed(generation));
            assert_eq!(keys.generation(), generation);
            assert!(!keys.rotation_due && keys.awaiting_removal.is_empty());
        }
        let kept: Vec<u32> = keys.sealed.iter().map(|k| k.generation).collect();
        assert_eq!(kept, vec![3, 4]);
    }

    #[test]
    fn a_stale_skipped_or_misshapen_key_is_refused() {
        let mut keys = GossipKeys::default();
        keys.push(sealed(1));
        for wrong in [sealed(1), sealed(3), sealed(0)] {
            assert!(keys.refuse_next(&wrong).is_some(), "{wrong:?}");
        }
        let short = SealedGossipKey {
            generation: 2,
            sealed_key: vec![0; SEALED_KEY_LEN - 1],
        };
        assert!(keys.refuse_next(&short).unwrap().contains("bytes"));
        let mut last = GossipKeys::default();
        last.push(sealed(u32::MAX));
        assert!(last.refuse_next(&sealed(0)).is_some());
    }

    #[test]
    fn awaited_removals_are_bounded() {
        let mut keys = GossipKeys::default();
        for id in 0..(MAX_AWAITED_REMOVALS as u64 + 10) {
            keys.rotate_after_removal(MachineId(id));
        }
        assert_eq!(keys.awaiting_removal.len(), MAX_AWAITED_REMOVALS);
        assert!(!keys.awaiting_removal.contains(&MachineId(0)));
    }

    #[test]
    fn a_record_without_fields_reads_as_generation_zero() {
        let keys: GossipKeys = serde_json::from_str("{}").unwrap();
        assert_eq!(keys, GossipKeys::default());
        assert_eq!(keys.format, GOSSIP_KEYS_FORMAT);
    }
}
