//! Recording audited commands: what a user did, to what, and how it went.

use imbl::Vector;
use shoal_protocol::audit::AuditEntry;
use shoal_protocol::{Command, FleetState, MachineId, Response, UnixMillis};

/// Audit entries kept; older ones are dropped first.
pub const MAX_KEPT: usize = 50_000;

/// What an audit entry says a command did, taken before it is applied (which consumes it).
pub(crate) struct Description {
    action: String,
    target: Target,
    machines: Vec<MachineId>,
}

/// What the entry names: known from the command, or only from its response.
enum Target {
    Named(String),
    /// A submit: the job it made.
    NewJob,
    /// The submits of one request (since [`shoal_protocol::levels::BATCH_AUDIT_LEVEL`]): the jobs they made.
    NewJobs,
}

/// Applies `command` with `apply` and records it in the audit log as `actor`'s.
pub(crate) fn apply_audited(
    state: &mut FleetState,
    actor: String,
    org: String,
    at_ms: UnixMillis,
    command: Command,
    apply: impl FnOnce(&mut FleetState, Command) -> Response,
) -> Response {
    let described = describe(&command);
    let response = apply(state, command);
    record(state, actor, org, at_ms, described, &response);
    response
}

/// The action, target and machines of a user's command.
fn describe(command: &Command) -> Description {
    let submits = |commands: &[Command]| {
        commands
            .iter()
            .all(|cmd| matches!(cmd, Command::SubmitJob { .. }))
    };
    let (action, target, machines) = match command {
        Command::SubmitJob { .. } => ("submit_job".into(), Target::NewJob, Vec::new()),
        Command::Batch(commands) if submits(commands) => {
            ("submit_jobs".into(), Target::NewJobs, Vec::new())
        }
        Command::Batch(commands) => (
            "batch".into(),
            Target::Named(format!("{} commands", commands.len())),
            Vec::new(),
        ),
        other => {
            let (action, target, machines) = describe_parts(other);
            (action, Target::Named(target), machines)
        }
    };
    Description {
        action,
        target,
        machines,
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
fn record(
    state: &mut FleetState,
    actor: String,
    org: String,
    at_ms: UnixMillis,
    described: Description,
    response: &Response,
) {
    let target = match (described.target, response) {
        (Target::Named(target), _) => target,
        (Target::NewJob, Response::Submitted { job, .. }) => format!("job {}", job.id),
        (Target::NewJob, _) => "job".into(),
        (Target::NewJobs, Response::Batch(answers)) => jobs_target(answers),
        (Target::NewJobs, _) => "jobs".into(),
    };
    let entry = AuditEntry {
        seq: state.next_audit_seq,
        at_ms,
        actor,
        org,
        action: described.action,
        target,
        machines: described.machines,
        outcome: outcome(response),
    };
    state.next_audit_seq += 1;
    push_bounded(&mut state.audit, entry, MAX_KEPT);
}

/// `ok`, or why the command was refused; for a batch, how many of its commands were.
fn outcome(response: &Response) -> String {
    let refusal = |response: &Response| match response {
        Response::Rejected { message, .. } => Some(message.clone()),
        _ => None,
    };
    match response {
        Response::Batch(answers) => {
            let refused: Vec<String> = answers.iter().filter_map(refusal).collect();
            match refused.first() {
                None => "ok".to_string(),
                Some(first) if refused.len() == answers.len() => format!("refused: {first}"),
                Some(first) => format!("refused {} of {}: {first}", refused.len(), answers.len()),
            }
        }
        other => refusal(other).map_or_else(|| "ok".to_string(), |m| format!("refused: {m}")),
    }
}

/// The jobs a batch of submits made (or found by idempotency key), in runs of
/// consecutive ids: `jobs 7-1006`, `jobs 7, 9-12`.
pub fn jobs_target(answers: &[Response]) -> String {
    let ids = answers.iter().filter_map(|answer| match answer {
        Response::Submitted { job, .. } => Some(job.id.0),
        _ => None,
    });
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for id in ids {
        match runs.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(id) => *last = id,
            _ => runs.push((id, id)),
        }
    }
    if runs.is_empty() {
        return "jobs".to_string();
    }
    let runs: Vec<String> = runs
        .iter()
        .map(|&(first, last)| match first == last {
            true => first.to_string(),
            false => format!("{first}-{last}"),
        })
        .collect();
    format!("jobs {}", runs.join(", "))
}

fn push_bounded(log: &mut Vector<AuditEntry>, entry: AuditEntry, max: usize) {
    log.push_back(entry);
    while log.len() > max {
        log.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use shoal_protocol::{ErrorCode, JobId, JobRecord, JobSpec, JobTarget};

    use super::*;

    fn submitted(id: u64) -> Response {
        let spec = JobSpec::new(["true"]);
        Response::Submitted {
            job: Box::new(JobRecord::queued(JobId(id), spec, JobTarget::Any, 1, id)),
            created: true,
        }
    }

    fn refused(message: &str) -> Response {
        Response::Rejected {
            code: ErrorCode::BudgetExceeded,
            message: message.into(),
        }
    }

    #[test]
    fn a_batch_of_submits_names_its_jobs_in_runs() {
        let answers = [submitted(7), submitted(8), submitted(9), submitted(12)];
        assert_eq!(jobs_target(&answers), "jobs 7-9, 12");
        assert_eq!(jobs_target(&[submitted(5)]), "jobs 5");
        assert_eq!(jobs_target(&[refused("no")]), "jobs");
    }

    #[test]
    fn a_batch_says_how_many_of_its_commands_were_refused() {
        let ok = Response::Batch(vec![submitted(1), submitted(2)]);
        assert_eq!(outcome(&ok), "ok");
        let some = Response::Batch(vec![submitted(1), refused("over budget")]);
        assert_eq!(outcome(&some), "refused 1 of 2: over budget");
        let all = Response::Batch(vec![refused("over budget"), refused("over budget")]);
        assert_eq!(outcome(&all), "refused: over budget");
        assert_eq!(outcome(&refused("no")), "refused: no");
    }
}
