//! What another machine may ask of this one, beyond being let in at all.
//!
//! Peer RPC is noise-authenticated, so the machine id of a sender (derived from its peer
//! id) is known. Being a member, or holding the cluster secret, is not enough to act:
//!
//! - Raft traffic (appends, votes, snapshots, pre-votes) is taken only from members of
//!   the Raft configuration this replica knows, naming themselves as they are.
//! - A forwarded write is proposed only if the sender may cause it on its own (a report
//!   on an attempt it runs) or it carries what the user presented: the API key, checked
//!   again here against scope and org, a job token, a registration token. What only the
//!   leader does (statuses, placements, pruning) no other machine may send.
//! - An exec in a session or a batch action on this machine needs the user's key too.
//!
//! A fleet below [`PEER_AUTH_LEVEL`] still has builds that send no credential: until it
//! is raised, a forwarded user write without one is taken as before.

use libp2p::PeerId;
use shoal_protocol::authors::Author;
use shoal_protocol::keys::Scope;
use shoal_protocol::levels::PEER_AUTH_LEVEL;
use shoal_protocol::tokens::parse_token;
use shoal_protocol::{ApiError, Command, ErrorCode, FleetState, MachineId};

use crate::identity::machine_id;
use crate::keys::{Caller, authenticate, sha256_hex};
use crate::node::Node;
use crate::p2p::Credential;

/// Whether Raft traffic (appends, votes, snapshots, pre-votes) from `from`, naming
/// `claims`, is taken: only in the sender's own name, and only from a member of the Raft
/// configuration this replica knows (voters and learners of its latest one) or a machine
/// its log records (admitted, not removed: a replica that missed the change adding a
/// member may still have recorded it). A replica with no configuration yet takes it from
/// anyone let in: a machine just added as a learner hears first from its leader.
pub fn raft_sender(node: &Node, from: &PeerId, claims: MachineId) -> Result<(), String> {
    let sender = machine_id(from);
    if sender != claims {
        return Err(format!(
            "machine {sender} sent Raft traffic in the name of machine {claims}"
        ));
    }
    let in_config = {
        let metrics = node.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        membership.nodes().next().is_none() || membership.get_node(&sender).is_some()
    };
    let known = in_config
        || node
            .fleet
            .read(|state| state.machines.contains_key(&sender));
    match known {
        true => Ok(()),
        false => Err(format!(
            "machine {sender} is not a member of the Raft group and may not send Raft traffic"
        )),
    }
}

/// Whether the fleet (as this replica knows it) expects credentials with peer writes.
pub fn credentials_required(state: &FleetState) -> bool {
    state.fleet_level >= PEER_AUTH_LEVEL
}

/// What a forwarded write is checked with: the state it would apply to, the cluster
/// secret (job tokens are made under it), and who sent it.
pub struct Forwarded<'a> {
    pub state: &'a FleetState,
    pub cluster_secret: &'a str,
    pub from: MachineId,
    pub credential: Option<&'a Credential>,
    /// The older form, without a credential field: taken as before while the fleet is
    /// below [`PEER_AUTH_LEVEL`].
    pub legacy: bool,
}

