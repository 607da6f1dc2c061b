//! A job as the API answers it: [`JobView`], made from the stored
//! [`JobRecord`](crate::JobRecord) where it leaves (`JobView::from`, the one conversion,
//! which takes the record: answers are made from copies or from what a write returned).
//!
//! A type apart from the record, as [`JobRequest`] is apart from the stored spec, so what
//! the log and snapshots hold can change without changing what clients read, and the
//! other way round. Its `spec` is a [`JobRequest`]: the job as one would submit it. The
//! record's bookkeeping (which cost reports were counted, and on which day) stays inside.
//! The conversions destructure every field, so a field added to a record does not compile
//! until someone decides whether the API shows it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::job_spec::SECRET_SHOWN;
use crate::{
    Attempt, JobId, JobRecord, JobRequest, JobSpec, JobState, JobTarget, MachineId, UnixMillis,
};

/// A job: what it runs, where it is in its life, and each try at running it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: JobId,
    /// The job as submitted: secret values never shown, others hidden from a `read` key.
    pub spec: JobRequest,
    /// Where the job may run, resolved at submit (a fan-out child names its machine).
    pub target: JobTarget,
    pub state: JobState,
    pub attempts: Vec<AttemptView>,
    /// Attempts that failed; requeues (the machine was lost) do not count.
    pub failures: u32,
    /// Why the job failed or timed out.
    pub error: Option<String>,
    pub submitted_at_ms: UnixMillis,
    /// The log index of the submit that created the job (a child shares its parent's).
    /// A submit answered with a job of another index was a duplicate.
    pub submitted_index: u64,
    /// When the state last changed.
    pub updated_at_ms: UnixMillis,
    /// A queued job is not placed before this (retry backoff).
    pub not_before_ms: UnixMillis,
    pub cancel_requested: bool,
    pub parent: Option<JobId>,
    pub children: Vec<JobId>,
    /// Why no machine took the queued job, as the leader last saw it.
    pub queue_reason: Option<String>,
}

/// One try at running a job on one machine. Numbers start at 1 and have no gaps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub number: u32,
    pub machine: MachineId,
    pub dispatched_at_ms: UnixMillis,
    pub started_at_ms: Option<UnixMillis>,
    pub finished_at_ms: Option<UnixMillis>,
    pub exit_code: Option<i32>,
    /// Why the attempt failed or was taken back from its machine.
    pub error: Option<String>,
    /// What an hour on its machine cost when it was dispatched, in micro-dollars.
    #[serde(default)]
    pub rate_micro_usd_per_hour: u64,
    /// Its run time times that rate, once it has ended.
    #[serde(default)]
    pub cost_micro_usd: Option<u64>,
    /// What it reported spending (`POST /v1/costs`).
    #[serde(default)]
    pub reported_micro_usd: u64,
    /// For a retry: why it runs where it does, against the attempt before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_because: Option<String>,
    /// The image its machine is pulling, until the attempt runs or ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulling: Option<String>,
}

impl JobView {
    /// The latest attempt, if the job was ever dispatched.
    pub fn current_attempt(&self) -> Option<&AttemptView> {
        self.attempts.last()
    }

    /// A fan-out parent: it runs nowhere itself and finishes with its children.
    pub fn is_parent(&self) -> bool {
        self.target == JobTarget::AllOnline
    }
}

impl From<JobRecord> for JobView {
    fn from(job: JobRecord) -> Self {
        let JobRecord {
            id,
            spec,
            target,
            state,
            attempts,
            failures,
            error,
            submitted_at_ms,
            submitted_index,
            updated_at_ms,
            not_before_ms,
            cancel_requested,
            parent,
            children,
            queue_reason,
        } = job;
        JobView {
            id,
            spec: JobRequest::from(spec),
            target,
            state,
            attempts: attempts.into_iter().map(AttemptView::from).collect(),
            failures,
            error,
            submitted_at_ms,
            submitted_index,
            updated_at_ms,
            not_before_ms,
            cancel_requested,
            parent,
            children,
            queue_reason,
        }
    }
}

impl From<Attempt> for AttemptView {
    fn from(attempt: Attempt) -> Self {
        let Attempt {
            number,
            machine,
            dispatched_at_ms,
            started_at_ms,
            finished_at_ms,
            exit_code,
            error,
            rate_micro_usd_per_hour,
            cost_micro_usd,
            reported_micro_usd,
            report_ids: _,
            reported_days: _,
            placed_because,
            pulling,
        } = attempt;
        AttemptView {
            number,
            machine,
            dispatched_at_ms,
            started_at_ms,
            finished_at_ms,
            exit_code,
            error,
            rate_micro_usd_per_hour,
            cost_micro_usd,
            reported_micro_usd,
            placed_because,
            pulling,
        }
    }
}

impl From<JobSpec> for JobRequest {
    /// The request that would make `spec`, field by field, every secret value shown as
    /// [`SECRET_SHOWN`] (the log holds them sealed; no answer shows them).
    fn from(spec: JobSpec) -> Self {
        let JobSpec {
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
        } = spec;
        JobRequest {
            command,
            image,
            image_digest,
            template_id,
            required_labels,
            agent_id,
            priority,
            env,
            secret_env: shown_as_secret(secret_env),
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

/// `secret_env` as answers show it: each name, no value.
pub fn shown_as_secret(mut secret_env: BTreeMap<String, String>) -> BTreeMap<String, String> {
    secret_env
        .values_mut()
        .for_each(|value| *value = SECRET_SHOWN.to_string());
    secret_env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job_spec::SECRET_SHOWN;
    use crate::{JobSpec, JobTarget};

    fn record() -> JobRecord {
        let mut spec = JobSpec::new(["train", "--epochs", "3"]);
        spec.env.insert("EPOCHS".into(), "3".into());
        spec.secret_env
            .insert("API_TOKEN".into(), "sealed:v1:abcdef".into());
        let mut job = JobRecord::queued(JobId(7), spec, JobTarget::Any, 1_000, 7);
        job.state = JobState::Completed;
        job.attempts.push(Attempt {
            number: 1,
            machine: MachineId(0xab),
            dispatched_at_ms: 1_100,
            started_at_ms: Some(1_200),
            finished_at_ms: Some(2_000),
            exit_code: Some(0),
            reported_micro_usd: 40,
            report_ids: vec!["r1".into(), "r2".into()],
            ..Attempt::default()
        });
        job
    }

    #[test]
    fn a_view_shows_the_job_but_no_secret_value_and_no_bookkeeping() {
        let view = JobView::from(record());
        assert_eq!(view.spec.command, ["train", "--epochs", "3"]);
        assert_eq!(view.spec.env["EPOCHS"], "3");
        assert_eq!(view.spec.secret_env["API_TOKEN"], SECRET_SHOWN);
        assert_eq!(view.attempts[0].reported_micro_usd, 40);
        let json = serde_json::to_string(&view).unwrap();
        assert!(!json.contains("sealed:v1"), "{json}");
        assert!(!json.contains("report_ids"), "{json}");
    }

    #[test]
    fn a_view_reads_as_the_record_older_clients_expect() {
        // An older CLI read answers as `JobRecord`: it must still read a newer node's view.
        let view = JobView::from(record());
        let read: JobRecord = serde_json::from_value(serde_json::to_value(&view).unwrap())
            .expect("an older client reads the view");
        assert_eq!(read.id, JobId(7));
        assert_eq!(read.attempts[0].exit_code, Some(0));
        assert!(read.attempts[0].report_ids.is_empty());
    }
}
