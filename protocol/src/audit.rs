//! The audit log: every change a user made through the API, who made it, and how it went.

use serde::{Deserialize, Serialize};

use crate::{MachineId, UnixMillis};

/// One audited change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Numbers every entry in order; the same on every node.
    pub seq: u64,
    pub at_ms: UnixMillis,
    /// The id of the API key that made the change.
    pub actor: String,
    /// The org of that key.
    pub org: String,
    /// What was done: `submit_job`, `submit_jobs` (a batch), `cancel_job`, `label_machine`,
    /// `drain`, `undrain`, `kill_switch_on`, `kill_switch_off`, `create_api_key`,
    /// `revoke_api_key`.
    pub action: String,
    /// What it was done to: `job 42`, `jobs 42-1041`, `machine 00ab…`, `key 7e57…`, `fleet`.
    pub target: String,
    /// The machines it concerned, for the per-machine view.
    pub machines: Vec<MachineId>,
    /// `ok`, or `refused: <why>` (for a batch partly refused, `refused 2 of 1000: <why>`).
    pub outcome: String,
}

/// `GET /v1/audit`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditView>,
}

/// An audit entry as the API answers it (`AuditView::from`, the one conversion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditView {
    /// Numbers every entry in order; the same on every node.
    pub seq: u64,
    pub at_ms: UnixMillis,
    /// The id of the API key that made the change.
    pub actor: String,
    /// The org of that key.
    pub org: String,
    /// What was done, e.g. `submit_job`, `submit_jobs` (a batch), `drain`.
    pub action: String,
    /// What it was done to: `job 42`, `jobs 42-1041`, `machine 00ab…`, `key 7e57…`, `fleet`.
    pub target: String,
    /// The machines it concerned.
    pub machines: Vec<MachineId>,
    /// `ok`, or `refused: <why>` (for a batch partly refused, `refused 2 of 1000: <why>`).
    pub outcome: String,
}

impl From<&AuditEntry> for AuditView {
    fn from(entry: &AuditEntry) -> Self {
        let AuditEntry {
            seq,
            at_ms,
            actor,
            org,
            action,
            target,
            machines,
            outcome,
        } = entry;
        AuditView {
            seq: *seq,
            at_ms: *at_ms,
            actor: actor.clone(),
            org: org.clone(),
            action: action.clone(),
            target: target.clone(),
            machines: machines.clone(),
            outcome: outcome.clone(),
        }
    }
}
