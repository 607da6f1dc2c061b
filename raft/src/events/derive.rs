//! The before and after of one command: [`Before::of`] notes what the command names and
//! how it stood, [`Before::derive`] turns that, the response and the new state into events.

use serde_json::{Value, json};
use shoal_protocol::audit::AuditEntry;
use shoal_protocol::events::{Topic, kind};
use shoal_protocol::keys::ApiKeyRecord;
use shoal_protocol::{
    Command, Drain, FleetState, JobId, Labels, MachineId, MachineInfo, MachineStatus, Response,
    UnixMillis,
};

use super::Sink;
use super::jobs::{self, Mark};
use crate::costs;

/// What a command's events need from before it applied, and from the command itself
/// (which `apply` consumes).
pub(super) enum Before {
    Quiet,
    Upsert {
        at_ms: UnixMillis,
        old: Option<Box<MachineInfo>>,
    },
    Status {
        id: MachineId,
        at_ms: UnixMillis,
        old: Option<MachineStatus>,
    },
    Labels {
        id: MachineId,
        old: Option<Labels>,
    },
    Remove {
        id: MachineId,
        name: Option<String>,
    },
    Submit {
        at_ms: UnixMillis,
    },
    /// Dispatch, reports, cancels, requeues, timeouts: the jobs the command can change,
    /// in the order their events go out.
    Jobs {
        at_ms: UnixMillis,
        marks: Vec<(JobId, Mark)>,
    },
    Prune,
    Drain {
        old: Vec<(MachineId, Option<Drain>)>,
        at_ms: Option<UnixMillis>,
    },
    KillSwitch {
        at_ms: UnixMillis,
        old: Option<shoal_protocol::KillSwitch>,
    },
    KeyCreated {
        id: String,
    },
    KeyRevoked {
        id: String,
        at_ms: UnixMillis,
        was_revoked: bool,
    },
    /// Registration tokens made, revoked or used: whether each existed, was used, was
    /// revoked.
    Tokens {
        at_ms: Option<UnixMillis>,
        old: Vec<(String, Option<(bool, bool)>)>,
    },
}

impl Before {
    pub(super) fn of(cmd: &Command, state: &FleetState) -> Before {
        let machine = |id: &MachineId| state.machines.get(id);
        match cmd {
            Command::UpsertMachine { info, at_ms } => Before::Upsert {
                at_ms: *at_ms,
                old: machine(&info.id).map(|m| Box::new(m.info.clone())),
            },
            Command::SetStatus { id, at_ms, .. } => Before::Status {
                id: *id,
                at_ms: *at_ms,
                old: machine(id).map(|m| m.status),
            },
            Command::LabelMachine { id, .. } => Before::Labels {
                id: *id,
                old: machine(id).map(|m| m.operator_labels.clone()),
            },
            Command::RemoveMachine { id } | Command::RetireMachine { id } => Before::Remove {
                id: *id,
                name: machine(id).map(|m| m.info.name.clone()),
            },
            Command::SubmitJob { at_ms, .. } => Before::Submit { at_ms: *at_ms },
            Command::Dispatch { placements, at_ms } => {
                let marks = jobs::marks(state, placements.iter().map(|p| p.job));
                Before::Jobs {
                    at_ms: *at_ms,
                    marks,
                }
            }
            Command::ReportJob { job, at_ms, .. }
            | Command::CancelJob { job, at_ms }
            | Command::RequeueJob { job, at_ms, .. }
            | Command::TimeOutJob { job, at_ms } => Before::Jobs {
                at_ms: *at_ms,
                marks: jobs::marks(state, [*job]),
            },
            // The wrappers are opened before this (see `apply_into`): what they carry
            // makes the events.
            Command::Batch(_) | Command::Request { .. } | Command::Audited { .. } => Before::Quiet,
            Command::SetQueueReasons { .. }
            | Command::SetBudget { .. }
            | Command::ReportCost { .. }
            | Command::PutTemplate { .. }
            | Command::RollbackTemplate { .. }
            | Command::SetPolicy { .. }
            | Command::SetRegistryCredential { .. }
            | Command::RecordBatch { .. }
            | Command::SetFleetLevel { .. }
            | Command::ApproveMachine { .. }
            | Command::RequestGossipKeyRotation
            | Command::RotateGossipKey { .. }
            | Command::SetFleetSettings { .. } => Before::Quiet,
            Command::EnforceBudgets { at_ms } => Before::Jobs {
                at_ms: *at_ms,
                marks: jobs::marks(state, costs::to_stop(state, *at_ms)),
            },
            Command::PruneJobs { .. } => Before::Prune,
            Command::SetDrain { machines, drain } => Before::Drain {
                old: machines
                    .iter()
                    .filter_map(|id| machine(id).map(|m| (*id, m.drain.clone())))
                    .collect(),
                at_ms: drain.as_ref().map(|d| d.since_ms),
            },
            Command::SetKillSwitch { at_ms, .. } => Before::KillSwitch {
                at_ms: *at_ms,
                old: state.kill_switch.clone(),
            },
            Command::CreateApiKey { record } => Before::KeyCreated {
                id: record.id.clone(),
            },
            Command::RevokeApiKey { id, at_ms } => Before::KeyRevoked {
                id: id.clone(),
                at_ms: *at_ms,
                was_revoked: state
                    .api_keys
                    .get(id)
                    .is_some_and(|k| k.revoked_at_ms.is_some()),
            },
            Command::CreateTokens { tokens } => {
                Before::tokens(state, tokens.iter().map(|t| t.id.as_str()), None)
            }
            Command::RevokeToken { id, at_ms } | Command::UseToken { id, at_ms, .. } => {
                Before::tokens(state, [id.as_str()], Some(*at_ms))
            }
        }
    }

