//! The sealed gossip datagram: pure functions, no I/O and no clock but the one given.
//!
//! ```text
//!  0         1               5                        29
//!  | version | generation u32 | nonce (24 random bytes) | XChaCha20-Poly1305(plaintext) + tag (16) |
//!  \_______ associated data _/
//!
//!  plaintext = sender's wall clock, Unix ms (u64) | chitchat's datagram bytes
//! ```
//!
//! All integers are big-endian. The associated data binds the version and the generation, so
//! neither can be changed without failing the tag.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use shoal_protocol::UnixMillis;

use crate::drops::DropReason;
use crate::keyring::{GossipKey, GossipKeyring};

/// The format version, first byte of every sealed datagram.
pub const VERSION: u8 = 1;
pub const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const AD_LEN: usize = 1 + 4;
const HEADER_LEN: usize = AD_LEN + NONCE_LEN;
const STAMP_LEN: usize = 8;
/// Bytes a sealed datagram adds to chitchat's.
pub const OVERHEAD: usize = HEADER_LEN + STAMP_LEN + TAG_LEN;
/// The largest UDP payload over IPv4, so the largest datagram this node sends or reads.
pub const MAX_DATAGRAM: usize = 65_507;
/// Chitchat's largest datagram (its `MAX_UDP_DATAGRAM_PAYLOAD_SIZE`): nothing longer is
/// handed to its decoder.
pub const MAX_CHITCHAT: usize = 65_507;

/// A datagram that opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub generation: u32,
    pub nonce: [u8; NONCE_LEN],
    /// The sender's wall clock when it sealed the datagram.
    pub sent_ms: UnixMillis,
    /// Chitchat's bytes.
    pub body: Vec<u8>,
}

/// Seals chitchat's `body` with `key`; `nonce` must be random (never reused with a key).
pub fn seal(
    key: &GossipKey,
    nonce: [u8; NONCE_LEN],
    sent_ms: UnixMillis,
    body: &[u8],
) -> Result<Vec<u8>, DropReason> {
    if body.len() + OVERHEAD > MAX_DATAGRAM {
        return Err(DropReason::TooLargeToSeal);
    }
    let ad = associated_data(key.generation());
    let mut plaintext = Vec::with_capacity(STAMP_LEN + body.len());
    plaintext.extend_from_slice(&sent_ms.to_be_bytes());
    plaintext.extend_from_slice(body);
    let sealed = cipher(key)
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plaintext,
                aad: &ad,
            },
        )
        .map_err(|_| DropReason::TooLargeToSeal)?;
    let mut datagram = Vec::with_capacity(HEADER_LEN + sealed.len());
    datagram.extend_from_slice(&ad);
    datagram.extend_from_slice(&nonce);
    datagram.extend_from_slice(&sealed);
    Ok(datagram)
}

/// Opens a datagram with whichever key of `ring` its generation names.
pub fn open(ring: &GossipKeyring, datagram: &[u8]) -> Result<Opened, DropReason> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(DropReason::Oversize);
    }
    if datagram.len() < OVERHEAD || datagram[0] != VERSION {
        return Err(DropReason::Malformed);
    }
    let (ad, rest) = datagram.split_at(AD_LEN);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let generation = u32::from_be_bytes([ad[1], ad[2], ad[3], ad[4]]);
    let key = ring
        .for_generation(generation)
        .ok_or(DropReason::UnknownGeneration)?;
    let plaintext = cipher(key)
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: ad,
            },
        )
        .map_err(|_| DropReason::BadTag)?;
    let (stamp, body) = plaintext
        .split_first_chunk::<STAMP_LEN>()
        .ok_or(DropReason::Malformed)?;
    if body.len() > MAX_CHITCHAT {
        return Err(DropReason::Oversize);
    }
    let mut nonce_bytes = [0; NONCE_LEN];
    nonce_bytes.copy_from_slice(nonce);
    Ok(Opened {
        generation,
        nonce: nonce_bytes,
        sent_ms: UnixMillis::from_be_bytes(*stamp),
        body: body.to_vec(),
    })
}

