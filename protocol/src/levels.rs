//! Protocol levels: which [`Command`]s a machine understands, so a fleet of mixed versions
//! keeps working through a rolling upgrade.
//!
//! Each machine gossips the highest level it speaks ([`crate::MachineInfo::protocol_level`]).
//! The leader commits the fleet's level ([`Command::SetFleetLevel`]): the lowest level among
//! the Raft members, raised (never lowered) once every member speaks the higher one, as
//! etcd's cluster version is. The leader never proposes a command whose
//! [`Command::min_level`] is above the fleet's level; a user's write that needs more is
//! refused with the machines to upgrade. The state machine never refuses by level: every
//! replica applies what was committed.
//!
//! | level | what it adds |
//! |---|---|
//! | 1 | every command of the first release (machines, jobs, keys, tokens, drain, kill switch, budgets, costs, templates, sessions, batches, policies) |
//! | 2 | [`Command::SetFleetLevel`]; [`Command::SetFleetSettings`] (fleet settings in the log: job retention) |
//! | 3 | [`Command::Request`] (a write under a request id, applied once: see [`crate::requests`]) |
//! | 4 | no new command: elections wait for a pre-vote from a quorum over peer RPC (see [`PREVOTE_LEVEL`]) |
//! | 5 | no new command: gossip datagrams are sealed, and plain ones refused (see [`SEALED_GOSSIP_LEVEL`]) |
//! | 6 | [`Command::ApproveMachine`]: a machine is recorded only if admitted (see [`MEMBERSHIP_LEVEL`]); a forwarded write carries the user's credential, which the leader checks again (see [`PEER_AUTH_LEVEL`]) |
//! | 7 | [`Command::RequestGossipKeyRotation`], [`Command::RotateGossipKey`]: the gossip keyring lives in the log and rotates; a removal rotates it (see [`GOSSIP_KEYRING_LEVEL`]) |
//! | 8 | templates belong to orgs ([`Command::PutTemplate`] and [`Command::RollbackTemplate`] with an `org`; see [`TEMPLATE_ORGS_LEVEL`]); jobs and templates carry sealed `secret_env` (see [`SECRET_ENV_LEVEL`]); containers' `user` (jobs, templates, policies) and policies' capabilities and pids limit (see [`CONFINEMENT_LEVEL`]); jobs' and templates' `pull` policy (see [`PULL_LEVEL`]) |
//! | 9 | registry credentials in the log, sealed ([`Command::SetRegistryCredential`]; see [`REGISTRY_CREDENTIALS_LEVEL`]); jobs' and templates' `gpus` (see [`GPU_LEVEL`]); a retry says why it runs where it does (see [`RETRY_NOTE_LEVEL`]); policies' `pull` (see [`POLICY_PULL_LEVEL`]); a machine reports an image pull (see [`PULL_EVENTS_LEVEL`]) |
//! | 10 | no new command: the submits of one request are audited as one entry ([`Command::Audited`] around a [`Command::Batch`]; see [`BATCH_AUDIT_LEVEL`]) |
//!
//! A new command (or a new variant inside one) that an older build cannot read takes the
//! next level: add a row here, raise [`PROTOCOL_LEVEL`], and give it that level in
//! [`Command::min_level`]. So does a change of behaviour an older build cannot follow, as
//! levels 4 and 5 are.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Command;

/// A protocol level: what a machine understands, or what a fleet may use.
///
/// Absent from a record an older build wrote, it reads as [`ProtocolLevel::FIRST`] (level
/// 1), which is also its default.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = u16)]
pub struct ProtocolLevel(pub u16);

impl ProtocolLevel {
    /// Level 1: what every build speaks, and what a record without a level means.
    pub const FIRST: ProtocolLevel = ProtocolLevel(1);
}

impl Default for ProtocolLevel {
    fn default() -> Self {
        ProtocolLevel::FIRST
    }
}

impl fmt::Display for ProtocolLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The highest protocol level this build speaks. See the table in this module's docs.
pub const PROTOCOL_LEVEL: ProtocolLevel = ProtocolLevel(10);

/// From this level on, a voter stands for election only once a quorum of voters, asked
/// over peer RPC, say they have not heard from a leader either: a machine back from a
/// partition no longer forces an election. An older build cannot answer that question, so
/// below it elections go by Raft's own timer.
pub const PREVOTE_LEVEL: ProtocolLevel = ProtocolLevel(4);