impl Forwarded<'_> {
    /// Refuses (`Forbidden`, `Unauthorized`) a write the sender may not cause, saying why.
    pub fn check(&self, cmd: &Command) -> Result<(), ApiError> {
        match (cmd, cmd.author()) {
            (Command::Request { command, .. }, _) => self.check(command),
            (Command::Batch(commands), _) => commands.iter().try_for_each(|c| self.check(c)),
            (
                Command::Audited {
                    actor,
                    org,
                    command,
                    ..
                },
                _,
            ) => self.check_user(actor, org, command),
            (_, Author::Leader) => Err(self.forbidden(format!(
                "only the leader proposes {}; machine {} may not send it",
                cmd.tag(),
                self.from
            ))),
            (Command::ReportJob { job, attempt, .. }, _) => {
                let holder = self.state.jobs.get(job).and_then(|job| {
                    job.attempts
                        .iter()
                        .find(|a| a.number == *attempt)
                        .map(|a| a.machine)
                });
                match holder {
                    Some(holder) if holder != self.from => Err(self.forbidden(format!(
                        "job {job} attempt {attempt} runs on machine {holder}; machine {} may not report on it",
                        self.from
                    ))),
                    // The state machine refuses an unknown attempt, saying why.
                    _ => Ok(()),
                }
            }
            (Command::ReportCost { job, attempt, .. }, _) => match self.credential {
                Some(Credential::JobToken(token)) => {
                    let issued = crate::secrets::job_token::check(self.cluster_secret, token)?;
                    match issued == (*job, *attempt) {
                        true => Ok(()),
                        false => Err(self.forbidden(format!(
                            "the job token is for job {} attempt {}, not job {job} attempt {attempt}",
                            issued.0, issued.1
                        ))),
                    }
                }
                _ => self.unvouched(cmd, "the attempt's job token"),
            },
            (
                Command::UseToken {
                    id, secret_sha256, ..
                },
                _,
            ) => match self.credential {
                Some(Credential::RegistrationToken(token)) => {
                    let matches = parse_token(token).is_ok_and(|(tid, secret)| {
                        tid == id && sha256_hex(secret) == *secret_sha256
                    });
                    match matches {
                        true => Ok(()),
                        false => Err(self.forbidden(format!(
                            "the registration token presented is not token {id}"
                        ))),
                    }
                }
                _ => self.unvouched(cmd, "the registration token"),
            },
            // The first admin key, recorded by the machine that formed the fleet: before
            // any key exists there is no one to ask.
            (Command::CreateApiKey { .. }, _) if self.state.api_keys.is_empty() => Ok(()),
            _ => self.unvouched(cmd, "the user's API key, inside an audited change"),
        }
    }

    /// A user's change (or a batch of them audited as one): the key presented must be the
    /// one it names, of the scope and org each change needs.
    fn check_user(&self, actor: &str, org: &str, command: &Command) -> Result<(), ApiError> {
        let changes = match command {
            Command::Batch(commands) => commands.as_slice(),
            one => std::slice::from_ref(one),
        };
        let mut needed = Scope::Read;
        for change in changes {
            let Author::User(scope) = change.author() else {
                return Err(self.forbidden(format!(
                    "{} is not a user's change and may not come audited",
                    change.tag()
                )));
            };
            needed = needed.max(scope);
        }
        let caller = match self.credential {
            Some(Credential::ApiKey(key)) => authenticate(self.state, key)?,
            _ => return self.unvouched(command, "the user's API key"),
        };
        if caller.key_id != actor || caller.org != org {
            return Err(self.forbidden(format!(
                "the change names key {actor} of org {org}, but carries key {} of org {}",
                caller.key_id, caller.org
            )));
        }
        caller.require(needed)?;
        changes
            .iter()
            .try_for_each(|change| self.check_org(&caller, change))
    }

    /// A key outside the admin scope acts only within its org.
    fn check_org(&self, caller: &Caller, command: &Command) -> Result<(), ApiError> {
        if caller.scope >= Scope::Admin {
            return Ok(());
        }
        let org = match command {
            Command::SubmitJob { spec, .. } => Some(spec.org.as_str()),
            Command::CancelJob { job, .. } => self.state.jobs.get(job).map(|j| j.spec.org.as_str()),
            Command::PutTemplate { org, .. } | Command::RollbackTemplate { org, .. } => {
                org.as_deref()
            }
            _ => None,
        };
        match org {
            Some(org) if org != caller.org => Err(self.forbidden(format!(
                "key {} of org {} may not act in org {org}",
                caller.key_id, caller.org
            ))),
            _ => Ok(()),
        }
    }

    /// A write that needs `what` and came without it: in the older form, taken as before
    /// while the fleet is below the level, and sent back to be sent again once it is (the
    /// sender's replica has not applied the raise yet: its next try carries `what`); in
    /// the newer form, refused.
    fn unvouched(&self, cmd: &Command, what: &str) -> Result<(), ApiError> {
        match (self.legacy, credentials_required(self.state)) {
            (true, false) => return Ok(()),
            (true, true) => {
                return Err(ApiError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "the fleet is at protocol level {PEER_AUTH_LEVEL}: send {} again with {what}",
                        cmd.tag()
                    ),
                ));
            }
            (false, _) => {}
        }
        Err(ApiError::new(
            ErrorCode::Unauthorized,
            format!(
                "{} forwarded by machine {} needs {what}, and none came with it",
                cmd.tag(),
                self.from
            ),
        ))
    }

    fn forbidden(&self, message: String) -> ApiError {
        ApiError::new(ErrorCode::Forbidden, message)
    }
}

/// The user behind a request to run something on this machine (an exec in a session, a
/// batch action): their key, checked against this replica (reading through the leader
/// once if the key is new here), with at least `needed`. Without a key, only while the
/// fleet is below [`PEER_AUTH_LEVEL`].
pub async fn user_behind(
    node: &Node,
    credential: Option<&Credential>,
    needed: Scope,
) -> Result<Option<Caller>, ApiError> {
    let key = match credential {
        Some(Credential::ApiKey(key)) => key,
        None if !node.fleet.read(credentials_required) => return Ok(None),
        _ => {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "a machine may not ask this on its own: it needs the user's API key",
            ));
        }
    };
    let caller = match node.fleet.read(|state| authenticate(state, key)) {
        Ok(caller) => caller,
        Err(_) => {
            let _ = node.read_barrier().await;
            node.fleet.read(|state| authenticate(state, key))?
        }
    };
    caller.require(needed)?;
    Ok(Some(caller))
}

#[cfg(test)]
mod tests;
