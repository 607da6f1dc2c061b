//! Replay protection for datagrams that opened: a time window around the local clock, and the
//! nonces seen within it, in a set of bounded size. Pure given `now_ms`.
//!
//! A datagram is fresh while `|now - sent| <= window`, so its nonce must be remembered until
//! `sent + window` has passed; after that the datagram is stale whatever the set says. When
//! the set is full of nonces still inside the window, a new datagram is dropped rather than
//! the set grown (only datagrams that opened with a fleet key get this far).

use std::collections::BTreeSet;

use shoal_protocol::UnixMillis;

use crate::datagram::NONCE_LEN;
use crate::drops::DropReason;

/// Most nonces remembered at once: about 2 MiB, and room for over 500 datagrams a second
/// with the default 30 s window (a node receives a few dozen).
pub const MAX_SEEN: usize = 32_768;

#[derive(Debug)]
pub struct ReplayGuard {
    window_ms: u64,
    cap: usize,
    /// (sent_ms, nonce), oldest first; the tag covers both, so a copy has the same pair.
    seen: BTreeSet<(UnixMillis, [u8; NONCE_LEN])>,
}

impl ReplayGuard {
    pub fn new(window_ms: u64, cap: usize) -> Self {
        ReplayGuard {
            window_ms,
            cap,
            seen: BTreeSet::new(),
        }
    }

    /// Accepts a datagram once, while it is fresh; remembers its nonce if so.
    pub fn check(
        &mut self,
        now_ms: UnixMillis,
        sent_ms: UnixMillis,
        nonce: [u8; NONCE_LEN],
    ) -> Result<(), DropReason> {
        if sent_ms.abs_diff(now_ms) > self.window_ms {
            return Err(DropReason::Stale);
        }
        while let Some(&(oldest, _)) = self.seen.first() {
            if oldest.saturating_add(self.window_ms) >= now_ms {
                break;
            }
            self.seen.pop_first();
        }
        if self.seen.contains(&(sent_ms, nonce)) {
            return Err(DropReason::Replayed);
        }
        if self.seen.len() >= self.cap {
            return Err(DropReason::ReplayCacheFull);
        }
        self.seen.insert((sent_ms, nonce));
        Ok(())
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: UnixMillis = 1_700_000_000_000;
    const WINDOW: u64 = 30_000;

    fn nonce(n: u32) -> [u8; NONCE_LEN] {
        let mut bytes = [0; NONCE_LEN];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        bytes
    }

    #[test]
    fn a_datagram_is_accepted_once() {
        let mut guard = ReplayGuard::new(WINDOW, 10);
        assert_eq!(guard.check(NOW, NOW - 5, nonce(1)), Ok(()));
        assert_eq!(
            guard.check(NOW + 1_000, NOW - 5, nonce(1)),
            Err(DropReason::Replayed)
        );
        assert_eq!(guard.check(NOW, NOW - 5, nonce(2)), Ok(()));
    }

    #[test]
    fn outside_the_window_is_stale_both_ways() {
        let mut guard = ReplayGuard::new(WINDOW, 10);
        assert_eq!(
            guard.check(NOW, NOW - WINDOW - 1, nonce(1)),
            Err(DropReason::Stale)
        );
        assert_eq!(
            guard.check(NOW, NOW + WINDOW + 1, nonce(2)),
            Err(DropReason::Stale)
        );
        assert_eq!(guard.check(NOW, NOW - WINDOW, nonce(3)), Ok(()));
        assert_eq!(guard.check(NOW, NOW + WINDOW, nonce(4)), Ok(()));
        assert_eq!(
            guard.check(0, UnixMillis::MAX, nonce(5)),
            Err(DropReason::Stale)
        );
        assert_eq!(
            guard.check(UnixMillis::MAX, 0, nonce(6)),
            Err(DropReason::Stale)
        );
    }

    #[test]
    fn a_replay_is_caught_until_it_is_stale() {
        let mut guard = ReplayGuard::new(WINDOW, 10);
        guard.check(NOW, NOW, nonce(1)).unwrap();
        assert_eq!(
            guard.check(NOW + WINDOW, NOW, nonce(1)),
            Err(DropReason::Replayed)
        );
        assert_eq!(
            guard.check(NOW + WINDOW + 1, NOW, nonce(1)),
            Err(DropReason::Stale)
        );
    }

    #[test]
    fn when_full_new_datagrams_are_dropped_until_old_ones_expire() {
        let mut guard = ReplayGuard::new(WINDOW, 3);
        for n in 0..3 {
            guard.check(NOW, NOW, nonce(n)).unwrap();
        }
        assert_eq!(
            guard.check(NOW, NOW, nonce(9)),
            Err(DropReason::ReplayCacheFull)
        );
        assert_eq!(guard.len(), 3);
        // Once the remembered ones can no longer be replayed, room comes back.
        let later = NOW + WINDOW + 1;
        assert_eq!(guard.check(later, later, nonce(9)), Ok(()));
        assert_eq!(guard.len(), 1);
    }

    proptest! {
        #[test]
        fn memory_stays_bounded_and_no_copy_is_accepted_twice(
            arrivals in proptest::collection::vec((0u64..120_000, 0u64..120_000, 0u32..50), 1..400)
        ) {
            let mut guard = ReplayGuard::new(WINDOW, 16);
            let mut accepted = std::collections::HashSet::new();
            let mut now = NOW;
            for (step, sent_offset, n) in arrivals {
                now += step % 500;
                let sent = NOW + sent_offset;
                if guard.check(now, sent, nonce(n)).is_ok() {
                    prop_assert!(accepted.insert((sent, n)), "accepted twice");
                    prop_assert!(sent.abs_diff(now) <= WINDOW);
                }
                prop_assert!(guard.len() <= 16);
            }
        }
    }
}
