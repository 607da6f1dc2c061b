//! The fleet state machine's input ([`Command`]), output ([`Response`]) and state ([`FleetState`]).
//!
//! Commands carry every time they need: applying one never reads a clock.

use std::collections::{BTreeMap, BTreeSet};

use imbl::{OrdMap, OrdSet, Vector};
use serde::{Deserialize, Serialize};

use crate::audit::AuditEntry;
use crate::cost_ledger::CostLedger;
use crate::keys::ApiKeyRecord;
use crate::levels::ProtocolLevel;
use crate::running_spend::RunningSpend;
use crate::settings::FleetSettings;
use crate::tokens::RegistrationToken;
use crate::{
    Drain, ErrorCode, JobId, JobRecord, JobReport, JobSpec, Labels, MachineId, MachineInfo,
    MachineRecord, MachineStatus, Placement, UnixMillis,
};

/// A write to the fleet state, proposed to the leader and applied on every replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Adds a machine, or refreshes what it published (addresses, own labels, version).
    /// A new machine starts as REGISTERING; the leader's status loop moves it on.
    UpsertMachine {
        info: Box<MachineInfo>,
        at_ms: UnixMillis,
    },
    /// The leader saw the machine's status change.
    SetStatus {
        id: MachineId,
        status: MachineStatus,
        last_heartbeat_ms: UnixMillis,
        at_ms: UnixMillis,
    },
    /// An operator sets or removes labels on a machine.
    LabelMachine {
        id: MachineId,
        set: Labels,
        remove: Vec<String>,
    },
    /// Forgets a machine.
    RemoveMachine { id: MachineId },
    /// An admin removes a machine for good: it is forgotten, leaves Raft, its peer requests
    /// are refused, and it is not recorded again until it uses a new registration token.
    RetireMachine { id: MachineId },
    /// An admin admits a machine that came with the cluster secret alone (shown PENDING
    /// until then); a removed machine comes back only with a registration token.
    ApproveMachine { id: MachineId },
    /// A user submits a job; its id is the entry's log index. `agent_id: "all_online"`
    /// makes one child job per machine ONLINE at apply time.
    SubmitJob {
        spec: Box<JobSpec>,
        at_ms: UnixMillis,
    },
    /// The leader hands queued jobs to machines. Placements that no longer fit the job
    /// (not queued, another attempt number, still in backoff) are skipped.
    Dispatch {
        placements: Vec<Placement>,
        at_ms: UnixMillis,
    },
    /// A machine reports on the attempt it runs.
    ReportJob {
        job: JobId,
        attempt: u32,
        report: JobReport,
        at_ms: UnixMillis,
    },
    /// A user cancels a job.
    CancelJob { job: JobId, at_ms: UnixMillis },
    /// The leader takes an attempt back without counting it as a failure: the machine never
    /// started it in time, or went STALE.
    RequeueJob {
        job: JobId,
        attempt: u32,
        reason: String,
        at_ms: UnixMillis,
    },
    /// The leader gives up on a job that waited its whole queue timeout.
    TimeOutJob { job: JobId, at_ms: UnixMillis },
    /// The leader records why queued jobs are still waiting.
    SetQueueReasons { reasons: Vec<(JobId, String)> },
    /// Several commands proposed together as one log entry, applied in order; each gets
    /// its own response, and a rejected one does not stop the others.
    Batch(Vec<Command>),
    /// `command` as sent by the node it entered the fleet through, under an id made there:
    /// applied once; a repeat of `id` (a retry after a lost answer) gets the first answer
    /// again. `at_ms` is when it entered, and ages the ids kept (see [`crate::requests`]).
    Request {
        id: crate::requests::RequestId,
        at_ms: UnixMillis,
        command: Box<Command>,
    },
    /// The leader forgets finished jobs (with their fan-out children and idempotency
    /// keys) that last changed before `finished_before_ms`.
    PruneJobs { finished_before_ms: UnixMillis },
    /// An operator drains machines (`drain: Some`) or ends their drain (`None`). Unknown
    /// ids are refused and nothing changes.
    SetDrain {
        machines: Vec<MachineId>,
        drain: Option<Drain>,
    },
    /// An admin creates an API key (the record holds only a hash of its secret).
    CreateApiKey { record: Box<ApiKeyRecord> },
    /// An admin revokes an API key; every node refuses it once applied.
    RevokeApiKey { id: String, at_ms: UnixMillis },
    /// An admin makes registration tokens (each holds only a hash of its secret).
    CreateTokens { tokens: Vec<RegistrationToken> },
    /// An admin revokes a registration token that was not used yet.
    RevokeToken { id: String, at_ms: UnixMillis },
    /// A machine presents a token to join: it must exist, match `secret_sha256`, be unused,
    /// unexpired at `at_ms` and not revoked; then it is used up by `machine`.
    UseToken {
        id: String,
        secret_sha256: String,
        machine: MachineId,
        at_ms: UnixMillis,
    },
    /// A user's change through the API: applied as `command`, and recorded in the audit
    /// log with the key that made it and how it went.
    Audited {
        actor: String,
        org: String,
        at_ms: UnixMillis,
        command: Box<Command>,
    },
    /// An operator stops all dispatch fleet-wide (`Some`) or lets it go on (`None`).
    /// Turning it off restarts the queue clock of every queued job: the time held does not
    /// count against its queue timeout. `terminate` (with `Some`) also stops every job on a
    /// machine now: it ends cancelled.
    SetKillSwitch {
        switch: Option<KillSwitch>,
        terminate: bool,
        at_ms: UnixMillis,
    },
    /// An org's daily limits (`None` removes them).
    SetBudget {
        org: String,
        budget: Option<crate::costs::Budget>,
    },
    /// A running attempt reports what it spent. Refused once the attempt has ended; a
    /// `report_id` already counted for the attempt is not counted again.
    ReportCost {
        job: JobId,
        attempt: u32,
        micro_usd: u64,
        report_id: Option<String>,
        at_ms: UnixMillis,
    },
    /// The leader saw an org with `on_exceed = stop` over a limit: its running work is
    /// stopped (as reckoned at `at_ms`, so every replica agrees).
    EnforceBudgets { at_ms: UnixMillis },
    /// A new version of a template (made if new); sessions use it from now on. `org` owns
    /// it (from [`crate::levels::TEMPLATE_ORGS_LEVEL`]; `None`: a fleet-wide template, as
    /// an older build made them).
    PutTemplate {
        #[serde(default)]
        org: Option<String>,
        name: String,
        spec: Box<crate::templates::TemplateSpec>,
        by: String,
        at_ms: UnixMillis,
    },
    /// Sessions use an earlier version of a template from now on (`org` as in
    /// [`Command::PutTemplate`]).
    RollbackTemplate {
        #[serde(default)]
        org: Option<String>,
        name: String,
        version: u32,
    },
    /// A batch operation ran on `machines`; recorded (inside `Audited`) for the audit log.
    RecordBatch {
        action: crate::batch::BatchAction,
        machines: Vec<MachineId>,
    },
    /// Sets a governance policy (`Some`) or removes it.
    SetPolicy {
        name: String,
        policy: Option<Box<crate::policies::Policy>>,
    },
    /// An admin sets the credentials machines pull `registry`'s images with (`Some`, its
    /// password sealed), or removes them. Refused, changing nothing, when the credential
    /// is malformed or names another registry, or when the fleet already holds
    /// [`crate::registries::MAX_REGISTRIES`] others.
    SetRegistryCredential {
        registry: String,
        credential: Option<Box<crate::registries::RegistryCredential>>,
    },
    /// The leader raises the fleet's protocol level: every Raft member speaks `level`.
    /// A level below the current one is refused (the level never goes down).
    SetFleetLevel { level: ProtocolLevel },
    /// An admin replaces the fleet's settings (refused, changing nothing, when one is out
    /// of range).
    SetFleetSettings { settings: FleetSettings },
    /// An admin asks for a new gossip key: the rotation is due, and the leader makes it
    /// ([`Command::RotateGossipKey`]). See [`crate::gossip_keys`].
    RequestGossipKeyRotation,
    /// The leader adds the next generation of the gossip key: a random key sealed under
    /// the current one. Refused, changing nothing, unless `generation` follows the current
    /// one and `sealed_key` is [`crate::gossip_keys::SEALED_KEY_LEN`] bytes.
    RotateGossipKey {
        generation: u32,
        sealed_key: Vec<u8>,
    },
}

