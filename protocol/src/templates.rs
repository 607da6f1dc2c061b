//! Session templates: what a session runs (image, pinned digest, command, environment,
//! limits, longest life, required labels). Every change is a new version; the current one
//! can be rolled back to any earlier version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{JobSpec, PullPolicy, UnixMillis};

/// Longest template name, in bytes.
pub const MAX_TEMPLATE_NAME: usize = 63;
/// Most versions a template keeps; the oldest go first.
pub const MAX_VERSIONS: usize = 100;

/// A template name: 1 to 63 of a-z, 0-9, '-', '_' or '.', starting with a letter or digit.
pub fn check_template_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TEMPLATE_NAME
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "template name {name:?} must be 1 to {MAX_TEMPLATE_NAME} characters of a-z, 0-9, '-', '_' or '.', starting with a letter or digit"
        ))
    }
}

/// `PUT /v1/templates/{name}`: one version of a template, as the API takes it.
///
/// A type apart from the stored [`TemplateSpec`], so the API can change without changing
/// what the Raft log holds; `TemplateSpec::from` is the one conversion. For now the two
/// have the same fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
// `ApiJson` refuses unknown fields, naming them; the type itself does not.
pub struct TemplateRequest {
    /// The image sessions run, pulled from its registry by the machine as `pull` says.
    pub image: String,
    /// The image id every machine must run (`sha256:...`, as `docker image inspect` shows
    /// it); a machine whose image differs refuses the session, naming both.
    #[serde(default)]
    pub digest: Option<String>,
    /// The program and its arguments; empty runs the image's own command.
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables whose values are secret, given in clear; sealed as a job's are before the
    /// template goes to the log.
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
    /// CPU cores a session may use.
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Memory a session may use, in MiB.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// The user sessions run as; the image's own `USER` when `None`.
    #[serde(default)]
    pub user: Option<String>,
    /// When a machine pulls the image: only when it lacks it (`None`), before every
    /// session, or never.
    #[serde(default)]
    pub pull: Option<PullPolicy>,
    /// GPUs each session gets, 1 to 16.
    #[serde(default)]
    pub gpus: Option<u32>,
    /// Longest a session lives; it is then terminated.
    #[serde(default)]
    pub max_duration_seconds: Option<u64>,
    /// Labels a machine must carry to run sessions from the template.
    #[serde(default)]
    pub required_labels: BTreeMap<String, String>,
}

impl From<TemplateRequest> for TemplateSpec {
    /// The version a request asks for, field by field; its secrets are still in clear.
    fn from(request: TemplateRequest) -> Self {
        let TemplateRequest {
            image,
            digest,
            command,
            env,
            secret_env,
            cpus,
            memory_mb,
            user,
            pull,
            gpus,
            max_duration_seconds,
            required_labels,
        } = request;
        TemplateSpec {
            image,
            digest,
            command,
            env,
            secret_env,
            cpus,
            memory_mb,
            user,
            pull,
            gpus,
            max_duration_seconds,
            required_labels,
        }
    }
}

/// One version of a template, as the log keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
// Stored in the log: no `deny_unknown_fields`, so an older build reads a newer record
// (ignoring what it does not know).
pub struct TemplateSpec {
    /// The image sessions run, pulled from its registry by the machine as [`Self::pull`] says.
    pub image: String,
    /// The image id every machine must run (`sha256:...`, as `docker image inspect` shows
    /// it); a machine whose image differs refuses the session, naming both.
    #[serde(default)]
    pub digest: Option<String>,
    /// The program and its arguments; empty runs the image's own command.
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables whose values are secret, sealed as a job's are (see
    /// [`JobSpec::secret_env`]).
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
    /// CPU cores a session may use.
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Memory a session may use, in MiB.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// The user sessions run as; the image's own `USER` when `None`.
    #[serde(default)]
    pub user: Option<String>,
    /// When a machine pulls the image (see [`JobSpec::pull`]); `missing` when `None`.
    #[serde(default)]
    pub pull: Option<PullPolicy>,
    /// GPUs each session gets (see [`JobSpec::gpus`]).
    #[serde(default)]
    pub gpus: Option<u32>,
    /// Longest a session lives; it is then terminated.
    #[serde(default)]
    pub max_duration_seconds: Option<u64>,
    /// Labels a machine must carry to run sessions from the template.
    #[serde(default)]
    pub required_labels: BTreeMap<String, String>,
}

