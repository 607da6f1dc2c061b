//! Why a gossip datagram was dropped, and the counters a running node keeps of it
//! (read through [`crate::Gossip::dropped_datagrams`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a datagram never reached chitchat (or, for [`DropReason::TooLargeToSeal`], never left).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A plain chitchat datagram, which a node in [`crate::GossipMode::Sealed`] refuses: a
    /// build without sealing, a machine not yet upgraded, or a stranger.
    Plain,
    /// Neither plain chitchat nor a sealed datagram of a version this node reads: wrong
    /// version byte, or too short.
    Malformed,
    /// Longer than chitchat's largest datagram.
    Oversize,
    /// Sealed with a key generation this node's keyring does not hold.
    UnknownGeneration,
    /// The AEAD tag does not verify: another key, or a changed byte.
    BadTag,
    /// Sealed longer ago (or further ahead) than the datagram window.
    Stale,
    /// A nonce already seen within the window.
    Replayed,
    /// The set of recently seen nonces is full; dropped rather than let it grow.
    ReplayCacheFull,
    /// Opened, but chitchat could not decode what was inside.
    Undecodable,
    /// Opened and decoded, but asking more of chitchat than a node allows (see
    /// [`crate::bounds`]): only a holder of the fleet key can send one.
    OutOfBounds,
    /// Reached the internal loopback decoder from a local process other than this node.
    Stray,
    /// An outgoing chitchat message too large to seal within one UDP datagram.
    TooLargeToSeal,
}

impl DropReason {
    pub const ALL: [DropReason; 12] = [
        DropReason::Plain,
        DropReason::Malformed,
        DropReason::Oversize,
        DropReason::UnknownGeneration,
        DropReason::BadTag,
        DropReason::Stale,
        DropReason::Replayed,
        DropReason::ReplayCacheFull,
        DropReason::Undecodable,
        DropReason::OutOfBounds,
        DropReason::Stray,
        DropReason::TooLargeToSeal,
    ];

    /// A stable snake_case name, e.g. for a metrics label.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Plain => "plain",
            DropReason::Malformed => "malformed",
            DropReason::Oversize => "oversize",
            DropReason::UnknownGeneration => "unknown_generation",
            DropReason::BadTag => "bad_tag",
            DropReason::Stale => "stale",
            DropReason::Replayed => "replayed",
            DropReason::ReplayCacheFull => "replay_cache_full",
            DropReason::Undecodable => "undecodable",
            DropReason::OutOfBounds => "out_of_bounds",
            DropReason::Stray => "stray",
            DropReason::TooLargeToSeal => "too_large_to_seal",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How many datagrams a node dropped since it started, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DroppedDatagrams {
    counts: [u64; DropReason::ALL.len()],
}

impl DroppedDatagrams {
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason.index()]
    }

    /// Every reason with its count, in [`DropReason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .into_iter()
            .map(|reason| (reason, self.get(reason)))
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Counts by reason, e.g. to build a value in a test; a reason given twice adds up.
impl FromIterator<(DropReason, u64)> for DroppedDatagrams {
    fn from_iter<I: IntoIterator<Item = (DropReason, u64)>>(counts: I) -> Self {
        let mut dropped = DroppedDatagrams::default();
        for (reason, n) in counts {
            dropped.counts[reason.index()] += n;
        }
        dropped
    }
}

/// The live counters, shared by the sealing socket and the [`crate::Gossip`] handle.
#[derive(Debug, Default)]
pub(crate) struct DropCounters([AtomicU64; DropReason::ALL.len()]);

impl DropCounters {
    pub(crate) fn count(&self, reason: DropReason) {
        self.0[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> DroppedDatagrams {
        DroppedDatagrams {
            counts: std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_reason_has_its_own_slot_and_name() {
        let names: HashSet<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::ALL.len());
        for (i, reason) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
    }

    #[test]
    fn counts_add_up_by_reason() {
        let counters = DropCounters::default();
        counters.count(DropReason::BadTag);
        counters.count(DropReason::BadTag);
        counters.count(DropReason::Stale);
        let seen = counters.snapshot();
        assert_eq!(seen.get(DropReason::BadTag), 2);
        assert_eq!(seen.get(DropReason::Stale), 1);
        assert_eq!(seen.get(DropReason::Replayed), 0);
        assert_eq!(seen.total(), 3);
        assert_eq!(seen.iter().filter(|(_, n)| *n > 0).count(), 2);
        let built: DroppedDatagrams = [
            (DropReason::BadTag, 1),
            (DropReason::Stale, 1),
            (DropReason::BadTag, 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(built, seen);
    }
}
