//! Autopilot: which machines vote in Raft. A pure planner the leader runs every
//! reconcile tick; the leader carries out at most one change per tick.
//!
//! Up to three voters (five once five or more machines are healthy), the rest learners.
//! A voter unhealthy for longer than the grace period is replaced by a healthy,
//! caught-up learner; DEAD machines leave the group.

use std::collections::BTreeSet;

use shoal_protocol::MachineId;

/// How one Raft member looks to the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Answering heartbeats; `caught_up` when its log is close to the leader's.
    Healthy {
        caught_up: bool,
    },
    /// Not answering since `since_ms`.
    Unhealthy {
        since_ms: u64,
    },
    Dead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub id: MachineId,
    pub voter: bool,
    pub health: Health,
}

/// A membership change for the leader to propose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Take these machines out of the Raft group altogether.
    Remove(BTreeSet<MachineId>),
    /// Make exactly these machines voters; other members stay as learners.
    SetVoters(BTreeSet<MachineId>),
}

/// The voter count the fleet aims for with `healthy` healthy machines.
pub fn target_voters(healthy: usize) -> usize {
    if healthy >= 5 { 5 } else { 3 }
}

/// Plans the next membership change, if any. `leader` is never removed or demoted.
pub fn plan(leader: MachineId, members: &[Member], now_ms: u64, grace_ms: u64) -> Option<Change> {
    let dead: BTreeSet<MachineId> = members
        .iter()
        .filter(|m| m.id != leader && m.health == Health::Dead)
        .map(|m| m.id)
        .collect();
    if !dead.is_empty() {
        return Some(Change::Remove(dead));
    }

    let healthy = members
        .iter()
        .filter(|m| matches!(m.health, Health::Healthy { .. }))
        .count();
    let target = target_voters(healthy);
    let expired = |m: &Member| match m.health {
        Health::Unhealthy { since_ms } => {
            m.id != leader && now_ms.saturating_sub(since_ms) >= grace_ms
        }
        _ => false,
    };
    let current: BTreeSet<MachineId> = members.iter().filter(|m| m.voter).map(|m| m.id).collect();
    let mut candidates = members
        .iter()
        .filter(|m| !m.voter && m.health == Health::Healthy { caught_up: true })
        .map(|m| m.id);

    let mut voters: BTreeSet<MachineId> = current.clone();
    // Replace expired voters while healthy learners remain.
    for voter in members.iter().filter(|m| m.voter && expired(m)) {
        match candidates.next() {
            Some(learner) => {
                voters.remove(&voter.id);
                voters.insert(learner);
            }
            None => break,
        }
    }
    // Grow towards the target.
    while voters.len() < target {
        match candidates.next() {
            Some(learner) => {
                voters.insert(learner);
            }
            None => break,
        }
    }
    (voters != current).then_some(Change::SetVoters(voters))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEALTHY: Health = Health::Healthy { caught_up: true };

    fn id(n: u64) -> MachineId {
        MachineId(n)
    }

    fn member(n: u64, voter: bool, health: Health) -> Member {
        Member {
            id: id(n),
            voter,
            health,
        }
    }

    fn set(ids: &[u64]) -> BTreeSet<MachineId> {
        ids.iter().copied().map(MachineId).collect()
    }

    #[test]
    fn grows_to_three_voters() {
        let members = [
            member(1, true, HEALTHY),
            member(2, false, HEALTHY),
            member(3, false, HEALTHY),
            member(4, false, HEALTHY),
        ];
        assert_eq!(
            plan(id(1), &members, 0, 1000),
            Some(Change::SetVoters(set(&[1, 2, 3])))
        );
    }

    #[test]
    fn grows_to_five_voters_with_five_healthy() {
        let members: Vec<_> = (1..=5).map(|n| member(n, n <= 3, HEALTHY)).collect();
        assert_eq!(
            plan(id(1), &members, 0, 1000),
            Some(Change::SetVoters(set(&[1, 2, 3, 4, 5])))
        );
    }

    #[test]
    fn stable_when_at_target() {
        let members: Vec<_> = (1..=4).map(|n| member(n, n <= 3, HEALTHY)).collect();
        assert_eq!(plan(id(1), &members, 0, 1000), None);
    }

    #[test]
    fn lagging_learners_are_not_promoted() {
        let members = [
            member(1, true, HEALTHY),
            member(2, false, Health::Healthy { caught_up: false }),
        ];
        assert_eq!(plan(id(1), &members, 0, 1000), None);
    }

    #[test]
    fn replaces_a_voter_down_past_the_grace_period() {
        let down = Health::Unhealthy { since_ms: 1_000 };
        let members = [
            member(1, true, HEALTHY),
            member(2, true, down),
            member(3, true, HEALTHY),
            member(4, false, HEALTHY),
        ];
        assert_eq!(
            plan(id(1), &members, 1_500, 1_000),
            None,
            "still within grace"
        );
        assert_eq!(
            plan(id(1), &members, 2_000, 1_000),
            Some(Change::SetVoters(set(&[1, 3, 4])))
        );
    }

    #[test]
    fn keeps_a_down_voter_without_a_replacement() {
        let down = Health::Unhealthy { since_ms: 0 };
        let members = [
            member(1, true, HEALTHY),
            member(2, true, down),
            member(3, true, HEALTHY),
        ];
        assert_eq!(plan(id(1), &members, 10_000, 1_000), None);
    }

    #[test]
    fn removes_dead_members_but_never_the_leader() {
        let members = [
            member(1, true, Health::Dead),
            member(2, true, HEALTHY),
            member(3, false, Health::Dead),
        ];
        assert_eq!(
            plan(id(1), &members, 0, 1000),
            Some(Change::Remove(set(&[3])))
        );
    }
}
