//! The dashboard's session: the API key sealed into a cookie, the CSRF token derived from
//! that cookie, and the origin check. Pure functions of their inputs (keys, clock, headers),
//! so they are tested without a node.
//!
//! ```text
//!  cookie value = base64url( version 1 | nonce (24) | XChaCha20-Poly1305(expires_ms (8, BE) | key) )
//!  sealing key  = HMAC-SHA256(cluster secret, "shoal dashboard session v1")
//!  csrf token   = hex HMAC-SHA256(HMAC-SHA256(cluster secret, "shoal dashboard csrf v1"), cookie value)
//! ```
//!
//! Every node derives the same keys from the cluster secret, so a session made on one node
//! works on any other. The key inside is authenticated again on every request, so revoking
//! it ends the session everywhere.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use shoal_protocol::UnixMillis;

/// The cookie's name.
pub const COOKIE: &str = "shoal_session";
/// The header a cookie-authenticated change carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-shoal-csrf";
/// How long a session lasts from login.
pub const SESSION_MS: u64 = 12 * 3600 * 1000;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
/// Longest cookie value opened: a key is well under 200 bytes.
const MAX_COOKIE_LEN: usize = 1024;

type HmacSha256 = Hmac<Sha256>;

fn derive(secret: &str, purpose: &str) -> [u8; 32] {
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The keys a node seals sessions and derives CSRF tokens with.
#[derive(Clone)]
pub struct SessionKeys {
    seal: [u8; 32],
    csrf: [u8; 32],
}

/// Why a cookie does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the dashboard session cookie is not one this fleet made: log in again")]
    Invalid,
    #[error("the dashboard session expired: log in again")]
    Expired,
}

impl SessionKeys {
    /// The keys of the fleet whose cluster secret is `secret`.
    pub fn from_secret(secret: &str) -> SessionKeys {
        SessionKeys {
            seal: derive(secret, "shoal dashboard session v1"),
            csrf: derive(secret, "shoal dashboard csrf v1"),
        }
    }

    /// A cookie value holding `key` until `expires_ms`.
    pub fn seal(&self, key: &str, expires_ms: UnixMillis) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut plain = expires_ms.to_be_bytes().to_vec();
        plain.extend_from_slice(key.as_bytes());
        let sealed = XChaCha20Poly1305::new((&self.seal).into())
            .encrypt(XNonce::from_slice(&nonce), plain.as_slice())
            .expect("sealing a short message cannot fail");
        let mut out = vec![VERSION];
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The key a cookie value holds, if this fleet sealed it and it has not expired at `now`.
    pub fn open(&self, cookie: &str, now: UnixMillis) -> Result<String, SessionError> {
        if cookie.len() > MAX_COOKIE_LEN {
            return Err(SessionError::Invalid);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(cookie)
            .map_err(|_| SessionError::Invalid)?;
        let Some((&VERSION, rest)) = bytes.split_first() else {
            return Err(SessionError::Invalid);
        };
        if rest.len() < NONCE_LEN {
            return Err(SessionError::Invalid);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let plain = XChaCha20Poly1305::new((&self.seal).into())
            .decrypt(XNonce::from_slice(nonce), sealed)
            .map_err(|_| SessionError::Invalid)?;
        if plain.len() < 8 {
            return Err(SessionError::Invalid);
        }
        let (expiry, key) = plain.split_at(8);
        let expires_ms = u64::from_be_bytes(expiry.try_into().expect("8 bytes"));
        if now >= expires_ms {
            return Err(SessionError::Expired);
        }
        String::from_utf8(key.to_vec()).map_err(|_| SessionError::Invalid)
    }

    /// The CSRF token of the session whose cookie value is `cookie`.
    pub fn csrf_token(&self, cookie: &str) -> String {
        hex::encode(self.csrf_mac(cookie).finalize().into_bytes())
    }

    /// Whether `token` is the CSRF token of `cookie` (compared in constant time).
    pub fn csrf_matches(&self, cookie: &str, token: &str) -> bool {
        let Ok(token) = hex::decode(token) else {
            return false;
        };
        self.csrf_mac(cookie).verify_slice(&token).is_ok()
    }

    fn csrf_mac(&self, cookie: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.csrf).expect("HMAC takes any key");
        mac.update(cookie.as_bytes());
        mac
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value.trim())
    })
}

