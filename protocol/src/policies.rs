//! Governance policies: what containers may run on the machines a policy selects (image
//! patterns, most CPU and memory, longest life, network mode) and how they are confined
//! (capabilities added to or dropped from the default set, a pids limit, a user). Each
//! machine checks them itself before it starts a container; a violation fails the work,
//! naming the policy.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::templates::check_template_name;
use crate::{Labels, UnixMillis};

/// Docker network modes a policy may set.
pub const NETWORK_MODES: [&str; 3] = ["none", "bridge", "host"];

/// The Linux capabilities a policy may add or drop, by name without `CAP_`.
pub const CAPABILITIES: [&str; 41] = [
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// The range of a policy's `pids_limit`.
pub const PIDS_LIMIT_RANGE: std::ops::RangeInclusive<u32> = 16..=(1 << 22);

/// `PUT /v1/policies/{name}`: a policy, as the API takes it.
///
/// A type apart from the stored [`PolicySpec`], so the API can change without changing
/// what the Raft log holds; `PolicySpec::from` is the one conversion. For now the two have
/// the same fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
// `ApiJson` refuses unknown fields, naming them; the type itself does not.
pub struct PolicyRequest {
    /// The machines it governs: those carrying every one of these labels; all when empty.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Images containers may run, as patterns where `*` matches anything (`busybox:*`);
    /// any image when empty.
    #[serde(default)]
    pub allowed_images: Vec<String>,
    /// Most CPU cores a container may have; one asking for none gets this.
    #[serde(default)]
    pub max_cpus: Option<f64>,
    /// Most memory a container may have, in MiB; one asking for none gets this.
    #[serde(default)]
    pub max_memory_mb: Option<u64>,
    /// Longest a container may run; one asking for no limit gets this.
    #[serde(default)]
    pub max_duration_seconds: Option<u64>,
    /// The Docker network containers join: `none`, `bridge` or `host`.
    #[serde(default)]
    pub network_mode: Option<String>,
    /// Capabilities containers get beyond the default set (loosens), e.g. `NET_RAW`.
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// Capabilities of the default set containers lose (tightens), e.g. `SETUID`.
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// Most processes in one container, in place of the machine's `[containers]` limit
    /// (the lowest of the policies that set one).
    #[serde(default)]
    pub pids_limit: Option<u32>,
    /// The user containers run as, whatever the job, template or image says.
    #[serde(default)]
    pub user: Option<String>,
    /// When images are pulled, whatever the job or template says: `never` keeps the
    /// machines it selects from pulling at all, `always` re-checks a tag before every run.
    /// Of two policies that set one, `never` wins.
    #[serde(default)]
    pub pull: Option<crate::PullPolicy>,
}

impl From<PolicyRequest> for PolicySpec {
    /// The policy a request asks for, field by field.
    fn from(request: PolicyRequest) -> Self {
        let PolicyRequest {
            selector,
            allowed_images,
            max_cpus,
            max_memory_mb,
            max_duration_seconds,
            network_mode,
            cap_add,
            cap_drop,
            pids_limit,
            user,
            pull,
        } = request;
        PolicySpec {
            selector,
            allowed_images,
            max_cpus,
            max_memory_mb,
            max_duration_seconds,
            network_mode,
            cap_add,
            cap_drop,
            pids_limit,
            user,
            pull,
        }
    }
}

/// A policy's rules, as the log keeps them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
// Stored in the log: no `deny_unknown_fields`, so an older build reads a newer record
// (ignoring what it does not know).
pub struct PolicySpec {
    /// The machines it governs: those carrying every one of these labels; all when empty.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Images containers may run, as patterns where `*` matches anything (`busybox:*`);
    /// any image when empty.
    #[serde(default)]
    pub allowed_images: Vec<String>,
    /// Most CPU cores a container may have; one asking for none gets this.
    #[serde(default)]
    pub max_cpus: Option<f64>,
    /// Most memory a container may have, in MiB; one asking for none gets this.
    #[serde(default)]
    pub max_memory_mb: Option<u64>,
    /// Longest a container may run; one asking for no limit gets this.
    #[serde(default)]
    pub max_duration_seconds: Option<u64>,
    /// The Docker network containers join: `none`, `bridge` or `host`.
    #[serde(default)]
    pub network_mode: Option<String>,
    /// Capabilities containers get beyond the default set (loosens), e.g. `NET_RAW`.
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// Capabilities of the default set containers lose (tightens), e.g. `SETUID`.
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// Most processes in one container, in place of the machine's `[containers]` limit
    /// (the lowest of the policies that set one).
    #[serde(default)]
    pub pids_limit: Option<u32>,
    /// The user containers run as, whatever the job, template or image says.
    #[serde(default)]
    pub user: Option<String>,
    /// When images are pulled, whatever the job or template says: `never` keeps the
    /// machines it selects from pulling at all (an air-gapped machine), `always` re-checks
    /// a tag before every run. Of two policies that set one, `never` wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<crate::PullPolicy>,
}

/// A policy as the log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub spec: PolicySpec,
    pub updated_at_ms: UnixMillis,
    /// The API key that set it.
    pub updated_by: String,
}

