//! What a forwarded write needs, one rule a test, on a state built by `apply`.

use shoal_protocol::tokens::RegistrationToken;
use shoal_protocol::{
    JobId, JobReport, JobSpec, MachineInfo, MachineStatus, Placement, ProtocolLevel, Response,
};
use shoal_raft::{ApplyCtx, apply};

use super::*;
use crate::keys::new_key;

const RUNNER: MachineId = MachineId(1);
const OTHER: MachineId = MachineId(2);
const SECRET: &str = "the cluster secret";

/// A fleet at `level` with machines 1 and 2 ONLINE, an admin key and an operate key of
/// org "homelab", and job 7 running on machine 1.
struct Fleet {
    state: FleetState,
    admin: String,
    operator: String,
}

impl Fleet {
    fn at(level: u16) -> Self {
        let mut state = FleetState::default();
        let mut index = 0;
        let mut run = |state: &mut FleetState, cmd: Command| {
            index += 1;
            let ctx = ApplyCtx { log_index: index };
            let response = apply(state, cmd, &ctx);
            assert!(
                !matches!(response, Response::Rejected { .. }),
                "{response:?}"
            );
            response
        };
        for id in [RUNNER, OTHER] {
            let info = Box::new(MachineInfo {
                id,
                ..MachineInfo::default()
            });
            run(&mut state, Command::UpsertMachine { info, at_ms: 0 });
            let status = MachineStatus::Online;
            let (last_heartbeat_ms, at_ms) = (0, 0);
            run(
                &mut state,
                Command::SetStatus {
                    id,
                    status,
                    last_heartbeat_ms,
                    at_ms,
                },
            );
        }
        let (admin, admin_record) = new_key("homelab", Scope::Admin, "admin", "test", 0);
        let (operator, operator_record) = new_key("homelab", Scope::Operate, "ci", "test", 0);
        for record in [admin_record, operator_record] {
            run(
                &mut state,
                Command::CreateApiKey {
                    record: Box::new(record),
                },
            );
        }
        let mut spec = JobSpec::new(["make", "test"]);
        spec.org = "homelab".into();
        run(
            &mut state,
            Command::SubmitJob {
                spec: Box::new(spec),
                at_ms: 0,
            },
        );
        let job = JobId(7); // the submit's log index
        let placements = vec![Placement {
            job,
            attempt: 1,
            machine: RUNNER,
        }];
        run(
            &mut state,
            Command::Dispatch {
                placements,
                at_ms: 0,
            },
        );
        state.fleet_level = ProtocolLevel(level);
        Fleet {
            state,
            admin,
            operator,
        }
    }

    fn check(
        &self,
        from: MachineId,
        cmd: &Command,
        credential: Option<Credential>,
    ) -> Result<(), ApiError> {
        self.check_form(from, cmd, credential, false)
    }

    fn check_form(
        &self,
        from: MachineId,
        cmd: &Command,
        credential: Option<Credential>,
        legacy: bool,
    ) -> Result<(), ApiError> {
        Forwarded {
            state: &self.state,
            cluster_secret: SECRET,
            from,
            credential: credential.as_ref(),
            legacy,
        }
        .check(cmd)
    }

    fn key_id(key: &str) -> String {
        shoal_protocol::keys::parse_key(key).unwrap().0.to_string()
    }

    /// `command` as the holder of `key` would send it through the API.
    fn audited(key: &str, org: &str, command: Command) -> Command {
        Command::Request {
            id: shoal_protocol::requests::RequestId(7),
            at_ms: 0,
            command: Box::new(Command::Audited {
                actor: Fleet::key_id(key),
                org: org.into(),
                at_ms: 0,
                command: Box::new(command),
            }),
        }
    }
}

fn refused(result: Result<(), ApiError>, code: ErrorCode, needle: &str) {
    let err = result.expect_err("refused");
    assert_eq!(err.code, code, "{}", err.message);
    assert!(
        err.message.contains(needle),
        "{:?} lacks {needle:?}",
        err.message
    );
}

fn an_admin_key() -> Command {
    let (_, record) = new_key("homelab", Scope::Admin, "stolen", "intruder", 0);
    Command::CreateApiKey {
        record: Box::new(record),
    }
}

#[test]
fn a_machine_may_not_make_a_key_or_set_a_budget_on_its_own() {
    let fleet = Fleet::at(6);
    for cmd in [
        an_admin_key(),
        Command::SetBudget {
            org: "homelab".into(),
            budget: None,
        },
    ] {
        refused(
            fleet.check(OTHER, &cmd, None),
            ErrorCode::Unauthorized,
            "needs the user's API key",
        );
        // Nor wrapped as an audited change naming a real key it does not hold.
        let posing = Fleet::audited(&fleet.admin, "homelab", cmd.clone());
        refused(
            fleet.check(OTHER, &posing, None),
            ErrorCode::Unauthorized,
            "API key",
        );
    }
}