/// From this level on, every gossip datagram is sealed and a plain one is dropped unread.
/// An older build can neither read a sealed datagram nor send one, so a machine seals only
/// once its fleet is at this level: below it, a machine that speaks it sends each peer the
/// form that peer reads and reads both.
pub const SEALED_GOSSIP_LEVEL: ProtocolLevel = ProtocolLevel(5);

/// From this level on, a write one machine forwards to the leader carries what the user
/// presented (an API key, a job token, a registration token), and the leader checks it
/// again before proposing; a user's action without it is refused, as is an action only
/// the leader may take (see [`crate::authors`]). An older build sends no credential, so
/// below it the leader takes a forwarded write as before.
pub const PEER_AUTH_LEVEL: ProtocolLevel = ProtocolLevel(6);

/// From this level on, the leader records a machine it sees in gossip only if the log
/// admits it: it was in the Raft group that formed the fleet, it used a registration
/// token, or an admin approved it ([`Command::ApproveMachine`]). One that holds only the
/// cluster secret waits, PENDING, and is neither recorded nor sent the log.
pub const MEMBERSHIP_LEVEL: ProtocolLevel = ProtocolLevel(6);

/// From this level on, the gossip key rotates through the log: an admin asks
/// ([`Command::RequestGossipKeyRotation`]), the leader adds a random key sealed under the
/// current one ([`Command::RotateGossipKey`]), and every node switches to it. A machine's
/// removal ([`Command::RetireMachine`]) marks a rotation due. An older build cannot read
/// either command, so neither is proposed below it, and a removal below it rotates nothing.
pub const GOSSIP_KEYRING_LEVEL: ProtocolLevel = ProtocolLevel(7);

/// From this level on, a template belongs to the org whose key made it: other orgs
/// neither see it nor change it nor start sessions from it. An older build would take a
/// put with an org for a fleet-wide one, so it is not proposed below this level; when the
/// fleet reaches it, each fleet-wide template moves to the org of the key that made it.
pub const TEMPLATE_ORGS_LEVEL: ProtocolLevel = ProtocolLevel(8);

/// From this level on, a job or template may carry `secret_env`, sealed in the log. An
/// older build would drop the field and run the job without those variables.
pub const SECRET_ENV_LEVEL: ProtocolLevel = ProtocolLevel(8);

/// From this level on, a job or template may name the `user` its containers run as, and a
/// policy may set the user, add or drop capabilities and set a pids limit. An older build
/// would drop those fields and start the container as before.
pub const CONFINEMENT_LEVEL: ProtocolLevel = ProtocolLevel(8);

/// From this level on, a job or template may say when its image is pulled (`pull`). An
/// older build would drop the field and run the image it has (`always`), or pull one it
/// must not (`never`); `missing` is what every build does, so it needs no level.
pub const PULL_LEVEL: ProtocolLevel = ProtocolLevel(8);

/// From this level on, the log holds registry credentials, sealed, and machines pull with
/// them. An older build cannot read either command.
pub const REGISTRY_CREDENTIALS_LEVEL: ProtocolLevel = ProtocolLevel(9);
/// From this level on, a job or template may ask for `gpus`: the leader places it only
/// where that many GPUs are free, and the machine hands them to the container. An older
/// build would drop the field and place the job anywhere.
pub const GPU_LEVEL: ProtocolLevel = ProtocolLevel(9);
/// From this level on, a policy may set `pull` for the machines it selects. An older
/// build would drop the field and pull as the job says.
pub const POLICY_PULL_LEVEL: ProtocolLevel = ProtocolLevel(9);
/// From this level on, a machine says when it pulls an attempt's image
/// ([`crate::JobReport::Pulling`]), which the events show as `job_pulling`.
pub const PULL_EVENTS_LEVEL: ProtocolLevel = ProtocolLevel(9);
/// From this level on, a retry's attempt says why it runs where it does
/// ([`crate::Attempt::placed_because`]). Every replica sets it when it applies the
/// dispatch, so below this level, where an older build would not, none does.
pub const RETRY_NOTE_LEVEL: ProtocolLevel = ProtocolLevel(9);
/// From this level on, the jobs one request submits (`POST /v1/jobs/batch`) are one audit
/// entry, `submit_jobs`, naming the jobs it made, instead of one `submit_job` each: a large
/// batch no longer pushes everything else out of the audit log, and costs one entry to
/// apply rather than one per job. An older build would apply such an entry with other
/// audit text and without the jobs' events, so it is not proposed below this level.
pub const BATCH_AUDIT_LEVEL: ProtocolLevel = ProtocolLevel(10);
/// Whether `pull` asks for something an older build would not do.
fn pulls_unlike_before(pull: Option<crate::PullPolicy>) -> bool {
    pull.is_some_and(|pull| pull != crate::PullPolicy::Missing)
}

