//! The fleet's chain of gossip keys as the log holds it: each generation after 0 is a
//! random key sealed (XChaCha20-Poly1305) under the key of the generation before it, so
//! the log never holds a key in clear, and a machine that holds generation `g` opens
//! `g + 1`, then `g + 2`, and so on.
//!
//! ```text
//!  sealed key = version (1) | nonce (24 random bytes) | XChaCha20-Poly1305(key, 32) + tag (16)
//!  associated data = domain | version | previous generation (u32 BE) | generation (u32 BE)
//! ```
//!
//! Generation 0 is derived from the cluster secret (see [`crate::GossipKey::derive`]), so
//! whoever holds the secret and the log up to generation 1 opens generation 1; the log is
//! sent only to members, and a removed machine is sent nothing after its removal.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::{GossipError, GossipKey};

/// The format of a sealed key.
const VERSION: u8 = 1;
/// Bound into the associated data, so a sealed key is never taken for anything else.
const DOMAIN: &[u8] = b"shoal gossip key chain v1\0";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;

/// The length of every sealed key: version, nonce, key and tag.
pub const SEALED_KEY_LEN: usize = 1 + NONCE_LEN + KEY_LEN + TAG_LEN;
// The log's bound on a sealed key is this length.
const _: () = assert!(SEALED_KEY_LEN == shoal_protocol::gossip_keys::SEALED_KEY_LEN);

/// Seals `next` under `previous`, with a fresh random nonce. `next` must be the generation
/// right after `previous`.
pub fn seal_next(previous: &GossipKey, next: &GossipKey) -> Result<Vec<u8>, GossipError> {
    check_follows(previous, next.generation())?;
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let ad = associated_data(previous.generation(), next.generation());
    let sealed = cipher(previous)
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: next.secret_bytes(),
                aad: &ad,
            },
        )
        .map_err(|_| GossipError::Config("key chain: cannot seal the key".into()))?;
    let mut out = Vec::with_capacity(SEALED_KEY_LEN);
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens the key of `generation` that `sealed` holds, with the key of the generation
/// before it. A wrong key, a changed byte, another generation or another length is an
/// error, never a wrong key.
pub fn open_next(
    previous: &GossipKey,
    generation: u32,
    sealed: &[u8],
) -> Result<GossipKey, GossipError> {
    check_follows(previous, generation)?;
    if sealed.len() != SEALED_KEY_LEN || sealed[0] != VERSION {
        return Err(GossipError::Malformed("sealed gossip key"));
    }
    let (nonce, body) = sealed[1..].split_at(NONCE_LEN);
    let ad = associated_data(previous.generation(), generation);
    let key = cipher(previous)
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: body,
                aad: &ad,
            },
        )
        .map_err(|_| GossipError::BadMac)?;
    let key: [u8; KEY_LEN] = key
        .try_into()
        .map_err(|_| GossipError::Malformed("sealed gossip key"))?;
    Ok(GossipKey::from_bytes(generation, key))
}

fn check_follows(previous: &GossipKey, generation: u32) -> Result<(), GossipError> {
    if previous.generation().checked_add(1) != Some(generation) {
        return Err(GossipError::Config(format!(
            "key chain: generation {generation} does not follow {}",
            previous.generation()
        )));
    }
    Ok(())
}

fn associated_data(previous: u32, generation: u32) -> Vec<u8> {
    let mut ad = Vec::with_capacity(DOMAIN.len() + 9);
    ad.extend_from_slice(DOMAIN);
    ad.push(VERSION);
    ad.extend_from_slice(&previous.to_be_bytes());
    ad.extend_from_slice(&generation.to_be_bytes());
    ad
}

fn cipher(key: &GossipKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(Key::from_slice(key.secret_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> GossipKey {
        GossipKey::from_secret(0, "the cluster secret").unwrap()
    }

    #[test]
    fn a_chain_opens_link_by_link_and_never_holds_a_key_in_clear() {
        let zero = root();
        let one = GossipKey::random(1);
        let two = GossipKey::random(2);
        let sealed_one = seal_next(&zero, &one).unwrap();
        let sealed_two = seal_next(&one, &two).unwrap();
        assert_eq!(sealed_one.len(), SEALED_KEY_LEN);
        for (sealed, key) in [(&sealed_one, &one), (&sealed_two, &two)] {
            let clear = key.secret_bytes();
            assert!(!sealed.windows(clear.len()).any(|w| w == clear));
        }
        let opened_one = open_next(&zero, 1, &sealed_one).unwrap();
        assert_eq!(opened_one, one);
        assert_eq!(open_next(&opened_one, 2, &sealed_two).unwrap(), two);
        // Two seals of one key differ (fresh nonces).
        assert_ne!(seal_next(&zero, &one).unwrap(), sealed_one);
    }

    #[test]
    fn random_keys_are_not_derived_from_the_secret() {
        let one = GossipKey::random(1);
        assert_ne!(
            one,
            GossipKey::from_secret(1, "the cluster secret").unwrap()
        );
        assert_ne!(one, GossipKey::random(1));
    }

    #[test]
    fn a_wrong_key_generation_or_byte_is_refused() {
        let zero = root();
        let one = GossipKey::random(1);
        let sealed = seal_next(&zero, &one).unwrap();
        let other_fleet = GossipKey::from_secret(0, "another secret").unwrap();
        assert!(matches!(
            open_next(&other_fleet, 1, &sealed),
            Err(GossipError::BadMac)
        ));
        // Not the generation it was sealed as, even with a key of the right generation.
        let as_two = open_next(&GossipKey::from_bytes(1, *zero.secret_bytes()), 2, &sealed);
        assert!(matches!(as_two, Err(GossipError::BadMac)));
        assert!(open_next(&zero, 2, &sealed).is_err());
        assert!(seal_next(&zero, &GossipKey::random(3)).is_err());
        for at in [0, 1, SEALED_KEY_LEN - 1] {
            let mut changed = sealed.clone();
            changed[at] ^= 1;
            assert!(open_next(&zero, 1, &changed).is_err(), "byte {at}");
        }
        for len in [0, 1, SEALED_KEY_LEN - 1, SEALED_KEY_LEN + 1] {
            let bytes = vec![VERSION; len];
            assert!(open_next(&zero, 1, &bytes).is_err(), "length {len}");
        }
        let last = GossipKey::from_bytes(u32::MAX, [7; 32]);
        assert!(open_next(&last, 0, &sealed).is_err());
    }
}