#[test]
fn a_users_change_needs_the_key_it_names_with_the_scope_and_org_it_needs() {
    let fleet = Fleet::at(6);
    let admin = Some(Credential::ApiKey(fleet.admin.clone()));
    let operator = Some(Credential::ApiKey(fleet.operator.clone()));

    let by_admin = Fleet::audited(&fleet.admin, "homelab", an_admin_key());
    assert_eq!(fleet.check(OTHER, &by_admin, admin.clone()), Ok(()));
    // An operate key cannot make keys, even if the change names an admin key.
    refused(
        fleet.check(OTHER, &by_admin, operator.clone()),
        ErrorCode::Forbidden,
        "carries key",
    );
    let by_operator = Fleet::audited(&fleet.operator, "homelab", an_admin_key());
    refused(
        fleet.check(OTHER, &by_operator, operator.clone()),
        ErrorCode::Forbidden,
        "scope admin",
    );
    // A forged key is unknown.
    let last = if fleet.admin.ends_with('0') { "1" } else { "0" };
    let forged = format!("{}{last}", &fleet.admin[..fleet.admin.len() - 1]);
    let forged = Some(Credential::ApiKey(forged));
    refused(
        fleet.check(OTHER, &by_admin, forged),
        ErrorCode::Unauthorized,
        "unknown API key",
    );

    // An operate key submits and cancels in its own org only.
    let mut spec = JobSpec::new(["true"]);
    spec.org = "elsewhere".into();
    let submit = Command::SubmitJob {
        spec: Box::new(spec),
        at_ms: 0,
    };
    let submit = Fleet::audited(&fleet.operator, "homelab", submit);
    refused(
        fleet.check(OTHER, &submit, operator.clone()),
        ErrorCode::Forbidden,
        "org elsewhere",
    );
    let cancel = Fleet::audited(
        &fleet.operator,
        "homelab",
        Command::CancelJob {
            job: JobId(7),
            at_ms: 0,
        },
    );
    assert_eq!(fleet.check(OTHER, &cancel, operator), Ok(()));
}

#[test]
fn a_batch_audited_as_one_is_checked_change_by_change() {
    let fleet = Fleet::at(10);
    let operator = Some(Credential::ApiKey(fleet.operator.clone()));
    let submit = |org: &str| {
        let mut spec = JobSpec::new(["true"]);
        spec.org = org.into();
        Command::SubmitJob {
            spec: Box::new(spec),
            at_ms: 0,
        }
    };
    let batch = |commands| Fleet::audited(&fleet.operator, "homelab", Command::Batch(commands));
    let ours = batch(vec![submit("homelab"), submit("homelab")]);
    assert_eq!(fleet.check(OTHER, &ours, operator.clone()), Ok(()));
    // One job of another org, or one change above the key's scope, refuses the batch.
    refused(
        fleet.check(
            OTHER,
            &batch(vec![submit("homelab"), submit("elsewhere")]),
            operator.clone(),
        ),
        ErrorCode::Forbidden,
        "org elsewhere",
    );
    refused(
        fleet.check(
            OTHER,
            &batch(vec![submit("homelab"), an_admin_key()]),
            operator.clone(),
        ),
        ErrorCode::Forbidden,
        "scope admin",
    );
    // Nor may a batch carry what no user sends.
    let prune = Command::PruneJobs {
        finished_before_ms: 0,
    };
    refused(
        fleet.check(OTHER, &batch(vec![submit("homelab"), prune]), operator),
        ErrorCode::Forbidden,
        "not a user's change",
    );
}

#[test]
fn only_the_leader_proposes_what_it_observes() {
    let fleet = Fleet::at(6);
    let prune = Command::PruneJobs {
        finished_before_ms: u64::MAX,
    };
    let status = Command::SetStatus {
        id: RUNNER,
        status: MachineStatus::Dead,
        last_heartbeat_ms: 0,
        at_ms: 0,
    };
    for cmd in [prune, status] {
        let admin = Some(Credential::ApiKey(fleet.admin.clone()));
        refused(
            fleet.check(OTHER, &cmd, admin),
            ErrorCode::Forbidden,
            "only the leader",
        );
        // Not through the older form either.
        refused(
            fleet.check_form(OTHER, &cmd, None, true),
            ErrorCode::Forbidden,
            "only the leader",
        );
    }
}

