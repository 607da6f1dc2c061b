//! The cluster key and the sealing of announcements published through chitchat.
//!
//! A sealed value is `<hex HMAC-SHA256>.<base64url frame>`. The MAC covers a domain tag, the
//! publishing node's whole chitchat id (node id, generation, gossip address) and the frame
//! bytes, so a value copied into another node's state, or into a new generation of the same
//! node, fails to open. Opening also requires the announcement to name the machine whose
//! chitchat node id carries it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chitchat::ChitchatId;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use shoal_protocol::{Announcement, frame};

use crate::GossipError;

type HmacSha256 = Hmac<Sha256>;

/// Domain string hashed with the cluster secret to derive the key.
const KEY_DOMAIN: &[u8] = b"shoal gossip cluster key v1\0";
/// Domain tag in front of every MAC input.
const MAC_DOMAIN: &[u8] = b"shoal gossip announce v1\0";
/// Separates the MAC from the frame in a sealed value.
const SEPARATOR: char = '.';
/// Length of the hex MAC in front of the separator.
const MAC_HEX_LEN: usize = 64;
/// Longest sealed value accepted; chitchat datagrams are at most 64 KiB anyway.
pub const MAX_SEALED_LEN: usize = 60 * 1024;

/// The key every machine of a fleet derives from the shared cluster secret.
///
/// Its `Debug` output never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; 32]);

impl ClusterKey {
    /// Derives the key: SHA-256 of a domain string followed by the secret.
    pub fn from_secret(secret: impl AsRef<[u8]>) -> Result<Self, GossipError> {
        let secret = secret.as_ref();
        if secret.is_empty() {
            return Err(GossipError::Config(
                "cluster secret must not be empty".into(),
            ));
        }
        let mut hasher = Sha256::new();
        hasher.update(KEY_DOMAIN);
        hasher.update(secret);
        Ok(ClusterKey(hasher.finalize().into()))
    }

    /// The derived key, for deriving further keys (see [`crate::GossipKey::derive`]).
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self, node: &ChitchatId, frame: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("hmac takes keys of any length");
        mac.update(MAC_DOMAIN);
        let node_id = node.node_id.as_bytes();
        let addr = node.gossip_advertise_addr.to_string();
        mac.update(&(node_id.len() as u64).to_be_bytes());
        mac.update(node_id);
        mac.update(&node.generation_id.to_be_bytes());
        mac.update(&(addr.len() as u64).to_be_bytes());
        mac.update(addr.as_bytes());
        mac.update(frame);
        mac
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

/// Seals `announcement` for publication under `node`'s chitchat id.
pub fn seal(
    key: &ClusterKey,
    node: &ChitchatId,
    announcement: &Announcement,
) -> Result<String, GossipError> {
    let frame = frame::encode(announcement)?;
    let tag = key.mac(node, &frame).finalize().into_bytes();
    let sealed = format!(
        "{}{SEPARATOR}{}",
        hex::encode(tag),
        URL_SAFE_NO_PAD.encode(&frame)
    );
    if sealed.len() > MAX_SEALED_LEN {
        return Err(GossipError::TooLarge(sealed.len()));
    }
    Ok(sealed)
}

/// Opens a value found in `node`'s state: checks the MAC, decodes the frame, and checks that
/// the announcement names the machine whose node id published it.
pub fn open(
    key: &ClusterKey,
    node: &ChitchatId,
    sealed: &str,
) -> Result<Announcement, GossipError> {
    if sealed.len() > MAX_SEALED_LEN {
        return Err(GossipError::TooLarge(sealed.len()));
    }
    let (tag_hex, body) = sealed
        .split_once(SEPARATOR)
        .ok_or(GossipError::Malformed("no separator"))?;
    // Lowercase only, so each announcement has exactly one valid sealed form.
    let canonical = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if tag_hex.len() != MAC_HEX_LEN || !tag_hex.bytes().all(canonical) {
        return Err(GossipError::Malformed("mac is not 64 lowercase hex digits"));
    }
    let tag = hex::decode(tag_hex).map_err(|_| GossipError::Malformed("mac is not hex"))?;
    let frame = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| GossipError::Malformed("frame is not base64"))?;
    key.mac(node, &frame)
        .verify_slice(&tag)
        .map_err(|_| GossipError::BadMac)?;
    let announcement: Announcement = frame::decode(&frame)?;
    if announcement.info.id.to_string() != *node.node_id {
        return Err(GossipError::WrongNode {
            claimed: announcement.info.id,
            node: node.node_id.to_string(),
        });
    }
    Ok(announcement)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use shoal_protocol::{Labels, MachineId, MachineInfo};