    fn tokens<'a>(
        state: &FleetState,
        ids: impl IntoIterator<Item = &'a str>,
        at_ms: Option<UnixMillis>,
    ) -> Before {
        let old = ids
            .into_iter()
            .map(|id| {
                let mark = state
                    .tokens
                    .get(id)
                    .map(|t| (t.used_by.is_some(), t.revoked_at_ms.is_some()));
                (id.to_string(), mark)
            })
            .collect();
        Before::Tokens { at_ms, old }
    }

    /// The events of the command, now applied with `response`, that left `state`.
    pub(super) fn derive(self, response: &Response, state: &FleetState, sink: &mut Sink) {
        // A rejected command changed nothing.
        if matches!(response, Response::Rejected { .. }) {
            return;
        }
        match self {
            Before::Quiet => {}
            Before::Upsert { at_ms, old } => {
                let Response::Machine(record) = response else {
                    return;
                };
                let info = &record.info;
                let (kind, changed) = match old {
                    None => (kind::MACHINE_REGISTERED, Vec::new()),
                    Some(old) => (kind::MACHINE_UPDATED, changed_facts(&old, info)),
                };
                if kind == kind::MACHINE_UPDATED && changed.is_empty() {
                    return;
                }
                let mut detail = json!({
                    "name": info.name,
                    "hostname": info.hostname,
                    "version": info.version,
                    "labels": record.labels(),
                    "status": record.status,
                });
                if kind == kind::MACHINE_UPDATED {
                    detail["changed"] = json!(changed);
                }
                sink.push(
                    Some(at_ms),
                    Topic::Machine,
                    kind,
                    machine_subject(info.id),
                    &detail,
                );
            }
            Before::Status { id, at_ms, old } => {
                let Some(record) = state.machines.get(&id) else {
                    return;
                };
                if old == Some(record.status) {
                    return;
                }
                let detail =
                    json!({"status": record.status, "previous": old, "name": record.info.name});
                sink.push(
                    Some(at_ms),
                    Topic::Machine,
                    kind::MACHINE_STATUS,
                    machine_subject(id),
                    &detail,
                );
            }
            Before::Labels { id, old } => {
                let Some(record) = state.machines.get(&id) else {
                    return;
                };
                if old.as_ref() == Some(&record.operator_labels) {
                    return;
                }
                let detail = json!({
                    "name": record.info.name,
                    "operator_labels": record.operator_labels,
                    "labels": record.labels(),
                });
                sink.push(
                    None,
                    Topic::Machine,
                    kind::MACHINE_LABELS,
                    machine_subject(id),
                    &detail,
                );
            }
            Before::Remove { id, name } => sink.push(
                None,
                Topic::Machine,
                kind::MACHINE_REMOVED,
                machine_subject(id),
                &json!({"name": name}),
            ),
            Before::Submit { at_ms } => {
                let Response::Submitted { job, created: true } = response else {
                    return;
                };
                jobs::submitted(sink, at_ms, job);
                for child in &job.children {
                    if let Some(child) = state.jobs.get(child) {
                        jobs::submitted(sink, at_ms, child);
                    }
                }
            }
            Before::Jobs { at_ms, marks } => {
                for (id, mark) in marks {
                    if let Some(job) = state.jobs.get(&id) {
                        jobs::changed(sink, at_ms, mark, job);
                    }
                }
            }
            Before::Prune => {
                let Response::Jobs(removed) = response else {
                    return;
                };
                if !removed.is_empty() {
                    let detail = json!({"jobs": removed, "count": removed.len()});
                    sink.push(None, Topic::Job, kind::JOBS_PRUNED, None, &detail);
                }
            }
            Before::Drain { old, at_ms } => {
                for (id, was) in old {
                    let Some(record) = state.machines.get(&id) else {
                        continue;
                    };
                    if record.drain == was {
                        continue;
                    }
                    let (kind, at_ms, detail) = match &record.drain {
                        Some(drain) => (
                            kind::DRAIN,
                            at_ms,
                            json!({"name": record.info.name, "since_ms": drain.since_ms, "deadline_ms": drain.deadline_ms}),
                        ),
                        None => (kind::UNDRAIN, None, json!({"name": record.info.name})),
                    };
                    sink.push(at_ms, Topic::Machine, kind, machine_subject(id), &detail);
                }
            }
            Before::KillSwitch { at_ms, old } => {
                if state.kill_switch == old {
                    return;
                }
                let detail = match &state.kill_switch {
                    Some(switch) => json!({
                        "on": true,
                        "reason": switch.reason,
                        "actor": switch.actor,
                        "since_ms": switch.since_ms,
                    }),
                    None => json!({"on": false}),
                };
                sink.push(Some(at_ms), Topic::Fleet, kind::KILL_SWITCH, None, &detail);
            }
            Before::KeyCreated { id } => {
                if let Some(key) = state.api_keys.get(&id) {
                    let at_ms = Some(key.created_at_ms);
                    let detail = key_detail(key);
                    sink.push(at_ms, Topic::Fleet, kind::KEY_CREATED, Some(id), &detail);
                }
            }
            Before::KeyRevoked {
                id,
                at_ms,
                was_revoked,
            } => {
                if let Some(key) = state.api_keys.get(&id)
                    && !was_revoked
                {
                    let detail = key_detail(key);
                    sink.push(
                        Some(at_ms),
                        Topic::Fleet,
                        kind::KEY_REVOKED,
                        Some(id),
                        &detail,
                    );
                }
            }
            Before::Tokens { at_ms, old } => {
                for (id, was) in old {
                    let Some(token) = state.tokens.get(&id) else {
                        continue;
                    };
                    let (kind, at_ms) = match was {
                        None => (kind::TOKEN_CREATED, Some(token.created_at_ms)),
                        Some((false, _)) if token.used_by.is_some() => (kind::TOKEN_USED, at_ms),
                        Some((_, false)) if token.revoked_at_ms.is_some() => {
                            (kind::TOKEN_REVOKED, at_ms)
                        }
                        Some(_) => continue,
                    };
                    let detail = json!({
                        "org": token.org,
                        "labels": token.labels,
                        "expires_at_ms": token.expires_at_ms,
                        "created_by": token.created_by,
                        "used_by": token.used_by,
                    });
                    sink.push(at_ms, Topic::Fleet, kind, Some(id), &detail);
                }
            }
        }
    }
}