/// `GET /v1/policies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyList {
    pub policies: Vec<PolicyView>,
}

/// A policy as the API answers it: made from the stored [`Policy`] where it leaves
/// (`PolicyView::from`, the one conversion), its rules shown as the request that sets them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyView {
    pub name: String,
    pub spec: PolicyRequest,
    pub updated_at_ms: UnixMillis,
    /// The API key that set it.
    pub updated_by: String,
}

impl From<&Policy> for PolicyView {
    fn from(policy: &Policy) -> Self {
        let Policy {
            name,
            spec,
            updated_at_ms,
            updated_by,
        } = policy;
        PolicyView {
            name: name.clone(),
            spec: PolicyRequest::from(spec),
            updated_at_ms: *updated_at_ms,
            updated_by: updated_by.clone(),
        }
    }
}

impl From<&PolicySpec> for PolicyRequest {
    /// The request that sets `spec`, field by field.
    fn from(spec: &PolicySpec) -> Self {
        let PolicySpec {
            selector,
            allowed_images,
            max_cpus,
            max_memory_mb,
            max_duration_seconds,
            network_mode,
            cap_add,
            cap_drop,
            pids_limit,
            user,
            pull,
        } = spec;
        PolicyRequest {
            selector: selector.clone(),
            allowed_images: allowed_images.clone(),
            max_cpus: *max_cpus,
            max_memory_mb: *max_memory_mb,
            max_duration_seconds: *max_duration_seconds,
            network_mode: network_mode.clone(),
            cap_add: cap_add.clone(),
            cap_drop: cap_drop.clone(),
            pids_limit: *pids_limit,
            user: user.clone(),
            pull: *pull,
        }
    }
}

/// Whether a policy with this `selector` governs a machine with these labels: it carries
/// every one of them.
pub fn selects(selector: &BTreeMap<String, String>, labels: &Labels) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v.as_str()))
}

/// What a container asks for, as the policies see it, and how they confine it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerAsk {
    pub image: String,
    pub cpus: Option<f64>,
    pub memory_mb: Option<u64>,
    pub duration_seconds: Option<u64>,
    pub network_mode: Option<String>,
    /// Capabilities added to the default set (by policies).
    pub cap_add: BTreeSet<String>,
    /// Capabilities dropped from it (by policies); a drop wins over an add.
    pub cap_drop: BTreeSet<String>,
    /// Most processes, if a policy sets it.
    pub pids_limit: Option<u32>,
    /// The user: a policy's (the last by name that sets one), else the job's.
    pub user: Option<String>,
    /// When the image is pulled: the job's, unless a policy sets it.
    pub pull: Option<crate::PullPolicy>,
    /// Whether a policy set `pull` (then another policy's `never` still wins).
    pub pull_by_policy: bool,
}

impl ContainerAsk {
    /// What a job's container asks for, before any policy.
    pub fn for_job(spec: &crate::JobSpec) -> ContainerAsk {
        ContainerAsk {
            image: spec.image.clone().unwrap_or_default(),
            cpus: spec.cpus,
            memory_mb: spec.memory_mb,
            duration_seconds: spec.timeout_seconds,
            user: spec.user.clone(),
            pull: spec.pull,
            ..ContainerAsk::default()
        }
    }
}

/// `ask` under every policy in `policies` that selects a machine with `labels`, in name
/// order, or the first one's refusal. The one check the scheduler (where work may go) and
/// the machine (what it starts) share, so they cannot disagree.
pub fn govern<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    labels: &Labels,
    ask: ContainerAsk,
) -> Result<ContainerAsk, String> {
    policies
        .into_iter()
        .filter(|policy| policy.spec.selects(labels))
        .try_fold(ask, |ask, policy| policy.spec.apply(&policy.name, ask))
}