impl TemplateSpec {
    /// The job a session from this template runs; validated as every job is.
    pub fn session_job(&self, template: &str, version: u32) -> JobSpec {
        JobSpec {
            command: self.command.clone(),
            image: Some(self.image.clone()),
            image_digest: self.digest.clone(),
            template_id: Some(format!("{template}@v{version}")),
            required_labels: self.required_labels.clone(),
            env: self.env.clone(),
            secret_env: self.secret_env.clone(),
            cpus: self.cpus,
            memory_mb: self.memory_mb,
            user: self.user.clone(),
            pull: self.pull,
            gpus: self.gpus,
            timeout_seconds: self.max_duration_seconds,
            max_attempts: 1,
            kind: crate::JobKind::Session,
            ..JobSpec::default()
        }
    }

    /// Checks every field, as the API does (see [`JobSpec::validate`]).
    pub fn validate(&self) -> Result<(), String> {
        // Checked here, by its own name, before it becomes the session's timeout_seconds.
        if let Some(seconds) = self.max_duration_seconds {
            crate::job_spec::check_seconds("max_duration_seconds", seconds)?;
        }
        self.session_job("t", 1).validate()
    }

    /// The rules every build applies to a template in the log ([`JobSpec::validate_logged`]).
    pub fn validate_logged(&self) -> Result<(), String> {
        self.session_job("t", 1).validate_logged()
    }
}

/// One version of a template, as the log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateVersion {
    pub version: u32,
    pub spec: TemplateSpec,
    pub created_at_ms: UnixMillis,
    /// The API key that made it.
    pub created_by: String,
}

/// A template: its versions, oldest first, and the one sessions use now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    /// The org that owns it: only its keys see it, change it and start sessions from it.
    /// Empty for a template made before templates belonged to orgs (every org sees it).
    #[serde(default)]
    pub org: String,
    pub name: String,
    pub current: u32,
    pub versions: Vec<TemplateVersion>,
}

impl Template {
    /// The version sessions use now.
    pub fn current(&self) -> Option<&TemplateVersion> {
        self.versions.iter().find(|v| v.version == self.current)
    }
}

impl crate::FleetState {
    /// The template `name` as `org` sees it: its own, or one made before templates
    /// belonged to orgs.
    pub fn template(&self, org: &str, name: &str) -> Option<&Template> {
        let owned = self.templates.get(org).and_then(|t| t.get(name));
        owned.or_else(|| self.unowned_templates.get(name))
    }

    /// Every template of every org, and the fleet-wide ones.
    pub fn all_templates(&self) -> impl Iterator<Item = &Template> {
        let owned = self.templates.values().flat_map(|t| t.values());
        owned.chain(self.unowned_templates.values())
    }

    /// Every template `org` sees, by name.
    pub fn templates_of<'a>(&'a self, org: &str) -> impl Iterator<Item = &'a Template> {
        let owned = self.templates.get(org).into_iter().flat_map(|t| t.values());
        owned.chain(self.unowned_templates.values())
    }
}

/// `POST /v1/templates/{name}/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version sessions use from now on.
    pub version: u32,
}

/// `GET /v1/templates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateList {
    pub templates: Vec<TemplateView>,
}

/// A template as the API answers it: made from the stored [`Template`] where it leaves
/// (`TemplateView::from`, the one conversion), each version's spec shown as the request
/// that would make it, secret values never.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateView {
    /// The org that owns it; empty for one made before templates belonged to orgs.
    pub org: String,
    pub name: String,
    /// The version sessions use now.
    pub current: u32,
    /// Its versions, oldest first.
    pub versions: Vec<TemplateVersionView>,
}