    use super::*;

    fn key(secret: &str) -> ClusterKey {
        ClusterKey::from_secret(secret).unwrap()
    }

    fn node(id: MachineId) -> ChitchatId {
        ChitchatId::new(id.to_string(), 7, "127.0.0.1:7401".parse().unwrap())
    }

    fn announcement(id: MachineId) -> Announcement {
        Announcement {
            info: MachineInfo {
                id,
                name: "attic".into(),
                labels: Labels::from_pairs(["gpu", "zone=attic"]).unwrap(),
                max_running: 4,
                ..MachineInfo::default()
            },
            seq: 42,
            sent_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn round_trip() {
        let id = MachineId(0xabc);
        let ann = announcement(id);
        let sealed = seal(&key("s3cret"), &node(id), &ann).unwrap();
        assert_eq!(open(&key("s3cret"), &node(id), &sealed).unwrap(), ann);
    }

    #[test]
    fn wrong_key_fails() {
        let id = MachineId(1);
        let sealed = seal(&key("right"), &node(id), &announcement(id)).unwrap();
        let err = open(&key("wrong"), &node(id), &sealed).unwrap_err();
        assert!(matches!(err, GossipError::BadMac), "{err}");
    }

    #[test]
    fn every_tampered_byte_fails() {
        let id = MachineId(2);
        let sealed = seal(&key("k"), &node(id), &announcement(id)).unwrap();
        for i in 0..sealed.len() {
            let mut bytes = sealed.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            if tampered != sealed {
                assert!(
                    open(&key("k"), &node(id), &tampered).is_err(),
                    "byte {i} changed unnoticed"
                );
            }
        }
    }

    #[test]
    fn value_moved_to_another_node_fails() {
        let id = MachineId(3);
        let sealed = seal(&key("k"), &node(id), &announcement(id)).unwrap();
        let other = node(MachineId(4));
        assert!(matches!(
            open(&key("k"), &other, &sealed),
            Err(GossipError::BadMac)
        ));
        let mut next_generation = node(id);
        next_generation.generation_id += 1;
        assert!(open(&key("k"), &next_generation, &sealed).is_err());
        let mut other_addr = node(id);
        other_addr.gossip_advertise_addr = "127.0.0.1:9999".parse().unwrap();
        assert!(open(&key("k"), &other_addr, &sealed).is_err());
    }

    #[test]
    fn announcement_must_name_the_publishing_node() {
        let publisher = node(MachineId(5));
        let sealed = seal(&key("k"), &publisher, &announcement(MachineId(6))).unwrap();
        let err = open(&key("k"), &publisher, &sealed).unwrap_err();
        assert!(matches!(err, GossipError::WrongNode { .. }), "{err}");
    }

    #[test]
    fn empty_secret_is_refused_and_debug_hides_the_key() {
        assert!(ClusterKey::from_secret("").is_err());
        let key = key("topsecret");
        let shown = format!("{key:?}");
        assert_eq!(shown, "ClusterKey(<redacted>)");
        assert!(!shown.contains(&hex::encode(key.0)));
        assert_ne!(key, ClusterKey::from_secret("topsecreT").unwrap());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(text in "\\PC{0,300}", tag in "[0-9a-f]{64}", body in "[A-Za-z0-9_-]{0,200}") {
            let id = MachineId(9);
            let _ = open(&key("k"), &node(id), &text);
            let _ = open(&key("k"), &node(id), &format!("{tag}.{body}"));
        }

        #[test]
        fn only_the_sealed_value_opens(seq: u64, flip in 0usize..2000) {
            let id = MachineId(10);
            let mut ann = announcement(id);
            ann.seq = seq;
            let sealed = seal(&key("k"), &node(id), &ann).unwrap();
            prop_assert_eq!(open(&key("k"), &node(id), &sealed).unwrap(), ann);
            let mut bytes = sealed.clone().into_bytes();
            let i = flip % bytes.len();
            bytes[i] ^= 0x01;
            if let Ok(tampered) = String::from_utf8(bytes) {
                prop_assert!(open(&key("k"), &node(id), &tampered).is_err());
            }
        }
    }
}
