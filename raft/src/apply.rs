//! The fleet state machine as a pure function: a committed [`Command`] in, a [`Response`] out.
//!
//! Every replica applies the same log, so this must be deterministic: no clocks (times come
//! in the commands), no randomness, no I/O. A rejected command never changes the state.

use std::collections::BTreeMap;

use shoal_protocol::keys::{ApiKeyRecord, Scope};
use shoal_protocol::policies::Policy;
use shoal_protocol::{
    Command, Drain, ErrorCode, FleetState, Labels, MachineId, MachineInfo, MachineRecord,
    MachineStatus, Response, UnixMillis,
};

use crate::{
    audit, costs, fleet_settings, gossip_keys, jobs, registries, requests, templates, tokens,
};

/// Where in the log the command sits. The same on every replica: a submitted job takes
/// its id from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyCtx {
    pub log_index: u64,
}

/// Applies one committed command to the fleet state.
pub fn apply(state: &mut FleetState, cmd: Command, ctx: &ApplyCtx) -> Response {
    let touched = jobs::named_jobs(&cmd);
    let response = match cmd {
        Command::UpsertMachine { info, at_ms } => upsert(state, *info, at_ms),
        Command::SetStatus {
            id,
            status,
            last_heartbeat_ms,
            at_ms,
        } => set_status(state, id, status, last_heartbeat_ms, at_ms),
        Command::LabelMachine { id, set, remove } => label(state, id, &set, &remove),
        Command::RemoveMachine { id } => remove(state, id),
        Command::RetireMachine { id } => match remove(state, id) {
            Response::Done => {
                state.retired.insert(id);
                state.admitted.remove(&id);
                gossip_keys::removed(state, id);
                Response::Done
            }
            refused => refused,
        },
        Command::SubmitJob { spec, at_ms } => jobs::submit(state, *spec, at_ms, ctx),
        Command::Dispatch { placements, at_ms } => jobs::dispatch(state, &placements, at_ms),
        Command::ReportJob {
            job,
            attempt,
            report,
            at_ms,
        } => jobs::report_job(state, job, attempt, report, at_ms),
        Command::CancelJob { job, at_ms } => jobs::cancel(state, job, at_ms),
        Command::RequeueJob {
            job,
            attempt,
            reason,
            at_ms,
        } => jobs::requeue(state, job, attempt, reason, at_ms),
        Command::TimeOutJob { job, at_ms } => jobs::time_out(state, job, at_ms),
        Command::SetQueueReasons { reasons } => jobs::set_queue_reasons(state, reasons),
        Command::PruneJobs { finished_before_ms } => jobs::prune(state, finished_before_ms),
        Command::SetDrain { machines, drain } => set_drain(state, &machines, drain),
        Command::CreateApiKey { record } => create_key(state, *record),
        Command::CreateTokens { tokens: made } => tokens::create(state, made),
        Command::RevokeToken { id, at_ms } => tokens::revoke(state, &id, at_ms),
        Command::UseToken {
            id,
            secret_sha256,
            machine,
            at_ms,
        } => tokens::use_token(state, &id, &secret_sha256, machine, at_ms),
        Command::RevokeApiKey { id, at_ms } => revoke_key(state, &id, at_ms),
        Command::SetKillSwitch {
            switch,
            terminate,
            at_ms,
        } => jobs::set_kill_switch(state, switch, terminate, at_ms),
        Command::SetBudget { org, budget } => costs::set_budget(state, org, budget),
        Command::ReportCost {
            job,
            attempt,
            micro_usd,
            report_id,
            at_ms,
        } => costs::report(state, job, attempt, micro_usd, report_id, at_ms),
        Command::EnforceBudgets { at_ms } => costs::enforce(state, at_ms),
        Command::PutTemplate {
            org,
            name,
            spec,
            by,
            at_ms,
        } => templates::put(state, org, name, *spec, by, at_ms),
        Command::RollbackTemplate { org, name, version } => {
            templates::rollback(state, org.as_deref(), &name, version)
        }
        Command::SetPolicy { name, policy } => set_policy(state, name, policy),
        Command::SetRegistryCredential {
            registry,
            credential,
        } => registries::set(state, registry, credential),
        Command::SetFleetLevel { level } => fleet_settings::set_level(state, level),
        Command::SetFleetSettings { settings } => fleet_settings::set_settings(state, settings),
        Command::ApproveMachine { id } => approve(state, id),
        Command::RequestGossipKeyRotation => gossip_keys::request_rotation(state),
        Command::RotateGossipKey {
            generation,
            sealed_key,
        } => gossip_keys::rotate(state, generation, sealed_key),
        Command::RecordBatch { .. } => Response::Done,
        // The wrappers: the commands inside bring the indexes up to date themselves.
        Command::Audited {
            actor,
            org,
            at_ms,
            command,
        } => {
            return audit::apply_audited(state, actor, org, at_ms, *command, |state, cmd| {
                apply(state, cmd, ctx)
            });
        }
        Command::Batch(commands) => {
            return Response::Batch(
                commands
                    .into_iter()
                    .map(|cmd| apply(state, cmd, ctx))
                    .collect(),
            );
        }
        Command::Request { id, at_ms, command } => {
            // The inner command did its own bookkeeping, or a repeat changes nothing.
            return requests::apply_once(state, id, at_ms, *command, |state, cmd| {
                apply(state, cmd, ctx)
            });
        }
    };
    jobs::refresh_open(state, touched, &response);
    if let Response::Rejected { code, message } = &response {
        tracing::debug!(log_index = ctx.log_index, ?code, %message, "command rejected");
    }
    response
}

