//! Registry passwords: sealed on the node an admin's login enters through, opened by a
//! machine about to pull from that registry. The registry and the username are bound in,
//! so a sealed password moved to another registry or user does not open.

use shoal_protocol::UnixMillis;
use shoal_protocol::registries::{RegistryCredential, RegistryLogin};

use super::seal::Sealer;

const DOMAIN: &[u8] = b"shoal registry password v1\0";

/// The credential the log keeps for `login` to `registry`, its password sealed.
pub fn seal(
    cluster_secret: &str,
    registry: &str,
    login: &RegistryLogin,
    by: &str,
    at_ms: UnixMillis,
) -> Result<RegistryCredential, String> {
    let sealed_password = Sealer::new(cluster_secret, DOMAIN)
        .seal(&[registry, &login.username], &login.password)
        .ok_or("cannot seal the password")?;
    Ok(RegistryCredential {
        registry: registry.to_string(),
        username: login.username.clone(),
        sealed_password,
        updated_at_ms: at_ms,
        updated_by: by.to_string(),
    })
}

/// The password of `credential`, or why it does not open here.
pub fn open(cluster_secret: &str, credential: &RegistryCredential) -> Result<String, String> {
    let context = [credential.registry.as_str(), credential.username.as_str()];
    Sealer::new(cluster_secret, DOMAIN)
        .open(&context, &credential.sealed_password)
        .ok_or_else(|| {
            format!(
                "the password for registry {} does not open on this machine (sealed with another cluster secret)",
                credential.registry
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a cluster secret of some length";

    #[test]
    fn a_password_opens_only_for_its_registry_and_user() {
        let login = RegistryLogin {
            username: "ci".into(),
            password: "hunter2".into(),
        };
        let stored = seal(SECRET, "ghcr.io", &login, "k1", 5).unwrap();
        assert!(!stored.sealed_password.contains("hunter2"));
        assert_eq!(stored.validate(), Ok(()));
        assert_eq!(open(SECRET, &stored).unwrap(), "hunter2");
        assert!(open("another secret, also long", &stored).is_err());
        let moved = RegistryCredential {
            registry: "quay.io".into(),
            ..stored.clone()
        };
        assert!(open(SECRET, &moved).unwrap_err().contains("quay.io"));
        let other_user = RegistryCredential {
            username: "admin".into(),
            ..stored
        };
        assert!(open(SECRET, &other_user).is_err());
    }
}
