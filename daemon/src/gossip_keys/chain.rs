//! Opening the generations the log holds with the keys a node holds: each link with the
//! key before it. A node that holds none of the keys a link needs (it missed more
//! rotations than the log keeps) cannot go on: it must join again with a token.

use shoal_gossip::GossipKey;
use shoal_gossip::key_chain::open_next;
use shoal_protocol::gossip_keys::GossipKeys;

/// The keys in `log` newer than every key in `held`, opened in order. `held` must hold
/// the key before the first of them (or a later one); else the error says which
/// generation could not be opened and why.
pub fn open_newer(log: &GossipKeys, held: &[GossipKey]) -> Result<Vec<GossipKey>, String> {
    let newest_held = held.iter().map(GossipKey::generation).max().unwrap_or(0);
    let mut opened: Vec<GossipKey> = Vec::new();
    for link in log.sealed.iter().filter(|l| l.generation > newest_held) {
        let Some(before) = link.generation.checked_sub(1) else {
            return Err("the log names gossip key generation 0 as sealed".into());
        };
        let previous = opened
            .iter()
            .chain(held)
            .find(|key| key.generation() == before)
            .ok_or_else(|| {
                format!(
                    "gossip key generation {} is sealed under generation {before}, which this \
                     node does not hold (it missed more rotations than the log keeps): join \
                     the fleet again with a registration token",
                    link.generation
                )
            })?;
        let key = open_next(previous, link.generation, &link.sealed_key).map_err(|err| {
            format!(
                "cannot open gossip key generation {}: {err}",
                link.generation
            )
        })?;
        opened.push(key);
    }
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use shoal_gossip::key_chain::seal_next;
    use shoal_protocol::gossip_keys::SealedGossipKey;

    use super::*;

    /// A log that rotated `n` times from the secret's key, and every key in clear.
    fn rotated(n: u32) -> (GossipKeys, Vec<GossipKey>) {
        let mut keys = vec![GossipKey::from_secret(0, "secret").unwrap()];
        let mut log = GossipKeys::default();
        for generation in 1..=n {
            let next = GossipKey::random(generation);
            let sealed_key = seal_next(keys.last().unwrap(), &next).unwrap();
            log.push(SealedGossipKey {
                generation,
                sealed_key,
            });
            keys.push(next);
        }
        (log, keys)
    }

    #[test]
    fn a_node_two_rotations_behind_catches_up_and_one_further_behind_cannot() {
        let (log, keys) = rotated(4);
        // Up to date: nothing new.
        assert_eq!(open_newer(&log, &keys[4..]).unwrap(), vec![]);
        // One and two behind: opened link by link.
        assert_eq!(open_newer(&log, &keys[3..4]).unwrap(), keys[4..].to_vec());
        assert_eq!(open_newer(&log, &keys[2..3]).unwrap(), keys[3..].to_vec());
        // Three behind: generation 2 is no longer in the log.
        let err = open_newer(&log, &keys[1..2]).unwrap_err();
        assert!(err.contains("join the fleet again"), "{err}");
        // The secret alone opens the first rotation, not later ones once it is gone.
        let (fresh, fresh_keys) = rotated(1);
        assert_eq!(
            open_newer(&fresh, &fresh_keys[..1]).unwrap(),
            fresh_keys[1..]
        );
        assert!(open_newer(&log, &keys[..1]).is_err());
    }

    #[test]
    fn a_key_of_another_fleet_opens_nothing() {
        let (log, _) = rotated(1);
        let stranger = GossipKey::from_secret(0, "another secret").unwrap();
        let err = open_newer(&log, &[stranger]).unwrap_err();
        assert!(err.contains("cannot open"), "{err}");
    }
}