impl Command {
    /// The command's name, as its encoding tags it.
    pub fn tag(&self) -> &'static str {
        match self {
            Command::UpsertMachine { .. } => "UpsertMachine",
            Command::SetStatus { .. } => "SetStatus",
            Command::LabelMachine { .. } => "LabelMachine",
            Command::RemoveMachine { .. } => "RemoveMachine",
            Command::RetireMachine { .. } => "RetireMachine",
            Command::ApproveMachine { .. } => "ApproveMachine",
            Command::SubmitJob { .. } => "SubmitJob",
            Command::Dispatch { .. } => "Dispatch",
            Command::ReportJob { .. } => "ReportJob",
            Command::CancelJob { .. } => "CancelJob",
            Command::RequeueJob { .. } => "RequeueJob",
            Command::TimeOutJob { .. } => "TimeOutJob",
            Command::SetQueueReasons { .. } => "SetQueueReasons",
            Command::Batch(..) => "Batch",
            Command::PruneJobs { .. } => "PruneJobs",
            Command::SetDrain { .. } => "SetDrain",
            Command::CreateApiKey { .. } => "CreateApiKey",
            Command::RevokeApiKey { .. } => "RevokeApiKey",
            Command::CreateTokens { .. } => "CreateTokens",
            Command::RevokeToken { .. } => "RevokeToken",
            Command::UseToken { .. } => "UseToken",
            Command::Audited { .. } => "Audited",
            Command::SetKillSwitch { .. } => "SetKillSwitch",
            Command::SetBudget { .. } => "SetBudget",
            Command::ReportCost { .. } => "ReportCost",
            Command::EnforceBudgets { .. } => "EnforceBudgets",
            Command::PutTemplate { .. } => "PutTemplate",
            Command::RollbackTemplate { .. } => "RollbackTemplate",
            Command::RecordBatch { .. } => "RecordBatch",
            Command::SetPolicy { .. } => "SetPolicy",
            Command::SetRegistryCredential { .. } => "SetRegistryCredential",
            Command::SetFleetLevel { .. } => "SetFleetLevel",
            Command::SetFleetSettings { .. } => "SetFleetSettings",
            Command::RequestGossipKeyRotation => "RequestGossipKeyRotation",
            Command::RotateGossipKey { .. } => "RotateGossipKey",
            Command::Request { .. } => "Request",
        }
    }
}

