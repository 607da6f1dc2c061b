//! What a container may do by default: much less than Docker's default.
//!
//! Every container Shoal starts has all capabilities dropped but [`KEPT_CAPABILITIES`]
//! (what package managers and servers that bind low ports and drop to a user need), runs
//! with `no-new-privileges` (a setuid binary gains nothing), is held to a number of
//! processes, and gets a memory limit when neither the job nor a policy set one. The image's
//! own `USER` applies as Docker applies it, unless the job, its template or a policy names
//! a user. A node's `[containers]` config sets the limits; a policy may add or drop
//! capabilities and set the pids limit for the containers it governs ([`Confinement`]).

use std::collections::BTreeSet;

use bollard::models::HostConfig;
use serde::Deserialize;

/// The capabilities a container keeps. Docker's default set without `NET_RAW` (raw
/// sockets: spoofing on the LAN), `MKNOD`, `AUDIT_WRITE`, `SETFCAP`, `SETPCAP` and
/// `SYS_CHROOT`.
pub const KEPT_CAPABILITIES: [&str; 8] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "NET_BIND_SERVICE",
    "SETGID",
    "SETUID",
];

/// Most memory a container may be given as a default (1 TiB): a larger number is a typo.
const MAX_DEFAULT_MEMORY_MB: u64 = 1 << 20;
/// Most processes a container may be allowed as a default.
const MAX_PIDS_LIMIT: u32 = 1 << 22;

/// How the policies governing one container change the default: capabilities added and
/// dropped (a drop wins), and a pids limit in place of the machine's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    pub cap_add: BTreeSet<String>,
    pub cap_drop: BTreeSet<String>,
    pub pids_limit: Option<u32>,
}

impl Confinement {
    /// The capabilities a container keeps: the default set, plus the added, minus the
    /// dropped.
    pub fn capabilities(&self) -> Vec<String> {
        let kept = KEPT_CAPABILITIES.iter().map(|c| c.to_string());
        let all: BTreeSet<String> = kept.chain(self.cap_add.iter().cloned()).collect();
        all.difference(&self.cap_drop).cloned().collect()
    }
}

/// A node's limits for the containers it starts (`[containers]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerLimits {
    /// Memory, in MiB, of a container whose job and policies set none (swap included).
    pub default_memory_mb: u64,
    /// Most processes (and threads) in one container.
    pub pids_limit: u32,
}

impl Default for ContainerLimits {
    fn default() -> Self {
        ContainerLimits {
            default_memory_mb: 1024,
            pids_limit: 1024,
        }
    }
}

impl ContainerLimits {
    /// Errors name the config field and the range it takes.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=MAX_DEFAULT_MEMORY_MB).contains(&self.default_memory_mb) {
            anyhow::bail!(
                "containers.default_memory_mb: {} is not in 1..={MAX_DEFAULT_MEMORY_MB}",
                self.default_memory_mb
            );
        }
        if !(16..=MAX_PIDS_LIMIT).contains(&self.pids_limit) {
            anyhow::bail!(
                "containers.pids_limit: {} is not in 16..={MAX_PIDS_LIMIT}",
                self.pids_limit
            );
        }
        Ok(())
    }

    /// Confines `host`: capabilities, `no-new-privileges`, the pids limit, and the default
    /// memory limit where `host` has none; `policies` as they changed them.
    pub fn confine(&self, host: &mut HostConfig, policies: &Confinement) {
        host.cap_drop = Some(vec!["ALL".to_string()]);
        host.cap_add = Some(policies.capabilities());
        host.security_opt = Some(vec!["no-new-privileges:true".to_string()]);
        let pids = policies.pids_limit.unwrap_or(self.pids_limit);
        host.pids_limit = Some(i64::from(pids));
        if host.memory.is_none() {
            let bytes = i64::try_from(self.default_memory_mb << 20).unwrap_or(i64::MAX);
            host.memory = Some(bytes);
            host.memory_swap = Some(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_keeps_its_own_memory_limit_and_gets_the_default_without_one() {
        let limits = ContainerLimits::default();
        let mut own = HostConfig {
            memory: Some(64 << 20),
            memory_swap: Some(64 << 20),
            ..HostConfig::default()
        };
        limits.confine(&mut own, &Confinement::default());
        assert_eq!(own.memory, Some(64 << 20));
        let mut none = HostConfig::default();
        limits.confine(&mut none, &Confinement::default());
        assert_eq!(none.memory, Some(1 << 30));
        assert_eq!(none.memory_swap, Some(1 << 30));
        assert_eq!(none.pids_limit, Some(1024));
        assert_eq!(none.cap_drop.as_deref(), Some(&["ALL".to_string()][..]));
    }

    #[test]
    fn a_policy_adds_and_drops_capabilities_and_sets_the_pids_limit() {
        let policies = Confinement {
            cap_add: ["NET_RAW".to_string()].into(),
            cap_drop: ["SETUID".to_string(), "NET_RAW".to_string()].into(),
            pids_limit: Some(64),
        };
        let mut host = HostConfig::default();
        ContainerLimits::default().confine(&mut host, &policies);
        let caps = host.cap_add.unwrap();
        assert!(!caps.contains(&"SETUID".to_string()), "dropped");
        assert!(
            !caps.contains(&"NET_RAW".to_string()),
            "a drop wins over an add"
        );
        assert!(caps.contains(&"CHOWN".to_string()));
        assert_eq!(host.pids_limit, Some(64));
        let loosened = Confinement {
            cap_add: ["NET_RAW".to_string()].into(),
            ..Confinement::default()
        };
        assert!(loosened.capabilities().contains(&"NET_RAW".to_string()));
    }

    #[test]
    fn limits_out_of_range_are_refused_naming_the_field() {
        let zero = ContainerLimits {
            default_memory_mb: 0,
            ..ContainerLimits::default()
        };
        assert!(format!("{:#}", zero.validate().unwrap_err()).contains("default_memory_mb"));
        let few = ContainerLimits {
            pids_limit: 3,
            ..ContainerLimits::default()
        };
        assert!(format!("{:#}", few.validate().unwrap_err()).contains("pids_limit"));
        ContainerLimits::default().validate().unwrap();
    }
}