fn associated_data(generation: u32) -> [u8; AD_LEN] {
    let g = generation.to_be_bytes();
    [VERSION, g[0], g[1], g[2], g[3]]
}

fn cipher(key: &GossipKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(Key::from_slice(key.bytes()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(generation: u32, secret: &str) -> GossipKey {
        GossipKey::from_secret(generation, secret).unwrap()
    }

    fn ring(generation: u32) -> GossipKeyring {
        GossipKeyring::new(key(generation, "fleet"))
    }

    #[test]
    fn round_trip_and_layout() {
        let body = b"chitchat bytes";
        let sealed = seal(&key(7, "fleet"), [9; NONCE_LEN], 1_700_000_000_123, body).unwrap();
        assert_eq!(sealed.len(), body.len() + OVERHEAD);
        assert_eq!(sealed[0], VERSION);
        assert_eq!(sealed[1..5], 7u32.to_be_bytes());
        assert_eq!(sealed[5..29], [9; NONCE_LEN]);
        assert!(
            !sealed.windows(body.len()).any(|w| w == body),
            "body is in clear"
        );
        let opened = open(&ring(7), &sealed).unwrap();
        assert_eq!(
            opened,
            Opened {
                generation: 7,
                nonce: [9; NONCE_LEN],
                sent_ms: 1_700_000_000_123,
                body: body.to_vec(),
            }
        );
    }

    #[test]
    fn each_failure_has_its_reason() {
        let sealed = seal(&key(1, "fleet"), [1; NONCE_LEN], 5, b"x").unwrap();
        assert_eq!(open(&ring(2), &sealed), Err(DropReason::UnknownGeneration));
        let wrong = GossipKeyring::new(key(1, "guess"));
        assert_eq!(open(&wrong, &sealed), Err(DropReason::BadTag));
        assert_eq!(
            open(&ring(1), &sealed[..OVERHEAD - 1]),
            Err(DropReason::Malformed)
        );
        assert_eq!(open(&ring(1), b""), Err(DropReason::Malformed));
        let mut other_version = sealed.clone();
        other_version[0] = VERSION + 1;
        assert_eq!(open(&ring(1), &other_version), Err(DropReason::Malformed));
        // Relabelling the generation breaks the tag even where both keys are held.
        let both = ring(1).accepting(key(2, "fleet")).unwrap();
        let mut relabelled = sealed.clone();
        relabelled[4] = 2;
        assert_eq!(open(&both, &relabelled), Err(DropReason::BadTag));
        assert_eq!(
            open(&ring(1), &vec![VERSION; MAX_DATAGRAM + 1]),
            Err(DropReason::Oversize)
        );
    }

    #[test]
    fn bodies_fit_up_to_the_udp_limit_less_the_overhead() {
        let sealed = seal(&key(1, "fleet"), [2; NONCE_LEN], 5, b"").unwrap();
        assert_eq!(open(&ring(1), &sealed).unwrap().body, b"");
        let largest = vec![0; MAX_DATAGRAM - OVERHEAD];
        let sealed = seal(&key(1, "fleet"), [3; NONCE_LEN], 5, &largest).unwrap();
        assert_eq!(sealed.len(), MAX_DATAGRAM);
        assert_eq!(open(&ring(1), &sealed).unwrap().body, largest);
        let too_large = vec![0; MAX_DATAGRAM - OVERHEAD + 1];
        assert_eq!(
            seal(&key(1, "fleet"), [4; NONCE_LEN], 5, &too_large),
            Err(DropReason::TooLargeToSeal)
        );
    }

    proptest! {
        #[test]
        fn garbage_never_opens_nor_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert!(open(&ring(0), &bytes).is_err());
        }

        #[test]
        fn every_flipped_bit_fails(body in proptest::collection::vec(any::<u8>(), 0..100), bit in 0usize..1600) {
            let sealed = seal(&key(0, "fleet"), [5; NONCE_LEN], 77, &body).unwrap();
            let mut flipped = sealed.clone();
            let bit = bit % (flipped.len() * 8);
            flipped[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(open(&ring(0), &flipped).is_err());
            prop_assert_eq!(open(&ring(0), &sealed).unwrap().body, body);
        }
    }
}
