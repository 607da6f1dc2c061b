//! Who may cause each [`Command`]: the leader from what it observes, a machine about its
//! own work, or a user through the API with a key of some scope.
//!
//! The leader checks a write another machine forwarded against this before it proposes
//! it (see the daemon's `peer_writes`): holding the cluster secret, or being a member,
//! does not let a machine cause a user's action, or another machine's report.

use crate::Command;
use crate::keys::Scope;

/// Who may cause a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Author {
    /// Only the leader, from what it observes itself (statuses, placements, pruning,
    /// the fleet level). A write of this kind from another machine is refused.
    Leader,
    /// The machine an attempt runs on, reporting on that attempt.
    Runner,
    /// Running work, with its attempt's job token.
    Attempt,
    /// A machine joining, with a registration token.
    Joiner,
    /// A user, through the API, with a key of at least this scope; it travels inside
    /// [`Command::Audited`], which names the key.
    User(Scope),
    /// A wrapper ([`Command::Batch`], [`Command::Request`], [`Command::Audited`]): judged
    /// by what it holds.
    Wrapper,
}

impl Command {
    /// Who may cause this command. Every variant is named, so a new command must say.
    pub fn author(&self) -> Author {
        match self {
            Command::Batch(_) | Command::Request { .. } | Command::Audited { .. } => {
                Author::Wrapper
            }
            Command::UpsertMachine { .. }
            | Command::SetStatus { .. }
            | Command::RemoveMachine { .. }
            | Command::Dispatch { .. }
            | Command::RequeueJob { .. }
            | Command::TimeOutJob { .. }
            | Command::SetQueueReasons { .. }
            | Command::PruneJobs { .. }
            | Command::EnforceBudgets { .. }
            | Command::SetFleetLevel { .. }
            | Command::RotateGossipKey { .. } => Author::Leader,
            Command::ReportJob { .. } => Author::Runner,
            Command::ReportCost { .. } => Author::Attempt,
            Command::UseToken { .. } => Author::Joiner,
            Command::SubmitJob { .. }
            | Command::CancelJob { .. }
            | Command::PutTemplate { .. }
            | Command::RollbackTemplate { .. } => Author::User(Scope::Operate),
            Command::LabelMachine { .. }
            | Command::SetDrain { .. }
            | Command::RecordBatch { .. }
            | Command::RetireMachine { .. }
            | Command::ApproveMachine { .. }
            | Command::CreateApiKey { .. }
            | Command::RevokeApiKey { .. }
            | Command::CreateTokens { .. }
            | Command::RevokeToken { .. }
            | Command::SetKillSwitch { .. }
            | Command::SetBudget { .. }
            | Command::SetPolicy { .. }
            | Command::SetRegistryCredential { .. }
            | Command::SetFleetSettings { .. }
            | Command::RequestGossipKeyRotation => Author::User(Scope::Admin),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobId, MachineId};

    #[test]
    fn user_actions_need_a_key_and_reports_belong_to_machines() {
        let retire = Command::RetireMachine { id: MachineId(1) };
        assert_eq!(retire.author(), Author::User(Scope::Admin));
        let cancel = Command::CancelJob {
            job: JobId(1),
            at_ms: 0,
        };
        assert_eq!(cancel.author(), Author::User(Scope::Operate));
        let prune = Command::PruneJobs {
            finished_before_ms: 0,
        };
        assert_eq!(prune.author(), Author::Leader);
        assert_eq!(Command::Batch(vec![]).author(), Author::Wrapper);
        let request = Command::RequestGossipKeyRotation;
        assert_eq!(request.author(), Author::User(Scope::Admin));
        let rotate = Command::RotateGossipKey {
            generation: 1,
            sealed_key: vec![0; crate::gossip_keys::SEALED_KEY_LEN],
        };
        assert_eq!(rotate.author(), Author::Leader);
    }
}
