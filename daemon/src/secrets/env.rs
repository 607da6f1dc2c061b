//! Secret environment values (`secret_env` of a job or template): sealed on the node a
//! request enters through, before the spec goes to the log; opened only by the machine
//! that runs the attempt, into its environment. The log, snapshots, backups and the API
//! hold them sealed.
//!
//! ```text
//!  sealed = "sealed:v1:" base64(nonce (24 random bytes) | XChaCha20-Poly1305(value) + tag (16))
//!  key    = SHA-256(domain | cluster secret)
//!  associated data = domain | org | 0 | variable name
//! ```
//!
//! The key comes from the cluster secret, which every member holds and the log never
//! does; the org and the name are bound in, so a sealed value copied into another org's
//! job or another variable does not open.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use shoal_protocol::job_spec::{SEALED_PREFIX, check_env_value};

const DOMAIN: &[u8] = b"shoal secret env v1\0";
const NONCE_LEN: usize = 24;

fn cipher(cluster_secret: &str) -> XChaCha20Poly1305 {
    let key: [u8; 32] = Sha256::new()
        .chain_update(DOMAIN)
        .chain_update(cluster_secret.as_bytes())
        .finalize()
        .into();
    XChaCha20Poly1305::new(Key::from_slice(&key))
}

fn associated_data(org: &str, name: &str) -> Vec<u8> {
    [DOMAIN, org.as_bytes(), &[0], name.as_bytes()].concat()
}

/// Seals every value of `secret_env` (given in clear) for `org`, in place. A value out of
/// bounds is an error naming it, and nothing is sealed.
pub fn seal_all(
    cluster_secret: &str,
    org: &str,
    secret_env: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    for (name, value) in secret_env.iter() {
        check_env_value("secret_env", name, value)?;
    }
    let cipher = cipher(cluster_secret);
    for (name, value) in secret_env.iter_mut() {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: value.as_bytes(),
            aad: &associated_data(org, name),
        };
        let sealed = cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .map_err(|_| format!("secret_env: cannot seal {name}"))?;
        *value = format!(
            "{SEALED_PREFIX}{}",
            STANDARD.encode([&nonce[..], &sealed].concat())
        );
    }
    Ok(())
}

/// Opens every sealed value of `secret_env` of a job of `org`. A value that does not open
/// (another cluster secret, another org, a changed byte) is an error naming it.
pub fn open_all(
    cluster_secret: &str,
    org: &str,
    secret_env: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let cipher = cipher(cluster_secret);
    let open = |name: &str, sealed: &str| -> Option<String> {
        let bytes = STANDARD.decode(sealed.strip_prefix(SEALED_PREFIX)?).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let payload = Payload {
            msg: body,
            aad: &associated_data(org, name),
        };
        let clear = cipher.decrypt(XNonce::from_slice(nonce), payload).ok()?;
        String::from_utf8(clear).ok()
    };
    secret_env
        .iter()
        .map(|(name, sealed)| match open(name, sealed) {
            Some(value) => Ok((name.clone(), value)),
            None => Err(format!(
                "secret_env {name} does not open on this machine (sealed with another cluster secret or for another org)"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use shoal_protocol::job_spec::{MAX_ENV_VALUE_BYTES, MAX_SEALED_VALUE_BYTES};

    use super::*;

    const SECRET: &str = "a cluster secret of some length";

    fn sealed(org: &str, value: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::from([("TOKEN".to_string(), value.to_string())]);
        seal_all(SECRET, org, &mut env).unwrap();
        env
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_secret_org_and_name() {
        let env = sealed("lab", "s3cret");
        assert!(!env["TOKEN"].contains("s3cret"));
        assert!(env["TOKEN"].starts_with(SEALED_PREFIX));
        assert_eq!(open_all(SECRET, "lab", &env).unwrap()["TOKEN"], "s3cret");
        assert!(open_all("another secret, also long", "lab", &env).is_err());
        assert!(
            open_all(SECRET, "other", &env)
                .unwrap_err()
                .contains("TOKEN")
        );
        let renamed = BTreeMap::from([("OTHER".to_string(), env["TOKEN"].clone())]);
        assert!(open_all(SECRET, "lab", &renamed).is_err());
        // Each seal takes a fresh nonce: equal values do not look equal.
        assert_ne!(sealed("lab", "s3cret"), env);
    }

    #[test]
    fn the_longest_value_fits_the_sealed_bound_and_longer_ones_are_refused() {
        let env = sealed("lab", &"x".repeat(MAX_ENV_VALUE_BYTES));
        assert!(env["TOKEN"].len() <= MAX_SEALED_VALUE_BYTES);
        let mut long = BTreeMap::from([("TOKEN".into(), "x".repeat(MAX_ENV_VALUE_BYTES + 1))]);
        let refused = seal_all(SECRET, "lab", &mut long).unwrap_err();
        assert!(refused.contains("secret_env value of TOKEN"), "{refused}");
        assert_eq!(
            long["TOKEN"].len(),
            MAX_ENV_VALUE_BYTES + 1,
            "nothing sealed"
        );
    }
}
