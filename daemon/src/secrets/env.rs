//! Secret environment values (`secret_env` of a job or template): sealed on the node a
//! request enters through, before the spec goes to the log; opened only by the machine
//! that runs the attempt, into its environment. The log, snapshots, backups and the API
//! hold them sealed.
//!
//! The sealing is [`super::seal`]'s, under this purpose's key, with the org and the
//! variable's name bound in: a sealed value copied into another org's job or another
//! variable does not open. The key comes from the cluster secret, which every member holds
//! and the log never does.

use std::collections::BTreeMap;

use shoal_protocol::job_spec::check_env_value;

use super::seal::Sealer;

const DOMAIN: &[u8] = b"shoal secret env v1\0";

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
    let sealer = Sealer::new(cluster_secret, DOMAIN);
    for (name, value) in secret_env.iter_mut() {
        *value = sealer
            .seal(&[org, name], value)
            .ok_or_else(|| format!("secret_env: cannot seal {name}"))?;
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
    let sealer = Sealer::new(cluster_secret, DOMAIN);
    let open = |name: &str, sealed: &str| sealer.open(&[org, name], sealed);
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
    use shoal_protocol::job_spec::{MAX_ENV_VALUE_BYTES, MAX_SEALED_VALUE_BYTES, SEALED_PREFIX};

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
