//! Registration tokens in the state machine: made, revoked, and used up exactly once.

use shoal_protocol::tokens::RegistrationToken;
use shoal_protocol::{ErrorCode, FleetState, MachineId, Response, UnixMillis};

fn refuse(code: ErrorCode, message: String) -> Response {
    Response::Rejected { code, message }
}

pub(crate) fn create(state: &mut FleetState, tokens: Vec<RegistrationToken>) -> Response {
    if let Some(taken) = tokens.iter().find(|t| state.tokens.contains_key(&t.id)) {
        return refuse(
            ErrorCode::Conflict,
            format!("a token with id {} exists", taken.id),
        );
    }
    for token in tokens {
        state.tokens.insert(token.id.clone(), token);
    }
    Response::Done
}

pub(crate) fn revoke(state: &mut FleetState, id: &str, at_ms: UnixMillis) -> Response {
    match state.tokens.get_mut(id) {
        None => refuse(ErrorCode::NotFound, format!("no registration token {id}")),
        Some(token) if token.used_by.is_some() => refuse(
            ErrorCode::Conflict,
            format!("registration token {id} was already used"),
        ),
        Some(token) => {
            token.revoked_at_ms.get_or_insert(at_ms);
            Response::Done
        }
    }
}

/// Uses the token up for `machine`, or says why it cannot be used. The labels it carries
/// become the machine's operator labels once the machine is recorded.
pub(crate) fn use_token(
    state: &mut FleetState,
    id: &str,
    secret_sha256: &str,
    machine: MachineId,
    at_ms: UnixMillis,
) -> Response {
    let unusable = |why: &str| {
        refuse(
            ErrorCode::Forbidden,
            format!("registration token refused: {why}"),
        )
    };
    let Some(token) = state.tokens.get_mut(id) else {
        return unusable("no such token");
    };
    if token.secret_sha256 != secret_sha256 {
        return unusable("no such token");
    }
    if token.revoked_at_ms.is_some() {
        return unusable("it was revoked");
    }
    if let Some(user) = token.used_by {
        return unusable(&format!("it was already used by machine {user}"));
    }
    if at_ms >= token.expires_at_ms {
        return unusable("it has expired");
    }
    token.used_by = Some(machine);
    // A new token is how a removed machine comes back.
    state.retired.remove(&machine);
    state.admitted.insert(machine);
    token.used_at_ms = Some(at_ms);
    let labels = token.labels.clone();
    if let Some(record) = state.machines.get_mut(&machine) {
        record.operator_labels = record.operator_labels.merged(&labels);
    }
    Response::Done
}

/// The labels tokens gave `machine`, for when it is first recorded.
pub(crate) fn labels_for(state: &FleetState, machine: MachineId) -> shoal_protocol::Labels {
    state
        .tokens
        .values()
        .filter(|t| t.used_by == Some(machine))
        .fold(shoal_protocol::Labels::new(), |acc, t| {
            acc.merged(&t.labels)
        })
}

#[cfg(test)]
mod tests {
    use shoal_protocol::{Command, Labels, MachineInfo};

    use super::*;
    use crate::apply::{ApplyCtx, apply};

    fn token(id: &str, expires_at_ms: UnixMillis) -> RegistrationToken {
        RegistrationToken {
            id: id.into(),
            secret_sha256: format!("hash-{id}"),
            org: "homelab".into(),
            labels: Labels::from_pairs(["gpu"]).unwrap(),
            created_at_ms: 0,
            expires_at_ms,
            created_by: "admin".into(),
            used_by: None,
            used_at_ms: None,
            revoked_at_ms: None,
        }
    }

    fn run(state: &mut FleetState, cmd: Command) -> Response {
        apply(state, cmd, &ApplyCtx { log_index: 1 })
    }

    fn use_it(id: &str, machine: u64, at_ms: UnixMillis) -> Command {
        Command::UseToken {
            id: id.into(),
            secret_sha256: format!("hash-{id}"),
            machine: MachineId(machine),
            at_ms,
        }
    }

    fn refusal(response: Response) -> String {
        match response {
            Response::Rejected { code, message } => {
                assert_eq!(code, ErrorCode::Forbidden);
                message
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_token_lets_exactly_one_machine_in_before_it_expires() {
        let mut state = FleetState::default();
        let made = vec![token("a", 1_000), token("b", 1_000), token("c", 1_000)];
        assert_eq!(
            run(&mut state, Command::CreateTokens { tokens: made }),
            Response::Done
        );

        assert_eq!(run(&mut state, use_it("a", 7, 10)), Response::Done);
        assert!(
            refusal(run(&mut state, use_it("a", 8, 11)))
                .contains("already used by machine 0000000000000007")
        );
        assert!(refusal(run(&mut state, use_it("b", 8, 1_000))).contains("expired"));
        run(
            &mut state,
            Command::RevokeToken {
                id: "c".into(),
                at_ms: 5,
            },
        );
        assert!(refusal(run(&mut state, use_it("c", 8, 6))).contains("revoked"));
        let mut forged = use_it("b", 8, 6);
        if let Command::UseToken { secret_sha256, .. } = &mut forged {
            *secret_sha256 = "guess".into();
        }
        assert!(refusal(run(&mut state, forged)).contains("no such token"));

        // The machine that used it is recorded with the token's labels.
        let info = MachineInfo {
            id: MachineId(7),
            ..MachineInfo::default()
        };
        run(
            &mut state,
            Command::UpsertMachine {
                info: Box::new(info),
                at_ms: 20,
            },
        );
        assert_eq!(
            state.machines[&MachineId(7)].operator_labels.get("gpu"),
            Some("true")
        );
    }
}