/// One version of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateVersionView {
    pub version: u32,
    pub spec: TemplateRequest,
    pub created_at_ms: UnixMillis,
    /// The API key that made it.
    pub created_by: String,
}

impl TemplateView {
    /// The version sessions use now.
    pub fn current_version(&self) -> Option<&TemplateVersionView> {
        self.versions.iter().find(|v| v.version == self.current)
    }
}

impl From<&Template> for TemplateView {
    fn from(template: &Template) -> Self {
        let Template {
            org,
            name,
            current,
            versions,
        } = template;
        TemplateView {
            org: org.clone(),
            name: name.clone(),
            current: *current,
            versions: versions.iter().map(TemplateVersionView::from).collect(),
        }
    }
}

impl From<&TemplateVersion> for TemplateVersionView {
    fn from(version: &TemplateVersion) -> Self {
        let TemplateVersion {
            version,
            spec,
            created_at_ms,
            created_by,
        } = version;
        TemplateVersionView {
            version: *version,
            spec: TemplateRequest::from(spec),
            created_at_ms: *created_at_ms,
            created_by: created_by.clone(),
        }
    }
}

impl From<&TemplateSpec> for TemplateRequest {
    /// The request that would make `spec`, field by field, every secret value shown as
    /// [`crate::job_spec::SECRET_SHOWN`].
    fn from(spec: &TemplateSpec) -> Self {
        let TemplateSpec {
            image,
            digest,
            command,
            env,
            secret_env,
            cpus,
            memory_mb,
            user,
            pull,
            gpus,
            max_duration_seconds,
            required_labels,
        } = spec;
        TemplateRequest {
            image: image.clone(),
            digest: digest.clone(),
            command: command.clone(),
            env: env.clone(),
            secret_env: crate::job_view::shown_as_secret(secret_env.clone()),
            cpus: *cpus,
            memory_mb: *memory_mb,
            user: user.clone(),
            pull: *pull,
            gpus: *gpus,
            max_duration_seconds: *max_duration_seconds,
            required_labels: required_labels.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_is_checked_as_the_job_its_sessions_run() {
        let spec = TemplateSpec {
            image: "busybox:local".into(),
            max_duration_seconds: Some(7200),
            ..TemplateSpec::default()
        };
        assert_eq!(spec.validate(), Ok(()));
        let job = spec.session_job("default", 3);
        assert_eq!(job.template_id.as_deref(), Some("default@v3"));
        assert_eq!((job.timeout_seconds, job.max_attempts), (Some(7200), 1));
        let bad = TemplateSpec {
            cpus: Some(0.0),
            ..spec.clone()
        };
        assert!(bad.validate().unwrap_err().contains("cpus"));
        let digest = TemplateSpec {
            digest: Some("sha256:abc".into()),
            ..spec
        };
        assert!(digest.validate().unwrap_err().contains("digest"));
        assert!(check_template_name("Default").is_err());
        assert!(check_template_name("py-3.12").is_ok());
    }

    #[test]
    fn a_request_with_every_field_becomes_the_version_with_the_same_values() {
        let body = serde_json::json!({
            "image": "busybox:local",
            "digest": format!("sha256:{}", "ab".repeat(32)),
            "command": ["sleep", "60"],
            "env": {"EPOCHS": "3"},
            "secret_env": {"API_TOKEN": "hunter2"},
            "cpus": 1.5,
            "memory_mb": 512,
            "user": "1000:1000",
            "pull": "always",
            "gpus": 2,
            "max_duration_seconds": 3600,
            "required_labels": {"gpu": "true"},
        });
        let fields = serde_json::to_value(TemplateSpec::default()).unwrap();
        assert_eq!(
            fields.as_object().unwrap().len(),
            12,
            "a field is missing here"
        );
        let request: TemplateRequest = serde_json::from_value(body.clone()).unwrap();
        let spec = TemplateSpec::from(request);
        assert_eq!(serde_json::to_value(&spec).unwrap(), body);
    }
}
