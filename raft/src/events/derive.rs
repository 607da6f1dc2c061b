//! The before and after of one command: [`Before::of`] notes what the command names and
//! how it stood, [`Before::derive`] turns that, the response and the new state into events.

use serde_json::{Value, json};
use shoal_protocol::events::{Topic, kind};
use shoal_protocol::keys::ApiKeyRecord;
use shoal_protocol::{
    Command, Drain, FleetState, JobId, JobRecord, JobState, Labels, MachineId, MachineInfo,
    MachineStatus, Response, UnixMillis,
};

use super::Sink;

/// What one job looked like before the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    state: JobState,
    attempts: usize,
    failures: u32,
    cancel_requested: bool,
}

impl Mark {
    fn of(job: &JobRecord) -> Self {
        Mark {
            state: job.state,
            attempts: job.attempts.len(),
            failures: job.failures,
            cancel_requested: job.cancel_requested,
        }
    }
}

/// What a command's events need from before it applied, and from the command itself
/// (which `apply` consumes).
pub(super) enum Before {
    Quiet,
    /// A user's change: its own events, then one for each audit entry from `audit_from`.
    Audited {
        change: Box<Before>,
        audit_from: u64,
    },
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
            Command::RemoveMachine { id } => Before::Remove {
                id: *id,
                name: machine(id).map(|m| m.info.name.clone()),
            },
            Command::SubmitJob { at_ms, .. } => Before::Submit { at_ms: *at_ms },
            Command::Dispatch { placements, at_ms } => {
                Before::jobs(state, placements.iter().map(|p| p.job), *at_ms)
            }
            Command::ReportJob { job, at_ms, .. }
            | Command::CancelJob { job, at_ms }
            | Command::RequeueJob { job, at_ms, .. }
            | Command::TimeOutJob { job, at_ms } => Before::jobs(state, [*job], *at_ms),
            // The API audits one command at a time; a batch is split before this (see
            // `apply_into`), so an audited batch would say only who made it.
            Command::SetQueueReasons { .. } | Command::Batch(_) => Before::Quiet,
            Command::Audited { command, .. } => Before::Audited {
                change: Box::new(Before::of(command, state)),
                audit_from: state.next_audit_seq,
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
        }
    }

    /// Marks for the named jobs and their families: children, the job, its parent.
    fn jobs(state: &FleetState, named: impl IntoIterator<Item = JobId>, at_ms: u64) -> Before {
        let mut marks: Vec<(JobId, Mark)> = Vec::new();
        let mut add = |id: JobId| {
            if let Some(job) = state.jobs.get(&id)
                && !marks.iter().any(|(seen, _)| *seen == id)
            {
                marks.push((id, Mark::of(job)));
            }
        };
        for id in named {
            let Some(job) = state.jobs.get(&id) else {
                continue;
            };
            job.children.iter().copied().for_each(&mut add);
            add(id);
            job.parent.into_iter().for_each(&mut add);
        }
        Before::Jobs { at_ms, marks }
    }

    /// The events of the command, now applied with `response`, that left `state`.
    pub(super) fn derive(self, response: &Response, state: &FleetState, sink: &mut Sink) {
        if let Before::Audited { change, audit_from } = self {
            // `apply` records the entry after the change: events go in that order.
            change.derive(response, state, sink);
            for entry in state.audit.iter().filter(|e| e.seq >= audit_from) {
                let subject = Some(entry.target.clone()).filter(|t| !t.is_empty());
                let detail = serde_json::to_value(entry).expect("an audit entry serializes");
                sink.push(
                    Some(entry.at_ms),
                    Topic::Audit,
                    &entry.action,
                    subject,
                    detail,
                );
            }
            return;
        }
        // A rejected command changed nothing.
        if matches!(response, Response::Rejected { .. }) {
            return;
        }
        match self {
            Before::Quiet | Before::Audited { .. } => {}
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
                    detail,
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
                    detail,
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
                    detail,
                );
            }
            Before::Remove { id, name } => sink.push(
                None,
                Topic::Machine,
                kind::MACHINE_REMOVED,
                machine_subject(id),
                json!({"name": name}),
            ),
            Before::Submit { at_ms } => {
                let Response::Submitted { job, created: true } = response else {
                    return;
                };
                submitted(sink, at_ms, job);
                for child in &job.children {
                    if let Some(child) = state.jobs.get(child) {
                        submitted(sink, at_ms, child);
                    }
                }
            }
            Before::Jobs { at_ms, marks } => {
                for (id, mark) in marks {
                    if let Some(job) = state.jobs.get(&id) {
                        job_changed(sink, at_ms, mark, job);
                    }
                }
            }
            Before::Prune => {
                let Response::Jobs(removed) = response else {
                    return;
                };
                if !removed.is_empty() {
                    let detail = json!({"jobs": removed, "count": removed.len()});
                    sink.push(None, Topic::Job, kind::JOBS_PRUNED, None, detail);
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
                    sink.push(at_ms, Topic::Machine, kind, machine_subject(id), detail);
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
                sink.push(Some(at_ms), Topic::Fleet, kind::KILL_SWITCH, None, detail);
            }
            Before::KeyCreated { id } => {
                if let Some(key) = state.api_keys.get(&id) {
                    let at_ms = Some(key.created_at_ms);
                    let detail = key_detail(key);
                    sink.push(at_ms, Topic::Fleet, kind::KEY_CREATED, Some(id), detail);
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
                        detail,
                    );
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

fn submitted(sink: &mut Sink, at_ms: UnixMillis, job: &JobRecord) {
    let mut detail = json!({
        "state": job.state,
        "org": job.spec.org,
        "command": job.spec.command,
        "priority": job.spec.priority,
    });
    if let Some(image) = &job.spec.image {
        detail["image"] = json!(image);
    }
    if let Some(agent) = &job.spec.agent_id {
        detail["agent_id"] = json!(agent);
    }
    if let Some(parent) = job.parent {
        detail["parent"] = json!(parent);
    }
    if !job.children.is_empty() {
        detail["children"] = json!(job.children);
    }
    let subject = Some(job.id.to_string());
    sink.push(
        Some(at_ms),
        Topic::Job,
        kind::JOB_SUBMITTED,
        subject,
        detail,
    );
}

/// The one event (if any) for how a job moved under a command.
fn job_changed(sink: &mut Sink, at_ms: UnixMillis, before: Mark, job: &JobRecord) {
    let moved = job.state != before.state || job.attempts.len() != before.attempts;
    let kind = if moved {
        match job.state {
            JobState::Dispatched => kind::JOB_DISPATCHED,
            JobState::Running => kind::JOB_RUNNING,
            JobState::Queued if job.failures > before.failures => kind::JOB_RETRYING,
            JobState::Queued => kind::JOB_REQUEUED,
            _ => kind::JOB_FINISHED,
        }
    } else if job.cancel_requested && !before.cancel_requested {
        kind::JOB_CANCEL_REQUESTED
    } else {
        return;
    };
    let mut detail = json!({"state": job.state, "org": job.spec.org});
    // A fan-out parent runs nowhere; every other job names the attempt the event is about.
    if let Some(attempt) = job.current_attempt().filter(|_| !job.is_parent()) {
        detail["attempt"] = json!(attempt.number);
        detail["machine"] = json!(attempt.machine);
        if let Some(code) = attempt.exit_code {
            detail["exit_code"] = json!(code);
        }
        if kind != kind::JOB_DISPATCHED
            && let Some(error) = &attempt.error
        {
            detail["attempt_error"] = json!(error);
        }
    }
    if let Some(error) = job.error.as_ref().filter(|_| job.state.is_finished()) {
        detail["error"] = json!(error);
    }
    if kind == kind::JOB_RETRYING {
        detail["not_before_ms"] = json!(job.not_before_ms);
    }
    if let Some(parent) = job.parent {
        detail["parent"] = json!(parent);
    }
    let subject = Some(job.id.to_string());
    sink.push(Some(at_ms), Topic::Job, kind, subject, detail);
}