fn upsert(state: &mut FleetState, info: MachineInfo, at_ms: UnixMillis) -> Response {
    if state.retired.contains(&info.id) {
        return Response::Rejected {
            code: ErrorCode::Forbidden,
            message: format!(
                "machine {} was removed; it needs a new registration token",
                info.id
            ),
        };
    }
    let token_labels = tokens::labels_for(state, info.id);
    let record = match state.machines.entry(info.id) {
        std::collections::btree_map::Entry::Occupied(entry) => {
            let record = entry.into_mut();
            record.info = info;
            record
        }
        std::collections::btree_map::Entry::Vacant(entry) => entry.insert(MachineRecord {
            info,
            operator_labels: token_labels,
            status: MachineStatus::Registering,
            status_since_ms: at_ms,
            last_heartbeat_ms: at_ms,
            registered_at_ms: at_ms,
            drain: None,
        }),
    };
    Response::Machine(Box::new(record.clone()))
}

fn set_status(
    state: &mut FleetState,
    id: MachineId,
    status: MachineStatus,
    last_heartbeat_ms: UnixMillis,
    at_ms: UnixMillis,
) -> Response {
    let Some(record) = state.machines.get_mut(&id) else {
        return not_found(id);
    };
    if record.status != status {
        record.status = status;
        record.status_since_ms = at_ms;
    }
    record.last_heartbeat_ms = last_heartbeat_ms;
    Response::Machine(Box::new(record.clone()))
}

