//! The one way Shoal seals a value under the cluster secret for the log: XChaCha20-Poly1305
//! with a key per purpose, and the context the value belongs to bound in, so a sealed value
//! copied to another place does not open.
//!
//! ```text
//!  sealed = "sealed:v1:" base64(nonce (24 random bytes) | XChaCha20-Poly1305(value) + tag (16))
//!  key    = SHA-256(domain | cluster secret)
//!  associated data = domain | context parts joined by 0
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use shoal_protocol::job_spec::SEALED_PREFIX;

const NONCE_LEN: usize = 24;

/// Seals and opens the values of one purpose (its `domain`).
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    domain: &'static [u8],
}

impl Sealer {
    /// `domain` names the purpose and ends in a 0 byte, e.g. `b"shoal secret env v1\0"`.
    pub fn new(cluster_secret: &str, domain: &'static [u8]) -> Sealer {
        let key: [u8; 32] = Sha256::new()
            .chain_update(domain)
            .chain_update(cluster_secret.as_bytes())
            .finalize()
            .into();
        Sealer {
            cipher: XChaCha20Poly1305::new(Key::from_slice(&key)),
            domain,
        }
    }

    fn associated_data(&self, context: &[&str]) -> Vec<u8> {
        let joined = context.join("\0");
        [self.domain, joined.as_bytes()].concat()
    }

    /// `value` sealed for `context`, with a fresh nonce.
    pub fn seal(&self, context: &[&str], value: &str) -> Option<String> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: value.as_bytes(),
            aad: &self.associated_data(context),
        };
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .ok()?;
        Some(format!(
            "{SEALED_PREFIX}{}",
            STANDARD.encode([&nonce[..], &sealed].concat())
        ))
    }

    /// The value `sealed` holds, if it was sealed by this purpose's key for `context`.
    pub fn open(&self, context: &[&str], sealed: &str) -> Option<String> {
        let bytes = STANDARD.decode(sealed.strip_prefix(SEALED_PREFIX)?).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let payload = Payload {
            msg: body,
            aad: &self.associated_data(context),
        };
        let clear = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), payload)
            .ok()?;
        String::from_utf8(clear).ok()
    }
}