#[test]
fn a_gossip_key_is_the_leaders_and_a_rotation_request_an_admins() {
    let fleet = Fleet::at(7);
    let rotate = Command::RotateGossipKey {
        generation: 1,
        sealed_key: vec![0; shoal_protocol::gossip_keys::SEALED_KEY_LEN],
    };
    let admin = Some(Credential::ApiKey(fleet.admin.clone()));
    refused(
        fleet.check(OTHER, &rotate, admin.clone()),
        ErrorCode::Forbidden,
        "only the leader",
    );
    let by_admin = Fleet::audited(&fleet.admin, "homelab", Command::RequestGossipKeyRotation);
    assert_eq!(fleet.check(OTHER, &by_admin, admin), Ok(()));
    let operator = Some(Credential::ApiKey(fleet.operator.clone()));
    let by_operator = Fleet::audited(
        &fleet.operator,
        "homelab",
        Command::RequestGossipKeyRotation,
    );
    refused(
        fleet.check(OTHER, &by_operator, operator),
        ErrorCode::Forbidden,
        "scope admin",
    );
    refused(
        fleet.check(OTHER, &Command::RequestGossipKeyRotation, None),
        ErrorCode::Unauthorized,
        "needs the user's API key",
    );
}

#[test]
fn a_machine_reports_only_on_its_own_attempts() {
    let fleet = Fleet::at(6);
    let report = Command::ReportJob {
        job: JobId(7),
        attempt: 1,
        report: JobReport::Running,
        at_ms: 0,
    };
    assert_eq!(fleet.check(RUNNER, &report, None), Ok(()));
    refused(
        fleet.check(OTHER, &report, None),
        ErrorCode::Forbidden,
        "runs on machine 0000000000000001",
    );
}

#[test]
fn a_cost_report_needs_its_attempts_job_token() {
    let fleet = Fleet::at(6);
    let cost = |attempt| Command::ReportCost {
        job: JobId(7),
        attempt,
        micro_usd: 1,
        report_id: None,
        at_ms: 0,
    };
    let token = |attempt| {
        Some(Credential::JobToken(crate::secrets::job_token::issue(
            SECRET,
            JobId(7),
            attempt,
        )))
    };
    assert_eq!(fleet.check(OTHER, &cost(1), token(1)), Ok(()));
    refused(
        fleet.check(OTHER, &cost(1), token(2)),
        ErrorCode::Forbidden,
        "attempt 2",
    );
    refused(
        fleet.check(OTHER, &cost(1), None),
        ErrorCode::Unauthorized,
        "job token",
    );
    let foreign = Some(Credential::JobToken(crate::secrets::job_token::issue(
        "another fleet",
        JobId(7),
        1,
    )));
    refused(
        fleet.check(OTHER, &cost(1), foreign),
        ErrorCode::Unauthorized,
        "not issued by this fleet",
    );
}

#[test]
fn a_join_needs_the_registration_token_it_uses() {
    let mut fleet = Fleet::at(6);
    let token = format!(
        "shoaljoin_{}_{}",
        "ab".repeat(8),
        "0123456789abcdef".repeat(4)
    );
    let (id, secret) = parse_token(&token).expect("a well-formed token");
    fleet.state.tokens.insert(
        id.to_string(),
        RegistrationToken {
            id: id.to_string(),
            secret_sha256: sha256_hex(secret),
            org: "homelab".into(),
            labels: Default::default(),
            created_at_ms: 0,
            expires_at_ms: u64::MAX,
            created_by: "test".into(),
            used_by: None,
            used_at_ms: None,
            revoked_at_ms: None,
        },
    );
    let use_it = Command::UseToken {
        id: id.to_string(),
        secret_sha256: sha256_hex(secret),
        machine: MachineId(9),
        at_ms: 0,
    };
    let presented = Some(Credential::RegistrationToken(token.clone()));
    assert_eq!(fleet.check(OTHER, &use_it, presented), Ok(()));
    // The hash is in every replica's log: knowing it is not holding the token.
    refused(
        fleet.check(OTHER, &use_it, None),
        ErrorCode::Unauthorized,
        "registration token",
    );
    let other = Some(Credential::RegistrationToken(token.replacen(
        "0123456789abcdef",
        "f123456789abcdef",
        1,
    )));
    refused(
        fleet.check(OTHER, &use_it, other),
        ErrorCode::Forbidden,
        "not token",
    );
}

#[test]
fn the_first_admin_key_needs_none_and_later_ones_do() {
    let fleet = Fleet::at(6);
    let mut empty = Fleet::at(6);
    empty.state.api_keys.clear();
    assert_eq!(empty.check(OTHER, &an_admin_key(), None), Ok(()));
    refused(
        fleet.check(OTHER, &an_admin_key(), None),
        ErrorCode::Unauthorized,
        "API key",
    );
}

#[test]
fn below_the_level_a_forward_without_credential_is_taken_as_before() {
    let older = Fleet::at(5);
    let by_admin = Fleet::audited(&older.admin, "homelab", an_admin_key());
    assert_eq!(older.check_form(OTHER, &by_admin, None, true), Ok(()));
    assert_eq!(older.check_form(OTHER, &an_admin_key(), None, true), Ok(()));
    // Once the fleet is at the level, the older form is sent back, to come again with
    // the key (from a sender whose replica had not applied the raise yet).
    let newer = Fleet::at(6);
    let again = newer.check_form(OTHER, &by_admin, None, true);
    refused(
        again,
        ErrorCode::Unavailable,
        "again with the user's API key",
    );
}
