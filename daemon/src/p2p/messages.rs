//! Peer RPC messages: Raft traffic, writes forwarded to the leader, and job output and
//! resource history read from the machine that has them.
//!
//! They travel as versioned frames (`shoal_protocol::frame`) behind a length prefix.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use shoal_protocol::api::{JobLogs, MachineHistory};
use shoal_protocol::batch::BatchAction;
use shoal_protocol::sessions::ExecResult;
use shoal_protocol::{ApiError, Command, JobId, MachineId, Response};
use shoal_raft::TypeConfig;

/// What one machine asks another.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<MachineId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A write accepted by a follower, for the leader to propose: the form of a fleet
    /// below
    /// [`shoal_protocol::levels::PEER_AUTH_LEVEL`], whose older builds send no credential.
    Forward(Command),
    /// A write accepted by another machine, for the leader to propose once it has checked
    /// `credential` (the user's key, a job token, a registration token) or, without one,
    /// that the sending machine may cause `command` on its own (see `peer_writes`).
    ForwardAs {
        command: Command,
        credential: Option<Credential>,
    },
    /// A follower asks the leader for a linearizable read point.
    ReadIndex,
    /// A voter asks whether it may stand for election (protocol level 4).
    PreVote(crate::leadership::PreVote),
    /// A machine found on the LAN asks where to gossip; answered for anyone, since a
    /// gossip address is no secret.
    Hello,
    /// A machine that holds a registration token asks to join; answered for anyone (the
    /// token is the credential), over the encrypted channel. `name` is the machine's name,
    /// which must not be another machine's (an older build sends none).
    Join {
        token: String,
        #[serde(default)]
        name: Option<String>,
    },
    /// Before a joining machine sends its token: prove you hold this token's record
    /// (see `join.rs`), so the token goes only to a machine of the fleet that made it.
    JoinChallenge {
        token_id: String,
        nonce: Vec<u8>,
    },
    /// Output of an attempt this machine ran, from byte `from`, waiting up to `wait_ms`
    /// for some while it runs.
    Logs {
        job: JobId,
        attempt: u32,
        from: u64,
        wait_ms: u64,
    },
    /// This machine's resource samples taken after `since_ms` (all it keeps without).
    History {
        since_ms: Option<u64>,
    },
    /// Carry out a batch operation on this machine.
    Batch {
        action: BatchAction,
        /// The key of the user who asked (absent from an older build).
        #[serde(default)]
        credential: Option<Credential>,
    },
    /// A member that lacks the fleet CA asks for it (see `tls/fetch.rs`); answered only
    /// for machines the fleet admits. An older build cannot decode it and drops the
    /// stream, which the asker takes as "no CA here".
    FleetCa,
    /// Run a command in the container of a session this machine runs.
    Exec {
        job: JobId,
        attempt: u32,
        command: Vec<String>,
        timeout_ms: u64,
        /// The key of the user who asked (absent from an older build).
        #[serde(default)]
        credential: Option<Credential>,
    },
}

/// What a user (or a job, or a joining machine) presented to the machine it reached,
/// passed on so the machine that acts checks it again: a member cannot make one up.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credential {
    /// An API key, as the caller sent it.
    ApiKey(String),
    /// A running attempt's `SHOAL_JOB_TOKEN`.
    JobToken(String),
    /// A registration token a machine presented to join.
    RegistrationToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret itself, in a log line or a panic message.
        f.write_str(match self {
            Credential::ApiKey(_) => "ApiKey(..)",
            Credential::JobToken(_) => "JobToken(..)",
            Credential::RegistrationToken(_) => "RegistrationToken(..)",
        })
    }
}

/// A committed write: its log index and what the state machine answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteOutcome {
    pub index: u64,
    pub response: Response,
}

/// The answer to a [`PeerRequest`], variant for variant.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    Append(Result<AppendEntriesResponse<MachineId>, RaftError<MachineId>>),
    Vote(Result<VoteResponse<MachineId>, RaftError<MachineId>>),
    Snapshot(
        Result<InstallSnapshotResponse<MachineId>, RaftError<MachineId, InstallSnapshotError>>,
    ),
    Write(Result<WriteOutcome, ApiError>),
    /// The log index a read must wait for.
    ReadIndex(Result<u64, ApiError>),
    /// Whether this voter, too, has heard from no leader.
    PreVote {
        granted: bool,
    },
    Logs(Result<JobLogs, ApiError>),
    /// The token was good: the fleet's secret and where its machines gossip.
    Joined {
        cluster_secret: String,
        gossip_seeds: Vec<String>,
        /// The fleet CA, so the new machine serves its API with a certificate from it
        /// (absent from an older build's answer, or a fleet that has none yet).
        #[serde(default)]
        fleet_ca: Option<crate::tls::FleetCa>,
        /// The fleet's gossip keys, once it rotated them (absent from an older build's
        /// answer, or before the first rotation: the secret gives generation 0).
        #[serde(default)]
        gossip_keyring: Option<crate::gossip_keys::file::StoredKeyring>,
    },
    /// The answer to a [`PeerRequest::JoinChallenge`]: this machine's peer id and a MAC
    /// over the nonce and both peer ids, keyed by the token's hash.
    JoinProof {
        peer_id: String,
        mac: Vec<u8>,
    },
    /// Where this machine gossips.
    Hello {
        gossip_addr: String,
    },
    /// The sender is not a machine of this fleet.
    Refused(String),
    History(Result<MachineHistory, ApiError>),
    Exec(Result<ExecResult, ApiError>),
    /// What the machine did.
    Batch(Result<String, ApiError>),
    /// The fleet CA, if this member has it.
    FleetCa(Option<crate::tls::FleetCa>),
}