/// `*` matches any run of characters; everything else matches itself.
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

impl PolicySpec {
    pub fn validate(&self) -> Result<(), String> {
        Labels::try_from(self.selector.clone()).map_err(|err| format!("selector: {err}"))?;
        if self
            .allowed_images
            .iter()
            .any(|p| p.is_empty() || p.len() > 255)
        {
            return Err("allowed_images: each pattern is 1 to 255 characters".into());
        }
        if self
            .max_cpus
            .is_some_and(|c| !crate::job_spec::CPUS_RANGE.contains(&c))
        {
            return Err("max_cpus must be between 0.01 and 1024".into());
        }
        if self
            .max_memory_mb
            .is_some_and(|m| !crate::job_spec::MEMORY_MB_RANGE.contains(&m))
        {
            return Err("max_memory_mb must be between 6 and 16777216".into());
        }
        if let Some(seconds) = self.max_duration_seconds {
            crate::job_spec::check_seconds("max_duration_seconds", seconds)?;
        }
        if let Some(mode) = &self.network_mode
            && !NETWORK_MODES.contains(&mode.as_str())
        {
            return Err(format!(
                "network_mode {mode:?}: use one of {}",
                NETWORK_MODES.join(", ")
            ));
        }
        for (field, caps) in [("cap_add", &self.cap_add), ("cap_drop", &self.cap_drop)] {
            if let Some(unknown) = caps.iter().find(|c| !CAPABILITIES.contains(&c.as_str())) {
                return Err(format!(
                    "{field}: {unknown:?} is not a capability (names as in capabilities(7) without CAP_, e.g. NET_RAW)"
                ));
            }
        }
        if let Some(limit) = self.pids_limit
            && !PIDS_LIMIT_RANGE.contains(&limit)
        {
            return Err(format!(
                "pids_limit must be between {} and {}, got {limit}",
                PIDS_LIMIT_RANGE.start(),
                PIDS_LIMIT_RANGE.end()
            ));
        }
        if let Some(user) = &self.user {
            crate::job_spec::check_user("user", user)?;
        }
        Ok(())
    }

    /// Whether the policy sets `pull`, which an older build would not follow (protocol
    /// level 9).
    pub fn sets_pull(&self) -> bool {
        self.pull.is_some()
    }

    /// Whether the policy uses a field of protocol level 8 (confinement).
    pub fn confines(&self) -> bool {
        !self.cap_add.is_empty()
            || !self.cap_drop.is_empty()
            || self.pids_limit.is_some()
            || self.user.is_some()
    }

    /// Whether the policy governs a machine with these labels.
    pub fn selects(&self, labels: &Labels) -> bool {
        selects(&self.selector, labels)
    }

    /// `ask` within this policy (limits it left open filled in), or why not.
    pub fn apply(&self, name: &str, mut ask: ContainerAsk) -> Result<ContainerAsk, String> {
        let refuse = |why: String| Err(format!("policy {name}: {why}"));
        if !self.allowed_images.is_empty()
            && !self
                .allowed_images
                .iter()
                .any(|p| pattern_matches(p, &ask.image))
        {
            return refuse(format!(
                "image {} is not allowed (allowed: {})",
                ask.image,
                self.allowed_images.join(", ")
            ));
        }
        if let Some(max) = self.max_cpus {
            match ask.cpus {
                Some(cpus) if cpus > max => {
                    return refuse(format!("{cpus} CPUs asked, at most {max} allowed"));
                }
                Some(_) => {}
                None => ask.cpus = Some(max),
            }
        }
        if let Some(max) = self.max_memory_mb {
            match ask.memory_mb {
                Some(mb) if mb > max => {
                    return refuse(format!("{mb} MiB of memory asked, at most {max} allowed"));
                }
                Some(_) => {}
                None => ask.memory_mb = Some(max),
            }
        }
        if let Some(max) = self.max_duration_seconds {
            match ask.duration_seconds {
                Some(s) if s > max => {
                    return refuse(format!("a life of {s} s asked, at most {max} s allowed"));
                }
                Some(_) => {}
                None => ask.duration_seconds = Some(max),
            }
        }
        if self.network_mode.is_some() {
            ask.network_mode = self.network_mode.clone();
        }
        ask.cap_add.extend(self.cap_add.iter().cloned());
        ask.cap_drop.extend(self.cap_drop.iter().cloned());
        if let Some(limit) = self.pids_limit {
            ask.pids_limit = Some(ask.pids_limit.map_or(limit, |held| held.min(limit)));
        }
        if let Some(user) = &self.user {
            ask.user = Some(user.clone());
        }
        if let Some(pull) = self.pull {
            let never = Some(crate::PullPolicy::Never);
            if !(ask.pull_by_policy && ask.pull == never) {
                ask.pull = Some(pull);
            }
            ask.pull_by_policy = true;
        }
        Ok(ask)
    }
}