impl Command {
    /// The lowest protocol level at which every machine understands this command: the
    /// leader proposes it only when the fleet's level is at least this. For `Batch`,
    /// `Audited` and `Request`, the highest level of what they carry (3 at least for a
    /// `Request`, 10 for an `Audited` batch).
    pub fn min_level(&self) -> ProtocolLevel {
        match self {
            Command::Batch(commands) => commands
                .iter()
                .map(Command::min_level)
                .max()
                .unwrap_or(ProtocolLevel::FIRST),
            Command::Audited { command, .. } => match **command {
                Command::Batch(_) => command.min_level().max(BATCH_AUDIT_LEVEL),
                _ => command.min_level(),
            },
            Command::Request { command, .. } => {
                command.min_level().max(crate::requests::REQUEST_LEVEL)
            }
            Command::SetFleetLevel { .. } | Command::SetFleetSettings { .. } => ProtocolLevel(2),
            Command::ApproveMachine { .. } => MEMBERSHIP_LEVEL,
            Command::SetRegistryCredential { .. } => REGISTRY_CREDENTIALS_LEVEL,
            Command::ReportJob {
                report: crate::JobReport::Pulling { .. },
                ..
            } => PULL_EVENTS_LEVEL,
            Command::RequestGossipKeyRotation | Command::RotateGossipKey { .. } => {
                GOSSIP_KEYRING_LEVEL
            }
            // The highest level first: a spec that asks for several takes the highest.
            Command::SubmitJob { spec, .. } if spec.gpus.is_some() => GPU_LEVEL,
            Command::PutTemplate { spec, .. } if spec.gpus.is_some() => GPU_LEVEL,
            Command::SubmitJob { spec, .. } if !spec.secret_env.is_empty() => SECRET_ENV_LEVEL,
            Command::PutTemplate { spec, .. } if !spec.secret_env.is_empty() => SECRET_ENV_LEVEL,
            Command::SubmitJob { spec, .. } if spec.user.is_some() => CONFINEMENT_LEVEL,
            Command::PutTemplate { spec, .. } if spec.user.is_some() => CONFINEMENT_LEVEL,
            Command::SubmitJob { spec, .. } if pulls_unlike_before(spec.pull) => PULL_LEVEL,
            Command::PutTemplate { spec, .. } if pulls_unlike_before(spec.pull) => PULL_LEVEL,
            Command::SetPolicy {
                policy: Some(policy),
                ..
            } if policy.spec.sets_pull() => POLICY_PULL_LEVEL,
            Command::SetPolicy {
                policy: Some(policy),
                ..
            } if policy.spec.confines() => CONFINEMENT_LEVEL,
            Command::PutTemplate { org: Some(_), .. }
            | Command::RollbackTemplate { org: Some(_), .. } => TEMPLATE_ORGS_LEVEL,
            Command::UpsertMachine { .. }
            | Command::SetStatus { .. }
            | Command::LabelMachine { .. }
            | Command::RemoveMachine { .. }
            | Command::RetireMachine { .. }
            | Command::SubmitJob { .. }
            | Command::Dispatch { .. }
            | Command::ReportJob { .. }
            | Command::CancelJob { .. }
            | Command::RequeueJob { .. }
            | Command::TimeOutJob { .. }
            | Command::SetQueueReasons { .. }
            | Command::PruneJobs { .. }
            | Command::SetDrain { .. }
            | Command::CreateApiKey { .. }
            | Command::RevokeApiKey { .. }
            | Command::CreateTokens { .. }
            | Command::RevokeToken { .. }
            | Command::UseToken { .. }
            | Command::SetKillSwitch { .. }
            | Command::SetBudget { .. }
            | Command::ReportCost { .. }
            | Command::EnforceBudgets { .. }
            | Command::PutTemplate { .. }
            | Command::RollbackTemplate { .. }
            | Command::RecordBatch { .. }
            | Command::SetPolicy { .. } => ProtocolLevel::FIRST,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::FleetSettings;
    use crate::{JobId, MachineId};

    fn audited(command: Command) -> Command {
        Command::Audited {
            actor: "k1".into(),
            org: "default".into(),
            at_ms: 1,
            command: Box::new(command),
        }
    }

    fn settings() -> Command {
        Command::SetFleetSettings {
            settings: FleetSettings {
                job_retention_seconds: Some(3600),
            },
        }
    }

    #[test]
    fn first_release_commands_are_level_one() {
        let old = [
            Command::RemoveMachine { id: MachineId(1) },
            Command::CancelJob {
                job: JobId(3),
                at_ms: 1,
            },
            Command::PruneJobs {
                finished_before_ms: 5,
            },
            Command::EnforceBudgets { at_ms: 1 },
        ];
        for command in old {
            assert_eq!(command.min_level(), ProtocolLevel(1), "{command:?}");
        }
    }

    #[test]
    fn fleet_level_and_settings_are_level_two() {
        let raise = Command::SetFleetLevel {
            level: ProtocolLevel(2),
        };
        assert_eq!(raise.min_level(), ProtocolLevel(2));
        assert_eq!(settings().min_level(), ProtocolLevel(2));
    }

    #[test]
    fn a_request_is_level_three_at_least() {
        let request = |command| Command::Request {
            id: crate::requests::RequestId(1),
            at_ms: 1,
            command: Box::new(command),
        };
        let cancel = Command::CancelJob {
            job: JobId(3),
            at_ms: 1,
        };
        assert_eq!(request(cancel).min_level(), ProtocolLevel(3));
        assert_eq!(request(audited(settings())).min_level(), ProtocolLevel(3));
        let inside = Command::Batch(vec![request(settings())]);
        assert_eq!(inside.min_level(), ProtocolLevel(3));
    }

    #[test]
    fn wrappers_need_the_highest_level_they_carry() {
        assert_eq!(audited(settings()).min_level(), ProtocolLevel(2));
        let cancel = Command::CancelJob {
            job: JobId(3),
            at_ms: 1,
        };
        assert_eq!(audited(cancel.clone()).min_level(), ProtocolLevel(1));
        let mixed = Command::Batch(vec![cancel.clone(), audited(settings())]);
        assert_eq!(mixed.min_level(), ProtocolLevel(2));
        assert_eq!(Command::Batch(vec![cancel]).min_level(), ProtocolLevel(1));
        assert_eq!(Command::Batch(vec![]).min_level(), ProtocolLevel(1));
    }

    #[test]
    fn submits_audited_as_one_are_level_ten() {
        let submit = |gpus| {
            let mut spec = crate::JobSpec::new(["true"]);
            spec.gpus = gpus;
            Command::SubmitJob {
                spec: Box::new(spec),
                at_ms: 1,
            }
        };
        let one_entry = audited(Command::Batch(vec![submit(None), submit(Some(1))]));
        assert_eq!(one_entry.min_level(), BATCH_AUDIT_LEVEL);
        // The form a fleet below it uses: each submit audited on its own.
        let each = Command::Batch(vec![audited(submit(None)), audited(submit(None))]);
        assert_eq!(each.min_level(), ProtocolLevel(1));
    }

    #[test]
    fn gossip_key_commands_are_level_seven() {
        let rotate = Command::RotateGossipKey {
            generation: 1,
            sealed_key: vec![0; crate::gossip_keys::SEALED_KEY_LEN],
        };
        assert_eq!(rotate.min_level(), ProtocolLevel(7));
        let request = audited(Command::RequestGossipKeyRotation);
        assert_eq!(request.min_level(), GOSSIP_KEYRING_LEVEL);
        // A removal stays level 1: below 7 it rotates nothing.
        let retire = Command::RetireMachine { id: MachineId(1) };
        assert_eq!(retire.min_level(), ProtocolLevel(1));
    }

    #[test]
    fn registry_credentials_are_level_nine() {
        let logout = Command::SetRegistryCredential {
            registry: "ghcr.io".into(),
            credential: None,
        };
        assert_eq!(audited(logout).min_level(), REGISTRY_CREDENTIALS_LEVEL);
        let policy = |pull| Command::SetPolicy {
            name: "air-gapped".into(),
            policy: Some(Box::new(crate::policies::Policy {
                name: "air-gapped".into(),
                spec: crate::policies::PolicySpec {
                    pull,
                    pids_limit: Some(64),
                    ..Default::default()
                },
                updated_at_ms: 1,
                updated_by: "k1".into(),
            })),
        };
        let never = Some(crate::PullPolicy::Never);
        assert_eq!(policy(never).min_level(), POLICY_PULL_LEVEL);
        assert_eq!(policy(None).min_level(), CONFINEMENT_LEVEL);
    }

    #[test]
    fn templates_of_an_org_are_level_eight() {
        let put = |org: Option<&str>| Command::PutTemplate {
            org: org.map(str::to_string),
            name: "ci".into(),
            spec: Box::default(),
            by: "k1".into(),
            at_ms: 1,
        };
        assert_eq!(audited(put(Some("lab"))).min_level(), TEMPLATE_ORGS_LEVEL);
        // The form an older build made stays level 1.
        assert_eq!(put(None).min_level(), ProtocolLevel(1));
    }

    #[test]
    fn a_pull_policy_other_than_missing_is_level_eight() {
        let submit = |pull| Command::SubmitJob {
            spec: Box::new(crate::JobSpec {
                pull,
                ..crate::JobSpec::default()
            }),
            at_ms: 1,
        };
        use crate::PullPolicy::{Always, Missing, Never};
        assert_eq!(submit(Some(Always)).min_level(), PULL_LEVEL);
        assert_eq!(audited(submit(Some(Never))).min_level(), PULL_LEVEL);
        assert_eq!(submit(Some(Missing)).min_level(), ProtocolLevel(1));
        assert_eq!(submit(None).min_level(), ProtocolLevel(1));
        let put = |pull| Command::PutTemplate {
            org: None,
            name: "ci".into(),
            spec: Box::new(crate::templates::TemplateSpec {
                pull,
                ..crate::templates::TemplateSpec::default()
            }),
            by: "k1".into(),
            at_ms: 1,
        };
        assert_eq!(put(Some(Never)).min_level(), PULL_LEVEL);
        assert_eq!(put(None).min_level(), ProtocolLevel(1));
    }

    #[test]
    fn gpus_are_level_nine_even_beside_a_level_eight_field() {
        let submit = |gpus| Command::SubmitJob {
            spec: Box::new(crate::JobSpec {
                gpus,
                secret_env: [("TOKEN".to_string(), "sealed:v1:x".to_string())].into(),
                ..crate::JobSpec::default()
            }),
            at_ms: 1,
        };
        assert_eq!(submit(Some(2)).min_level(), GPU_LEVEL);
        assert_eq!(audited(submit(Some(1))).min_level(), GPU_LEVEL);
        assert_eq!(submit(None).min_level(), SECRET_ENV_LEVEL);
        let put = |gpus| Command::PutTemplate {
            org: None,
            name: "train".into(),
            spec: Box::new(crate::templates::TemplateSpec {
                gpus,
                ..crate::templates::TemplateSpec::default()
            }),
            by: "k1".into(),
            at_ms: 1,
        };
        assert_eq!(put(Some(1)).min_level(), GPU_LEVEL);
        assert_eq!(put(None).min_level(), ProtocolLevel(1));
    }

    #[test]
    fn a_level_missing_from_a_record_reads_as_one() {
        #[derive(Deserialize)]
        struct Record {
            #[serde(default)]
            level: ProtocolLevel,
        }
        let record: Record = serde_json::from_str("{}").unwrap();
        assert_eq!(record.level, ProtocolLevel::FIRST);
        assert_eq!(serde_json::to_string(&PROTOCOL_LEVEL).unwrap(), "10");
        assert_eq!(ProtocolLevel::default(), ProtocolLevel(1));
    }
}