fn label(state: &mut FleetState, id: MachineId, set: &Labels, remove: &[String]) -> Response {
    let Some(record) = state.machines.get_mut(&id) else {
        return not_found(id);
    };
    let mut map: BTreeMap<String, String> = record.operator_labels.clone().into();
    for key in remove {
        if let Err(err) = Labels::check_key(key) {
            return bad_request(format!("cannot remove label from machine {id}: {err}"));
        }
        map.remove(key);
    }
    map.extend(set.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    match Labels::try_from(map) {
        Ok(labels) => {
            record.operator_labels = labels;
            Response::Machine(Box::new(record.clone()))
        }
        Err(err) => bad_request(format!("cannot label machine {id}: {err}")),
    }
}

fn remove(state: &mut FleetState, id: MachineId) -> Response {
    match state.machines.remove(&id) {
        Some(_) => Response::Done,
        None => not_found(id),
    }
}

/// Admits a machine that came with the cluster secret alone; a removed one is refused.
fn approve(state: &mut FleetState, id: MachineId) -> Response {
    if state.retired.contains(&id) {
        return Response::Rejected {
            code: ErrorCode::Conflict,
            message: format!(
                "machine {id} was removed: it comes back only with a new registration token"
            ),
        };
    }
    state.admitted.insert(id);
    Response::Done
}

/// Drains (or undrains) every listed machine, or none when one is unknown.
fn set_drain(state: &mut FleetState, machines: &[MachineId], drain: Option<Drain>) -> Response {
    if let Some(unknown) = machines.iter().find(|id| !state.machines.contains_key(id)) {
        return not_found(*unknown);
    }
    for id in machines {
        let record = state.machines.get_mut(id).expect("checked above");
        // Draining again keeps when it started; a new deadline replaces the old one.
        record.drain = drain.as_ref().map(|new| Drain {
            since_ms: record
                .drain
                .as_ref()
                .map_or(new.since_ms, |old| old.since_ms),
            deadline_ms: new.deadline_ms,
        });
    }
    Response::Done
}

fn create_key(state: &mut FleetState, record: ApiKeyRecord) -> Response {
    if state.api_keys.contains_key(&record.id) {
        return Response::Rejected {
            code: ErrorCode::Conflict,
            message: format!("an API key with id {} exists", record.id),
        };
    }
    state.api_keys.insert(record.id.clone(), record);
    Response::Done
}

fn set_policy(state: &mut FleetState, name: String, policy: Option<Box<Policy>>) -> Response {
    match policy {
        Some(policy) => {
            state.policies.insert(name, *policy);
            Response::Done
        }
        None if state.policies.remove(&name).is_some() => Response::Done,
        None => Response::Rejected {
            code: ErrorCode::NotFound,
            message: format!("no policy {name}"),
        },
    }
}

/// Revokes a key; the fleet always keeps one active admin key, so it cannot lock itself out.
fn revoke_key(state: &mut FleetState, id: &str, at_ms: UnixMillis) -> Response {
    let active_admin =
        |key: &ApiKeyRecord| key.scope == Scope::Admin && key.revoked_at_ms.is_none();
    let admins = state.api_keys.values().filter(|k| active_admin(k)).count();
    if admins == 1 && state.api_keys.get(id).is_some_and(active_admin) {
        return Response::Rejected {
            code: ErrorCode::Conflict,
            message: format!(
                "key {id} is the fleet's last admin key: create another admin key before revoking it"
            ),
        };
    }
    match state.api_keys.get_mut(id) {
        Some(record) => {
            record.revoked_at_ms.get_or_insert(at_ms);
            Response::Done
        }
        None => Response::Rejected {
            code: ErrorCode::NotFound,
            message: format!("no API key {id}"),
        },
    }
}

fn not_found(id: MachineId) -> Response {
    Response::Rejected {
        code: ErrorCode::NotFound,
        message: format!("machine {id} is not in the fleet"),
    }
}

fn bad_request(message: String) -> Response {
    Response::Rejected {
        code: ErrorCode::BadRequest,
        message,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use shoal_protocol::frame;

    use super::*;

    const CTX: ApplyCtx = ApplyCtx { log_index: 7 };

    fn info(id: u64, name: &str) -> MachineInfo {
        MachineInfo {
            id: MachineId(id),
            name: name.to_string(),
            labels: Labels::from_pairs(["zone=attic"]).unwrap(),
            ..MachineInfo::default()
        }
    }

    fn registered(id: u64, at_ms: u64) -> FleetState {
        let mut state = FleetState::default();
        apply(
            &mut state,
            Command::UpsertMachine {
                info: Box::new(info(id, "first")),
                at_ms,
            },
            &CTX,
        );
        state
    }

    fn machine(response: Response) -> MachineRecord {
        match response {
            Response::Machine(record) => *record,
            other => panic!("expected a machine, got {other:?}"),
        }
    }

    fn assert_rejected(response: &Response, want: ErrorCode, needle: &str) {
        match response {
            Response::Rejected { code, message } => {
                assert_eq!(*code, want, "{message}");
                assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn label_cmd(id: u64, set: &[&str], remove: &[&str]) -> Command {
        Command::LabelMachine {
            id: MachineId(id),
            set: Labels::from_pairs(set.iter().copied()).unwrap(),
            remove: remove.iter().map(|k| k.to_string()).collect(),
        }
    }

    fn key(id: &str, scope: Scope) -> Command {
        Command::CreateApiKey {
            record: Box::new(ApiKeyRecord {
                id: id.to_string(),
                name: String::new(),
                org: "default".to_string(),
                scope,
                secret_sha256: "00".repeat(32),
                created_at_ms: 1,
                created_by: "bootstrap".to_string(),
                revoked_at_ms: None,
            }),
        }
    }

    fn revoke(id: &str) -> Command {
        Command::RevokeApiKey {
            id: id.to_string(),
            at_ms: 5,
        }
    }

    #[test]
    fn an_approval_admits_until_removal_and_a_removed_machine_needs_a_token() {
        let mut state = FleetState::default();
        let ctx = ApplyCtx { log_index: 1 };
        let id = MachineId(9);
        let approve = || Command::ApproveMachine { id };
        assert_eq!(apply(&mut state, approve(), &ctx), Response::Done);
        assert!(state.admitted.contains(&id));
        let info = Box::new(MachineInfo {
            id,
            ..MachineInfo::default()
        });
        apply(&mut state, Command::UpsertMachine { info, at_ms: 1 }, &ctx);
        apply(&mut state, Command::RetireMachine { id }, &ctx);
        assert!(!state.admitted.contains(&id) && state.retired.contains(&id));
        let before = state.clone();
        match apply(&mut state, approve(), &ctx) {
            Response::Rejected { code, message } => {
                assert_eq!(code, ErrorCode::Conflict);
                assert!(message.contains("registration token"), "{message}");
            }
            other => panic!("a removed machine was approved: {other:?}"),
        }
        assert_eq!(state, before);
    }

    #[test]
    fn the_last_admin_key_cannot_be_revoked() {
        let mut state = FleetState::default();
        for cmd in [key("a1", Scope::Admin), key("r1", Scope::Read)] {
            assert_eq!(apply(&mut state, cmd, &CTX), Response::Done);
        }
        assert_rejected(
            &apply(&mut state, revoke("a1"), &CTX),
            ErrorCode::Conflict,
            "last admin key",
        );
        assert_eq!(state.api_keys["a1"].revoked_at_ms, None);
        assert_eq!(apply(&mut state, revoke("r1"), &CTX), Response::Done);
        assert_eq!(
            apply(&mut state, key("a2", Scope::Admin), &CTX),
            Response::Done
        );
        assert_eq!(apply(&mut state, revoke("a1"), &CTX), Response::Done);
        assert_eq!(state.api_keys["a1"].revoked_at_ms, Some(5));
        assert_rejected(
            &apply(&mut state, revoke("a2"), &CTX),
            ErrorCode::Conflict,
            "last admin key",
        );
    }

    #[test]
    fn upsert_registers_an_unknown_machine() {
        let mut state = FleetState::default();
        let cmd = Command::UpsertMachine {
            info: Box::new(info(1, "one")),
            at_ms: 100,
        };
        let record = machine(apply(&mut state, cmd, &CTX));
        assert_eq!(record.status, MachineStatus::Registering);
        assert_eq!(
            (
                record.status_since_ms,
                record.registered_at_ms,
                record.last_heartbeat_ms
            ),
            (100, 100, 100)
        );
        assert!(record.operator_labels.is_empty());
        assert_eq!(state.machines[&MachineId(1)], record);
    }

    #[test]
    fn upsert_of_a_known_machine_replaces_only_its_info() {
        let mut state = registered(1, 100);
        apply(&mut state, label_cmd(1, &["gpu"], &[]), &CTX);
        apply(
            &mut state,
            Command::SetStatus {
                id: MachineId(1),
                status: MachineStatus::Online,
                last_heartbeat_ms: 150,
                at_ms: 150,
            },
            &CTX,
        );
        let cmd = Command::UpsertMachine {
            info: Box::new(info(1, "renamed")),
            at_ms: 200,
        };
        let record = machine(apply(&mut state, cmd, &CTX));
        assert_eq!(record.info.name, "renamed");
        assert_eq!(record.status, MachineStatus::Online);
        assert_eq!(record.status_since_ms, 150);
        assert_eq!(record.registered_at_ms, 100);
        assert_eq!(record.operator_labels.get("gpu"), Some("true"));
    }

    #[test]
    fn set_status_changes_status_and_its_time() {
        let mut state = registered(1, 100);
        let cmd = Command::SetStatus {
            id: MachineId(1),
            status: MachineStatus::Online,
            last_heartbeat_ms: 290,
            at_ms: 300,
        };
        let record = machine(apply(&mut state, cmd, &CTX));
        assert_eq!(record.status, MachineStatus::Online);
        assert_eq!(record.status_since_ms, 300);
        assert_eq!(record.last_heartbeat_ms, 290);
    }

    #[test]
    fn set_status_to_the_same_status_only_moves_the_heartbeat() {
        let mut state = registered(1, 100);
        let cmd = Command::SetStatus {
            id: MachineId(1),
            status: MachineStatus::Registering,
            last_heartbeat_ms: 400,
            at_ms: 410,
        };
        let record = machine(apply(&mut state, cmd, &CTX));
        assert_eq!(record.status, MachineStatus::Registering);
        assert_eq!(record.status_since_ms, 100);
        assert_eq!(record.last_heartbeat_ms, 400);
    }

    #[test]
    fn commands_on_unknown_machines_are_not_found() {
        let mut state = registered(1, 100);
        let before = state.clone();
        let cmds = [
            Command::SetStatus {
                id: MachineId(2),
                status: MachineStatus::Online,
                last_heartbeat_ms: 1,
                at_ms: 1,
            },
            label_cmd(2, &["gpu"], &[]),
            Command::RemoveMachine { id: MachineId(2) },
        ];
        for cmd in cmds {
            let response = apply(&mut state, cmd, &CTX);
            assert_rejected(&response, ErrorCode::NotFound, "0000000000000002");
        }
        assert_eq!(state, before);
    }

    #[test]
    fn label_removes_then_sets() {
        let mut state = registered(1, 100);
        apply(&mut state, label_cmd(1, &["a=1", "b=2"], &[]), &CTX);
        let record = machine(apply(
            &mut state,
            label_cmd(1, &["b=3", "c=4"], &["a", "b", "absent"]),
            &CTX,
        ));
        assert_eq!(record.operator_labels.to_string(), "b=3,c=4");
        // The machine's own labels are untouched.
        assert_eq!(record.info.labels.get("zone"), Some("attic"));
    }

    #[test]
    fn label_with_a_bad_removed_key_is_rejected_unchanged() {
        let mut state = registered(1, 100);
        apply(&mut state, label_cmd(1, &["a=1"], &[]), &CTX);
        let before = state.clone();
        let response = apply(&mut state, label_cmd(1, &["b=2"], &["a", "Bad Key"]), &CTX);
        assert_rejected(&response, ErrorCode::BadRequest, "Bad Key");
        assert_eq!(state, before);
    }

    #[test]
    fn label_past_the_limit_is_rejected_unchanged() {
        let mut state = registered(1, 100);
        let first: Vec<String> = (0..60).map(|i| format!("k{i}")).collect();
        let first: Vec<&str> = first.iter().map(String::as_str).collect();
        apply(&mut state, label_cmd(1, &first, &[]), &CTX);
        let before = state.clone();
        let more: Vec<String> = (0..5).map(|i| format!("x{i}")).collect();
        let more: Vec<&str> = more.iter().map(String::as_str).collect();
        let response = apply(&mut state, label_cmd(1, &more, &[]), &CTX);
        assert_rejected(&response, ErrorCode::BadRequest, "at most 64 labels");
        assert_eq!(state, before);
        // Removing room first makes the same labels fit.
        let response = apply(&mut state, label_cmd(1, &more, &first[..10]), &CTX);
        assert_eq!(machine(response).operator_labels.len(), 55);
    }

    #[test]
    fn drain_marks_every_listed_machine_or_none() {
        let mut state = registered(1, 100);
        let second = Command::UpsertMachine {
            info: Box::new(info(2, "second")),
            at_ms: 100,
        };
        apply(&mut state, second, &CTX);
        let drain = |deadline_ms| Drain {
            since_ms: 500,
            deadline_ms,
        };
        let unknown = apply(
            &mut state,
            Command::SetDrain {
                machines: vec![MachineId(1), MachineId(9)],
                drain: Some(drain(None)),
            },
            &CTX,
        );
        assert_rejected(&unknown, ErrorCode::NotFound, "0000000000000009");
        assert!(
            state.machines.values().all(|m| m.drain.is_none()),
            "nothing changed"
        );

        let both = vec![MachineId(1), MachineId(2)];
        let set = |drain| Command::SetDrain {
            machines: both.clone(),
            drain,
        };
        apply(&mut state, set(Some(drain(None))), &CTX);
        let mut later = drain(Some(9_000));
        later.since_ms = 800;
        apply(&mut state, set(Some(later)), &CTX);
        let kept = state.machines[&MachineId(2)].drain.clone().unwrap();
        assert_eq!((kept.since_ms, kept.deadline_ms), (500, Some(9_000)));
        apply(&mut state, set(None), &CTX);
        assert!(state.machines.values().all(|m| m.drain.is_none()));
    }

    #[test]
    fn remove_forgets_the_machine() {
        let mut state = registered(1, 100);
        let response = apply(
            &mut state,
            Command::RemoveMachine { id: MachineId(1) },
            &CTX,
        );
        assert_eq!(response, Response::Done);
        assert!(state.machines.is_empty());
    }

    fn status() -> impl Strategy<Value = MachineStatus> {
        prop::sample::select(MachineStatus::ALL.to_vec())
    }

    /// Label keys from a small alphabet so that sets and removes collide, and two big sets
    /// overflow the limit.
    fn labels() -> impl Strategy<Value = Labels> {
        prop::collection::btree_map("[a-z]{1,2}", "[a-z0-9]{0,3}", 0..60)
            .prop_map(|map| Labels::try_from(map).unwrap())
    }

    /// A removed key: usually valid, sometimes not (uppercase or a space).
    fn removed_key() -> impl Strategy<Value = String> {
        prop_oneof![9 => "[a-z]{1,2}", 1 => "[A-Z ]{1,2}"]
    }

    /// Commands on a handful of ids, weighted so most of them hit a known machine and
    /// label sets pile up past the limit now and then.
    fn command() -> impl Strategy<Value = Command> {
        let id = (0u64..4).prop_map(MachineId);
        prop_oneof![
            3 => (id.clone(), "[a-z]{0,6}", 0u64..1000).prop_map(|(id, name, at_ms)| {
                Command::UpsertMachine {
                    info: Box::new(MachineInfo {
                        id,
                        name,
                        ..MachineInfo::default()
                    }),
                    at_ms,
                }
            }),
            2 => (id.clone(), status(), 0u64..1000, 0u64..1000).prop_map(
                |(id, status, last_heartbeat_ms, at_ms)| Command::SetStatus {
                    id,
                    status,
                    last_heartbeat_ms,
                    at_ms,
                }
            ),
            4 => (id.clone(), labels(), prop::collection::vec(removed_key(), 0..4)).prop_map(
                |(id, set, remove)| Command::LabelMachine { id, set, remove }
            ),
            1 => id.prop_map(|id| Command::RemoveMachine { id }),
        ]
    }

    proptest! {
        #[test]
        fn applying_is_deterministic(cmds in prop::collection::vec(command(), 0..40)) {
            let (mut a, mut b) = (FleetState::default(), FleetState::default());
            for (index, cmd) in cmds.into_iter().enumerate() {
                let ctx = ApplyCtx { log_index: index as u64 };
                let left = apply(&mut a, cmd.clone(), &ctx);
                let right = apply(&mut b, cmd, &ctx);
                prop_assert_eq!(left, right);
            }
            prop_assert_eq!(frame::encode(&a).unwrap(), frame::encode(&b).unwrap());
        }

        #[test]
        fn rejected_commands_leave_the_state_untouched(
            cmds in prop::collection::vec(command(), 0..40),
        ) {
            let mut state = FleetState::default();
            for (index, cmd) in cmds.into_iter().enumerate() {
                let before = frame::encode(&state).unwrap();
                let response = apply(&mut state, cmd, &ApplyCtx { log_index: index as u64 });
                if matches!(response, Response::Rejected { .. }) {
                    prop_assert_eq!(frame::encode(&state).unwrap(), before);
                }
            }
        }
    }
}