/// A policy name: as a template name.
pub fn check_policy_name(name: &str) -> Result<(), String> {
    check_template_name(name).map_err(|m| m.replacen("template name", "policy name", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_shell_globs() {
        assert!(pattern_matches("busybox:*", "busybox:local"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("ghcr.io/*/tools:*", "ghcr.io/me/tools:1"));
        assert!(!pattern_matches("busybox:*", "alpine:3"));
        assert!(!pattern_matches("busybox", "busybox:local"));
        assert!(pattern_matches("a*b*c", "abc") && !pattern_matches("a*b*c", "acb"));
    }

    #[test]
    fn a_policys_pull_overrides_the_jobs_and_never_wins_between_policies() {
        use crate::PullPolicy::{Always, Missing, Never};
        let setting = |pull| PolicySpec {
            pull: Some(pull),
            ..PolicySpec::default()
        };
        let job_says = |pull| ContainerAsk {
            image: "app:1".into(),
            pull,
            ..ContainerAsk::default()
        };
        let pull_of = |policies: &[PolicySpec], ask| {
            policies
                .iter()
                .try_fold(ask, |ask, p| p.apply("p", ask))
                .unwrap()
                .pull
        };
        assert_eq!(pull_of(&[], job_says(Some(Never))), Some(Never));
        assert_eq!(
            pull_of(&[setting(Always)], job_says(Some(Never))),
            Some(Always)
        );
        assert_eq!(pull_of(&[setting(Never)], job_says(None)), Some(Never));
        let both = [setting(Never), setting(Always)];
        assert_eq!(pull_of(&both, job_says(Some(Missing))), Some(Never));
        let both = [setting(Always), setting(Never)];
        assert_eq!(pull_of(&both, job_says(None)), Some(Never));
    }

    #[test]
    fn a_policy_refuses_naming_itself_and_fills_open_limits() {
        let policy = PolicySpec {
            allowed_images: vec!["busybox:*".into()],
            max_memory_mb: Some(2048),
            network_mode: Some("none".into()),
            ..PolicySpec::default()
        };
        let ask = ContainerAsk {
            image: "busybox:local".into(),
            ..ContainerAsk::default()
        };
        let applied = policy.apply("workers", ask.clone()).unwrap();
        assert_eq!(applied.memory_mb, Some(2048));
        assert_eq!(applied.network_mode.as_deref(), Some("none"));
        let other = ContainerAsk {
            image: "alpine:3".into(),
            ..ask.clone()
        };
        let err = policy.apply("workers", other).unwrap_err();
        assert!(
            err.starts_with("policy workers: image alpine:3 is not allowed"),
            "{err}"
        );
        let big = ContainerAsk {
            memory_mb: Some(4096),
            ..ask
        };
        assert!(
            policy
                .apply("workers", big)
                .unwrap_err()
                .contains("at most 2048")
        );
        let bad = PolicySpec {
            network_mode: Some("weird".into()),
            ..PolicySpec::default()
        };
        assert!(bad.validate().unwrap_err().contains("network_mode"));
    }

    #[test]
    fn a_request_with_every_field_becomes_the_policy_with_the_same_values() {
        let body = serde_json::json!({
            "selector": {"zone": "attic"},
            "allowed_images": ["busybox:*"],
            "max_cpus": 2.0,
            "max_memory_mb": 1024,
            "max_duration_seconds": 3600,
            "network_mode": "none",
            "cap_add": ["NET_RAW"],
            "cap_drop": ["SETUID"],
            "pids_limit": 256,
            "user": "nobody",
            "pull": "never",
        });
        let request: PolicyRequest = serde_json::from_value(body.clone()).unwrap();
        let spec = PolicySpec::from(request);
        assert_eq!(serde_json::to_value(&spec).unwrap(), body);
        // Every field of the stored type is in the body (its `pull` is left out when unset).
        let mut fields = serde_json::to_value(PolicySpec::default()).unwrap();
        fields["pull"] = body["pull"].clone();
        assert_eq!(
            fields.as_object().unwrap().len(),
            11,
            "a field is missing here"
        );
    }
}
