//! The body of `POST /v1/jobs` (and of each job in `POST /v1/jobs/batch`): [`JobRequest`].
//!
//! It is a type apart from the stored [`JobSpec`], so the API can change without changing
//! what the Raft log holds. The handler turns a request into a spec where it enters
//! (`JobSpec::from`, the one conversion), then seals its secrets, checks it and settles its
//! org; only the spec is written. For now the two have the same fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::job::{default_max_attempts, default_org, default_queue_timeout};
use crate::{JobKind, JobSpec, PullPolicy};

/// The body of `POST /v1/jobs`: what to run, where and how persistently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
// `ApiJson` refuses unknown fields, naming them; the type itself does not.
pub struct JobRequest {
    /// The program and its arguments; never run through a shell.
    pub command: Vec<String>,
    /// Run in a container from this image; only machines with Docker take such a job.
    #[serde(default)]
    pub image: Option<String>,
    /// The image id (`sha256:...`, as `docker image inspect` shows it) the machine's copy of
    /// `image` must have; a machine whose copy differs fails the attempt, naming both.
    #[serde(default)]
    pub image_digest: Option<String>,
    /// The template the job was made from, for display only.
    #[serde(default)]
    pub template_id: Option<String>,
    /// Labels a machine must carry, key and value, to take the job.
    #[serde(default)]
    pub required_labels: BTreeMap<String, String>,
    /// One machine id (hex), `"all_online"` for one child job per ONLINE machine, or absent
    /// for any machine.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Higher runs first; equal priorities run in submission order.
    #[serde(default)]
    pub priority: i32,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are secret, given in clear. The node the request
    /// enters through seals each before the job goes to the log, only the machine that runs
    /// the job opens them, and the API shows each as [`crate::job_spec::SECRET_SHOWN`].
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
    /// CPU cores a container job may use (e.g. 1.5); container jobs only.
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Memory a container job may use, in MiB; container jobs only.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// The user a container job runs as (`name`, `uid` or `uid:gid`); the image's own
    /// `USER` when `None`. A policy that sets one overrides it. Container jobs only.
    #[serde(default)]
    pub user: Option<String>,
    /// When the machine pulls `image` from its registry: only when it lacks it (`None`
    /// means [`PullPolicy::Missing`]), before every attempt, or never. Container jobs only.
    #[serde(default)]
    pub pull: Option<PullPolicy>,
    /// GPUs the container gets, 1 to 16: the job goes only to a machine with that many
    /// free, which hands them to the container (as `docker run --gpus`). Container jobs
    /// only.
    #[serde(default)]
    pub gpus: Option<u32>,
    /// Longest one attempt may run; the executor stops it after that.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Longest the job may wait for a machine before it is `timed_out`.
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout_seconds: u64,
    /// Attempts that may fail before the job is `failed`, 1 to 10.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// A second submit with the same key in the same org returns the first job.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The owning organisation: the caller's, which a request may name or leave out.
    #[serde(default = "default_org")]
    pub org: String,
    /// `job`; a session is made from a template with `POST /v1/sessions` instead.
    #[serde(default)]
    pub kind: JobKind,
}

impl Default for JobRequest {
    /// An empty command with every other field at its default.
    fn default() -> Self {
        JobRequest {
            command: Vec::new(),
            image: None,
            image_digest: None,
            template_id: None,
            required_labels: BTreeMap::new(),
            agent_id: None,
            priority: 0,
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            cpus: None,
            memory_mb: None,
            user: None,
            pull: None,
            gpus: None,
            timeout_seconds: None,
            queue_timeout_seconds: default_queue_timeout(),
            max_attempts: default_max_attempts(),
            idempotency_key: None,
            org: default_org(),
            kind: JobKind::Job,
        }
    }
}

impl JobRequest {
    /// A request running `command` with every other field at its default.
    pub fn new<S: Into<String>>(command: impl IntoIterator<Item = S>) -> Self {
        JobRequest {
            command: command.into_iter().map(Into::into).collect(),
            ..JobRequest::default()
        }
    }
}

impl From<JobRequest> for JobSpec {
    /// The spec a request asks for, field by field; its secrets are still in clear.
    fn from(request: JobRequest) -> Self {
        let JobRequest {
            command,
            image,
            image_digest,
            template_id,
            required_labels,
            agent_id,
            priority,
            env,
            secret_env,
            cpus,
            memory_mb,
            user,
            pull,
            gpus,
            timeout_seconds,
            queue_timeout_seconds,
            max_attempts,
            idempotency_key,
            org,
            kind,
        } = request;
        JobSpec {
            command,
            image,
            image_digest,
            template_id,
            required_labels,
            agent_id,
            priority,
            env,
            secret_env,
            cpus,
            memory_mb,
            user,
            pull,
            gpus,
            timeout_seconds,
            queue_timeout_seconds,
            max_attempts,
            idempotency_key,
            org,
            kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn a_minimal_request_takes_the_defaults_of_a_spec() {
        let request: JobRequest = serde_json::from_str(r#"{"command": ["echo", "hi"]}"#).unwrap();
        assert_eq!(request, JobRequest::new(["echo", "hi"]));
        assert_eq!(JobSpec::from(request), JobSpec::new(["echo", "hi"]));
    }

    #[test]
    fn a_request_with_every_field_becomes_the_spec_with_the_same_values() {
        let body = json!({
            "command": ["sh", "-c", "echo hi"],
            "image": "busybox:local",
            "image_digest": format!("sha256:{}", "ab".repeat(32)),
            "template_id": "dev",
            "required_labels": {"gpu": "true"},
            "agent_id": "00ab",
            "priority": -5,
            "env": {"EPOCHS": "3"},
            "secret_env": {"API_TOKEN": "hunter2"},
            "cpus": 1.5,
            "memory_mb": 512,
            "user": "1000:1000",
            "pull": "always",
            "gpus": 2,
            "timeout_seconds": 60,
            "queue_timeout_seconds": 10,
            "max_attempts": 1,
            "idempotency_key": "nightly-7",
            "org": "lab",
            "kind": "session",
        });
        // Every field of the spec is in the body, and none at its default.
        let defaults = serde_json::to_value(JobSpec::default()).unwrap();
        let (body_fields, spec_fields) = (body.as_object().unwrap(), defaults.as_object().unwrap());
        assert_eq!(
            body_fields.len(),
            spec_fields.len(),
            "a field is missing here"
        );
        for (field, value) in body_fields {
            assert_ne!(
                spec_fields.get(field),
                Some(value),
                "{field} is at its default"
            );
            assert_ne!(value, &Value::Null, "{field}");
        }
        let request: JobRequest = serde_json::from_value(body.clone()).unwrap();
        let spec = JobSpec::from(request);
        assert_eq!(serde_json::to_value(&spec).unwrap(), body);
        // The log holds the spec under the same names (MessagePack read back as a plain map).
        let stored: Value = crate::frame::decode(&crate::frame::encode(&spec).unwrap()).unwrap();
        assert_eq!(stored, body);
    }
}