/// Whether a request's `Origin` (if any) names the host it was sent to: the browser sends
/// one with every cross-site request and every WebSocket, so a page elsewhere cannot use the
/// session. `host` is the request's `Host` header.
pub fn same_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Some(host) = host else {
        return false;
    };
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    authority.is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

/// The `Set-Cookie` value that holds `value`; `secure` when the API speaks HTTPS.
pub fn set_cookie(value: &str, secure: bool) -> String {
    let max_age = SESSION_MS / 1000;
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
}

/// The `Set-Cookie` value that clears the session.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "shoal_0123456789abcdef_00112233445566778899aabbccddeeff";

    #[test]
    fn a_sealed_key_opens_until_it_expires_and_only_under_the_fleets_secret() {
        let keys = SessionKeys::from_secret("one fleet's secret, long enough");
        let cookie = keys.seal(KEY, 1_000);
        assert!(
            !cookie.contains("0123456789abcdef"),
            "the key is not readable"
        );
        assert_eq!(keys.open(&cookie, 999).unwrap(), KEY);
        assert_eq!(keys.open(&cookie, 1_000), Err(SessionError::Expired));
        // Another node of the same fleet opens it; another fleet does not.
        let same = SessionKeys::from_secret("one fleet's secret, long enough");
        assert_eq!(same.open(&cookie, 0).unwrap(), KEY);
        let other = SessionKeys::from_secret("another fleet's secret, long too");
        assert_eq!(other.open(&cookie, 0), Err(SessionError::Invalid));
        // Two seals of one key differ (a fresh nonce each).
        assert_ne!(keys.seal(KEY, 1_000), cookie);
    }

    #[test]
    fn a_tampered_or_malformed_cookie_does_not_open() {
        let keys = SessionKeys::from_secret("one fleet's secret, long enough");
        let cookie = keys.seal(KEY, u64::MAX);
        let mut bytes = URL_SAFE_NO_PAD.decode(&cookie).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(&bytes);
        for bad in [
            tampered.as_str(),
            "",
            "not base64 !",
            "AQ",
            &"A".repeat(5000),
        ] {
            assert_eq!(keys.open(bad, 0), Err(SessionError::Invalid), "{bad:.40}");
        }
        bytes[last] ^= 1;
        bytes[0] = 2;
        let other_version = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(keys.open(&other_version, 0), Err(SessionError::Invalid));
    }

    #[test]
    fn the_csrf_token_belongs_to_one_session() {
        let keys = SessionKeys::from_secret("one fleet's secret, long enough");
        let cookie = keys.seal(KEY, u64::MAX);
        let token = keys.csrf_token(&cookie);
        assert!(keys.csrf_matches(&cookie, &token));
        let other = keys.seal(KEY, u64::MAX);
        assert!(
            !keys.csrf_matches(&other, &token),
            "another session's token"
        );
        assert!(!keys.csrf_matches(&cookie, ""));
        assert!(!keys.csrf_matches(&cookie, "zz"));
        assert!(!keys.csrf_matches(&cookie, &token[..10]));
        let elsewhere = SessionKeys::from_secret("another fleet's secret, long too");
        assert!(!elsewhere.csrf_matches(&cookie, &token));
    }

    #[test]
    fn only_the_pages_own_origin_passes() {
        let host = Some("127.0.0.1:7400");
        assert!(
            same_origin(None, host),
            "no Origin: not a cross-site request"
        );
        assert!(same_origin(Some("https://127.0.0.1:7400"), host));
        assert!(same_origin(Some("http://127.0.0.1:7400"), host));
        assert!(!same_origin(Some("https://evil.example"), host));
        assert!(!same_origin(Some("https://127.0.0.1:7401"), host));
        assert!(!same_origin(Some("null"), host));
        assert!(!same_origin(Some("https://127.0.0.1:7400"), None));
    }

    #[test]
    fn cookies_are_read_by_name_and_set_strictly() {
        let header = "a=1; shoal_session=abc-_; b=2";
        assert_eq!(cookie_value(header, COOKIE), Some("abc-_"));
        assert_eq!(cookie_value("xshoal_session=1", COOKIE), None);
        let set = set_cookie("v", true);
        for part in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Secure",
            "Max-Age=",
        ] {
            assert!(set.contains(part), "{set}");
        }
        assert!(clear_cookie(false).contains("Max-Age=0"));
        assert!(!clear_cookie(false).contains("Secure"));
    }
}