/// The fleet-wide stop: while on, no job is dispatched and queued jobs wait (their queue
/// timeout does not run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillSwitch {
    pub reason: String,
    /// Who turned it on.
    pub actor: String,
    pub since_ms: UnixMillis,
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Applied, with nothing to return.
    Done,
    /// Applied; the machine as it now stands.
    Machine(Box<MachineRecord>),
    /// Applied; the job as it now stands (for a duplicate submit, the existing job).
    Job(Box<JobRecord>),
    /// Applied; the jobs it touched (for `Dispatch`, the placements that took effect).
    Jobs(Vec<JobId>),
    /// Refused; nothing changed.
    Rejected { code: ErrorCode, message: String },
    /// The responses to a [`Command::Batch`], in order.
    Batch(Vec<Response>),
    /// Applied `SubmitJob`: the new job, or for a known idempotency key the existing one
    /// (`created: false`).
    Submitted { job: Box<JobRecord>, created: bool },
    /// Applied `ReportCost`: whether it counted (false: its id was counted before).
    CostReported { counted: bool },
    /// Applied to a template: the template as it now stands.
    Template(Box<crate::templates::Template>),
}

/// Everything the fleet agrees on. Snapshots serialize it whole.
///
/// What grows with use is held in persistent maps (`imbl`), so a copy of the state (a
/// snapshot's) shares them and costs next to nothing; applies after it copy only the
/// paths they change. Fields marked `serde(skip)` are indexes derived from the others
/// (see [`crate::indexes`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    pub machines: BTreeMap<MachineId, MachineRecord>,
    /// Every job, finished ones included.
    pub jobs: OrdMap<JobId, JobRecord>,
    /// org -> idempotency key -> the job submitted with it.
    pub idempotency: OrdMap<String, OrdMap<String, JobId>>,
    /// The lowest id a new job may take (ids never repeat, even past fan-out children).
    pub next_job_id: u64,
    /// The jobs waiting for a machine (`queued`): what a dispatch pass places. With
    /// `placed_jobs`, the jobs not finished yet: what the leader's and the runners' loops
    /// look at, so their cost follows the work in flight, not the history kept.
    #[serde(skip)]
    pub queued_jobs: OrdSet<JobId>,
    /// The jobs on a machine (`dispatched` or `running`): what counts a machine's work and
    /// what a runner looks for its own.
    #[serde(skip)]
    pub placed_jobs: OrdMap<JobId, crate::indexes::OnMachine>,
    /// Finished top-level jobs by when they finished (`updated_at_ms`), oldest first:
    /// what a prune walks.
    #[serde(skip)]
    pub finished_jobs: OrdSet<(UnixMillis, JobId)>,
    /// The attempts running now, summed per org for budget checks.
    #[serde(skip)]
    pub running: RunningSpend,
    /// On: no dispatch anywhere.
    pub kill_switch: Option<KillSwitch>,
    /// API keys by id, revoked ones included.
    pub api_keys: OrdMap<String, ApiKeyRecord>,
    /// Machines removed by an admin; they come back only with a new registration token.
    pub retired: BTreeSet<MachineId>,
    /// Machines admitted by a registration token or an admin's approval, which the leader
    /// may record once they show up (see [`crate::levels::MEMBERSHIP_LEVEL`]); none in a
    /// state written before it.
    #[serde(default)]
    pub admitted: BTreeSet<MachineId>,
    /// Registration tokens by id, used and revoked ones included.
    pub tokens: OrdMap<String, RegistrationToken>,
    /// The newest audit entries, oldest first (at most `audit::MAX_KEPT`).
    pub audit: Vector<AuditEntry>,
    /// The seq the next audit entry takes.
    pub next_audit_seq: u64,
    /// Daily limits by org.
    pub budgets: BTreeMap<String, crate::costs::Budget>,
    /// What ended attempts cost and what work reported, by day, org, machine and kind.
    pub costs: CostLedger,
    /// Session templates by owning org, then by name (none in a state written before
    /// [`crate::levels::TEMPLATE_ORGS_LEVEL`]).
    #[serde(rename = "org_templates", default)]
    pub templates: OrdMap<String, OrdMap<String, crate::templates::Template>>,
    /// Templates made before templates belonged to orgs, by name: every org sees them.
    /// When the fleet reaches [`crate::levels::TEMPLATE_ORGS_LEVEL`] each moves to the org
    /// of the key that made it, and this stays empty.
    #[serde(rename = "templates", default)]
    pub unowned_templates: OrdMap<String, crate::templates::Template>,
    /// Governance policies by name.
    pub policies: BTreeMap<String, crate::policies::Policy>,
    /// The protocol level every member speaks, as the leader last committed it (1 in a
    /// state written before levels existed). See [`crate::levels`].
    #[serde(default)]
    pub fleet_level: ProtocolLevel,
    /// Settings every leader follows alike (none set in a state written before them).
    #[serde(default)]
    pub settings: FleetSettings,
    /// The request ids applied lately, with their answers: a repeat is not applied again
    /// (none in a state written before request ids).
    #[serde(default)]
    pub requests: crate::requests::Requests,
    /// The gossip keys after generation 0, sealed, and whether a rotation is due (none in
    /// a state written before [`crate::levels::GOSSIP_KEYRING_LEVEL`]).
    #[serde(default)]
    pub gossip_keys: crate::gossip_keys::GossipKeys,
    /// Registry credentials by registry, passwords sealed (none in a state written before
    /// [`crate::levels::REGISTRY_CREDENTIALS_LEVEL`]).
    #[serde(default)]
    pub registry_credentials: BTreeMap<String, crate::registries::RegistryCredential>,
}

impl Command {
    /// The command itself, inside any [`Command::Request`] wrapper.
    pub fn inner(&self) -> &Command {
        match self {
            Command::Request { command, .. } => command.inner(),
            other => other,
        }
    }
}
