//! Registry credentials: the username and password a machine pulls a registry's images
//! with. An admin logs in once (`PUT /v1/registries/{registry}`); the node the request
//! enters through seals the password before it goes to the log, so the log, snapshots,
//! backups and the API hold it sealed, and only a machine pulling an image opens it.

use serde::{Deserialize, Serialize};

use crate::UnixMillis;
use crate::job_spec::SEALED_PREFIX;

/// Most registries a fleet keeps credentials for.
pub const MAX_REGISTRIES: usize = 64;
/// Longest registry name (a host name, with a port).
pub const MAX_REGISTRY_LEN: usize = 253;
/// Longest username.
pub const MAX_USERNAME_LEN: usize = 256;
/// Longest password or access token, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 4096;
/// Longest sealed password: the prefix, then base64 of nonce, password and tag.
pub const MAX_SEALED_PASSWORD_BYTES: usize =
    SEALED_PREFIX.len() + (24 + MAX_PASSWORD_BYTES + 16).div_ceil(3) * 4;

/// What `shoal registry login` sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryLogin {
    pub username: String,
    /// Sent in clear over TLS; the log holds it sealed, and no answer carries it.
    pub password: String,
}

impl RegistryLogin {
    /// Checks the bounds, naming what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        check_text("username", &self.username, MAX_USERNAME_LEN)?;
        check_text("password", &self.password, MAX_PASSWORD_BYTES)
    }
}

/// One registry's credentials as the log holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryCredential {
    pub registry: String,
    pub username: String,
    /// `sealed:v1:...`, opened only by a machine about to pull.
    pub sealed_password: String,
    pub updated_at_ms: UnixMillis,
    /// The key that logged in.
    pub updated_by: String,
}

impl RegistryCredential {
    /// What the API shows: everything but the password.
    pub fn entry(&self) -> RegistryEntry {
        RegistryEntry {
            registry: self.registry.clone(),
            username: self.username.clone(),
            updated_at_ms: self.updated_at_ms,
            updated_by: self.updated_by.clone(),
        }
    }

    /// Checks a credential a command carries: the registry name, the username, and a
    /// password that is sealed and within bounds.
    pub fn validate(&self) -> Result<(), String> {
        check_registry(&self.registry)?;
        check_text("username", &self.username, MAX_USERNAME_LEN)?;
        let sealed = self.sealed_password.starts_with(SEALED_PREFIX)
            && self.sealed_password.len() <= MAX_SEALED_PASSWORD_BYTES;
        match sealed {
            true => Ok(()),
            false => Err("the password of a registry credential must be sealed".into()),
        }
    }
}

/// A registry the fleet pulls from with credentials; never the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegistryEntry {
    pub registry: String,
    pub username: String,
    pub updated_at_ms: UnixMillis,
    pub updated_by: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegistryList {
    pub registries: Vec<RegistryEntry>,
}

/// A registry is named as image references name it: a host (`ghcr.io`, `registry.lan`,
/// `127.0.0.1`, `[::1]`) with an optional port, or `docker.io` for Docker Hub.
pub fn check_registry(registry: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("registry {registry:?} {why}"));
    if registry.is_empty() || registry.len() > MAX_REGISTRY_LEN {
        return bad(&format!("must be 1 to {MAX_REGISTRY_LEN} characters"));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-:[]".contains(c);
    if !registry.chars().all(allowed) {
        return bad("may hold only lowercase letters, digits and . - : [ ] (a host, a port)");
    }
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => {
            if !port.parse::<u16>().is_ok_and(|port| port != 0) {
                return bad("has a port that is not 1 to 65535");
            }
            host
        }
        _ => registry,
    };
    if host.is_empty() || host.starts_with(['.', '-']) || host.ends_with(['.', '-']) {
        return bad("is not a host name");
    }
    Ok(())
}

/// A username or password: not empty, within `max` bytes, no control characters.
fn check_text(what: &str, text: &str, max: usize) -> Result<(), String> {
    if text.is_empty() || text.len() > max {
        return Err(format!("{what} must be 1 to {max} bytes"));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("{what} may not hold control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_hosts_with_an_optional_port() {
        for good in [
            "docker.io",
            "ghcr.io",
            "registry.lan:5000",
            "127.0.0.1:5000",
            "localhost",
            "[::1]:5000",
        ] {
            assert_eq!(check_registry(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Registry.lan",
            "ghcr.io/org",
            "reg:0",
            "reg:99999",
            ".lan",
            "reg lan",
            "https://ghcr.io",
        ] {
            assert!(check_registry(bad).is_err(), "{bad}");
        }
        assert!(check_registry(&"a".repeat(MAX_REGISTRY_LEN + 1)).is_err());
    }

    #[test]
    fn a_login_is_bounded_and_a_stored_password_is_sealed() {
        let login = |username: &str, password: &str| RegistryLogin {
            username: username.into(),
            password: password.into(),
        };
        assert_eq!(login("ci", "token").validate(), Ok(()));
        assert!(
            login("", "token")
                .validate()
                .unwrap_err()
                .contains("username")
        );
        assert!(login("ci", "").validate().unwrap_err().contains("password"));
        assert!(
            login("ci", "a\nb")
                .validate()
                .unwrap_err()
                .contains("control")
        );
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(login("ci", &long).validate().is_err());

        let stored = |sealed_password: &str| RegistryCredential {
            registry: "ghcr.io".into(),
            username: "ci".into(),
            sealed_password: sealed_password.into(),
            updated_at_ms: 1,
            updated_by: "k1".into(),
        };
        assert_eq!(stored("sealed:v1:AAAA").validate(), Ok(()));
        assert!(stored("hunter2").validate().is_err());
        assert!(!format!("{:?}", stored("sealed:v1:AAAA").entry()).contains("sealed"));
    }
}
