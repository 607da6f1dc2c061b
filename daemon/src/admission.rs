//! Which machines the fleet takes in: the rule the leader records machines by, and what
//! the API shows of the ones waiting.
//!
//! From [`MEMBERSHIP_LEVEL`] a machine is a member because the log says so, not because
//! it holds the cluster secret: it was in the Raft group that formed the fleet, used a
//! registration token, or an admin approved it (`shoal machines approve`). One that shows
//! up in gossip with the secret alone is PENDING: not recorded, not a Raft learner, sent
//! no log entry. A removed machine stays banned until it uses a new token.

use std::collections::BTreeSet;
use std::time::Duration;

use shoal_protocol::levels::MEMBERSHIP_LEVEL;
use shoal_protocol::{ApiError, Command, ErrorCode, FleetState, MachineId, Response};
use tokio::time::Instant;

use crate::keys::authenticate;
use crate::node::Node;

/// Where a machine seen in gossip stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The leader may record it (and, from there, add it to Raft).
    Member,
    /// It waits for an admin's approval or a registration token.
    Pending,
    /// An admin removed it.
    Banned,
}

/// Where machine `id` stands, given the state and the Raft members (voters and learners).
pub fn admission(
    state: &FleetState,
    raft_members: &BTreeSet<MachineId>,
    id: MachineId,
) -> Admission {
    if state.retired.contains(&id) {
        Admission::Banned
    } else if state.fleet_level < MEMBERSHIP_LEVEL
        || state.machines.contains_key(&id)
        || raft_members.contains(&id)
        || state.admitted.contains(&id)
    {
        Admission::Member
    } else {
        Admission::Pending
    }
}

/// Another running machine of the fleet named `name`, if any: names are unique among the
/// machines that run. One that is down (OFFLINE, STALE, DEAD) may be the machine `id`
/// replaces, as after a reinstall or a restore, and does not hold its name.
pub fn name_holder(state: &FleetState, name: &str, id: MachineId) -> Option<MachineId> {
    use shoal_protocol::MachineStatus::{Dead, Offline, Stale};
    state
        .machines
        .values()
        .find(|m| {
            m.info.name == name && m.info.id != id && !matches!(m.status, Offline | Stale | Dead)
        })
        .map(|m| m.info.id)
}

/// What a machine whose name `holder` has is told, by the join or the approval that refuses it.
pub fn name_taken(name: &str, holder: MachineId) -> String {
    format!(
        "machine name {name} is taken by machine {holder}: start this machine with another --node-name"
    )
}

/// Admits machine `id` through `node` with the admin API `key`, as `shoal machines approve`
/// does: for the dev fleet and the test suite, which start machines with the cluster
/// secret alone. Waits (up to 30 s) for the fleet to reach [`MEMBERSHIP_LEVEL`] and the key
/// to be known; nothing to do for a machine already recorded or admitted, or through a
/// node of an older build (its fleet takes machines in by the secret).
pub async fn approve_with_key(node: &Node, key: &str, id: MachineId) -> Result<(), ApiError> {
    if node.config.protocol_level < MEMBERSHIP_LEVEL {
        return Ok(());
    }
    let ready = |state: &FleetState| {
        if state.machines.contains_key(&id) || state.admitted.contains(&id) {
            return Some(None);
        }
        let caller = authenticate(state, key).ok()?;
        (state.fleet_level >= MEMBERSHIP_LEVEL).then_some(Some(caller))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let caller = loop {
        match node.fleet.read(ready) {
            Some(None) => return Ok(()),
            Some(Some(caller)) => break caller,
            None if Instant::now() >= deadline => {
                return Err(ApiError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "the fleet did not reach protocol level {MEMBERSHIP_LEVEL} with the key known in time"
                    ),
                ));
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let outcome = node
        .write_as(&caller, Command::ApproveMachine { id })
        .await?;
    match outcome.response {
        Response::Rejected { code, message } => Err(ApiError::new(code, message)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use shoal_protocol::ProtocolLevel;

    use super::*;

    #[test]
    fn the_secret_alone_makes_a_machine_wait_from_the_level_on() {
        let stranger = MachineId(9);
        let mut state = FleetState {
            fleet_level: ProtocolLevel(5),
            ..FleetState::default()
        };
        let none = BTreeSet::new();
        assert_eq!(admission(&state, &none, stranger), Admission::Member);
        state.fleet_level = MEMBERSHIP_LEVEL;
        assert_eq!(admission(&state, &none, stranger), Admission::Pending);
        // The group that formed the fleet, an approval or a token admits it.
        assert_eq!(
            admission(&state, &BTreeSet::from([stranger]), stranger),
            Admission::Member
        );
        state.admitted.insert(stranger);
        assert_eq!(admission(&state, &none, stranger), Admission::Member);
        // A removed machine is banned, whatever else holds.
        state.retired.insert(stranger);
        assert_eq!(
            admission(&state, &BTreeSet::from([stranger]), stranger),
            Admission::Banned
        );
    }
}