fn machine_subject(id: MachineId) -> Option<String> {
    Some(id.to_string())
}

/// What an API key event shows of the key: never its secret's hash.
fn key_detail(key: &ApiKeyRecord) -> Value {
    json!({
        "name": key.name,
        "org": key.org,
        "scope": key.scope,
        "created_by": key.created_by,
    })
}

/// The facts a user sees that differ between two publications of a machine's info;
/// moment-to-moment use (load, free memory, running count) is not among them.
fn changed_facts(old: &MachineInfo, new: &MachineInfo) -> Vec<&'static str> {
    let (a, b) = (&old.resources, &new.resources);
    [
        ("name", old.name != new.name),
        ("hostname", old.hostname != new.hostname),
        ("os", old.os != new.os || old.arch != new.arch),
        ("version", old.version != new.version),
        ("addr", old.addr != new.addr),
        ("labels", old.labels != new.labels),
        ("max_running", old.max_running != new.max_running),
        ("started_at_ms", old.started_at_ms != new.started_at_ms),
        (
            "resources",
            a.cpu_cores != b.cpu_cores
                || a.memory_total_bytes != b.memory_total_bytes
                || a.disk_total_bytes != b.disk_total_bytes,
        ),
    ]
    .into_iter()
    .filter(|(_, changed)| *changed)
    .map(|(name, _)| name)
    .collect()
}

/// One `audit` event for each audit entry numbered from `audit_from`: those the command
/// just applied appended, the log's tail (walked back to, not over the whole log).
pub(super) fn audit_entries(state: &FleetState, audit_from: u64, sink: &mut Sink) {
    let mut appended: Vec<&AuditEntry> = state
        .audit
        .iter()
        .rev()
        .take_while(|e| e.seq >= audit_from)
        .collect();
    appended.reverse();
    for entry in appended {
        let subject = Some(entry.target.clone()).filter(|t| !t.is_empty());
        sink.push(
            Some(entry.at_ms),
            Topic::Audit,
            &entry.action,
            subject,
            entry,
        );
    }
}
