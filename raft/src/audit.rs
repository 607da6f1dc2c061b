//! Recording audited commands: what a user did, to what, and how it went.

use imbl::Vector;
use shoal_protocol::audit::AuditEntry;
use shoal_protocol::{Command, FleetState, MachineId, Response, UnixMillis};

/// Audit entries kept; older ones are dropped first.
pub const MAX_KEPT: usize = 50_000;

/// What an audit entry says a command did, taken before it is applied (which consumes it).
pub(crate) struct Description {
    action: String,
    target: String,
    machines: Vec<MachineId>,
    /// A submit is named by the job it made, which only its response knows.
    names_new_job: bool,
}

/// The action, target and machines of a user's command.
pub(crate) fn describe(command: &Command) -> Description {
    let (action, target, machines) = describe_parts(command);
    Description {
        action,
        target,
        machines,
        names_new_job: matches!(command, Command::SubmitJob { .. }),
    }
}

fn describe_parts(command: &Command) -> (String, String, Vec<MachineId>) {
    let machines_text = |ids: &[MachineId]| {
        ids.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    match command {
        Command::SubmitJob { .. } => ("submit_job".into(), "job".into(), Vec::new()),
        Command::CancelJob { job, .. } => ("cancel_job".into(), format!("job {job}"), Vec::new()),
        Command::RetireMachine { id } => {
            ("remove_machine".into(), format!("machine {id}"), vec![*id])
        }
        Command::LabelMachine { id, .. } => {
            ("label_machine".into(), format!("machine {id}"), vec![*id])
        }
        Command::SetDrain { machines, drain } => {
            let action = if drain.is_some() { "drain" } else { "undrain" };
            let target = format!("machines {}", machines_text(machines));
            (action.into(), target, machines.clone())
        }
        Command::SetKillSwitch { switch, .. } => {
            let action = if switch.is_some() {
                "kill_switch_on"
            } else {
                "kill_switch_off"
            };
            (action.into(), "fleet".into(), Vec::new())
        }
        Command::CreateApiKey { record } => (
            "create_api_key".into(),
            format!("key {}", record.id),
            Vec::new(),
        ),
        Command::RevokeApiKey { id, .. } => {
            ("revoke_api_key".into(), format!("key {id}"), Vec::new())
        }
        Command::CreateTokens { tokens } => {
            let ids: Vec<&str> = tokens.iter().map(|t| t.id.as_str()).collect();
            let target = format!("tokens {}", ids.join(","));
            ("create_tokens".into(), target, Vec::new())
        }
        Command::RevokeToken { id, .. } => {
            ("revoke_token".into(), format!("token {id}"), Vec::new())
        }
        Command::RecordBatch { action, machines } => (
            format!("batch_{}", action.as_str().replace('-', "_")),
            format!("machines {}", machines_text(machines)),
            machines.clone(),
        ),
        Command::SetPolicy { name, policy } => {
            let action = if policy.is_some() {
                "set_policy"
            } else {
                "remove_policy"
            };
            (action.into(), format!("policy {name}"), Vec::new())
        }
        Command::SetRegistryCredential {
            registry,
            credential,
        } => {
            let action = match credential {
                Some(_) => "registry_login",
                None => "registry_logout",
            };
            (action.into(), format!("registry {registry}"), Vec::new())
        }
        Command::PutTemplate { name, .. } => (
            "put_template".into(),
            format!("template {name}"),
            Vec::new(),
        ),
        Command::RollbackTemplate { name, version, .. } => (
            "rollback_template".into(),
            format!("template {name} to v{version}"),
            Vec::new(),
        ),
        Command::SetBudget { org, budget } => {
            let action = if budget.is_some() {
                "set_budget"
            } else {
                "remove_budget"
            };
            (action.into(), format!("org {org}"), Vec::new())
        }
        Command::SetFleetSettings { .. } => {
            ("set_fleet_settings".into(), "fleet".into(), Vec::new())
        }
        Command::ApproveMachine { id } => {
            ("approve_machine".into(), format!("machine {id}"), vec![*id])
        }
        Command::RequestGossipKeyRotation => {
            ("rotate_gossip_key".into(), "fleet".into(), Vec::new())
        }
        other => (
            format!("{other:?}")
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_lowercase(),
            String::new(),
            Vec::new(),
        ),
    }
}

/// Appends the entry for the command `described`, applied with `response`, dropping the
/// oldest past [`MAX_KEPT`].
pub(crate) fn record(
    state: &mut FleetState,
    actor: String,
    org: String,
    at_ms: UnixMillis,
    described: Description,
    response: &Response,
) {
    let Description {
        action,
        mut target,
        machines,
        names_new_job,
    } = described;
    if let (true, Response::Submitted { job, .. }) = (names_new_job, response) {
        target = format!("job {}", job.id);
    }
    let outcome = match response {
        Response::Rejected { message, .. } => format!("refused: {message}"),
        _ => "ok".to_string(),
    };
    let entry = AuditEntry {
        seq: state.next_audit_seq,
        at_ms,
        actor,
        org,
        action,
        target,
        machines,
        outcome,
    };
    state.next_audit_seq += 1;
    push_bounded(&mut state.audit, entry, MAX_KEPT);
}

fn push_bounded(log: &mut Vector<AuditEntry>, entry: AuditEntry, max: usize) {
    log.push_back(entry);
    while log.len() > max {
        log.pop_front();
    }
}
