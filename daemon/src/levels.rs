//! Mixed-version fleets: the leader's choice of the fleet's protocol level, and the check
//! every write passes on the leader before it is proposed (see `shoal_protocol::levels` for
//! the level table).
//!
//! ```text
//!  members' levels (gossip, else the log) ─▶ level_to_commit ─▶ SetFleetLevel (reconcile)
//!  write on the leader ─▶ check(cmd.min_level() vs fleet level) ─▶ proposer ─▶ Raft
//!                                └─ above it: 409 naming the machines to upgrade
//! ```
//!
//! A machine that speaks less than the fleet's level and is not a member yet is refused:
//! the leader neither records it nor adds it to Raft (it would replay entries it cannot
//! read), warns once naming the level it needs, and `GET /v1/cluster` lists it under
//! `refused`. Nomad refuses such servers, and etcd refuses a member below the cluster
//! version once that was raised. A member that is downgraded below the fleet's level
//! cannot be refused (it already holds the log): it stops at the first entry it cannot
//! read, loudly, and the leader warns naming it; upgrading it again lets it go on. A
//! machine joining with a registration token uses the token up before it gossips its
//! level (the join request carries none: a field added to it would not reach an older
//! member), so its refusal comes when the leader would record it.

use std::collections::BTreeSet;

use shoal_gossip::PeerView;
use shoal_protocol::{
    ApiError, Command, ErrorCode, MachineId, MachineInfo, MachineRecord, ProtocolLevel,
};

use crate::node::{Node, members};

/// One machine as the level rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineLevel {
    pub id: MachineId,
    pub name: String,
    pub version: String,
    pub level: ProtocolLevel,
}

impl MachineLevel {
    /// What a machine published about itself.
    pub fn of(info: &MachineInfo) -> MachineLevel {
        MachineLevel {
            id: info.id,
            name: info.name.clone(),
            version: info.version.clone(),
            level: info.protocol_level,
        }
    }

    /// A member nothing is known of yet: it counts as level 1 until it says more.
    fn unknown(id: MachineId) -> MachineLevel {
        MachineLevel {
            id,
            name: id.to_string(),
            version: "unknown version".to_string(),
            level: ProtocolLevel::FIRST,
        }
    }
}

/// The lowest level among `members`, or `None` without members.
pub fn lowest(members: &[MachineLevel]) -> Option<ProtocolLevel> {
    members.iter().map(|m| m.level).min()
}

/// The level the leader commits next: the lowest level among the members, when every
/// member speaks more than the fleet's level `committed`. Never lower than `committed`.
pub fn level_to_commit(
    committed: ProtocolLevel,
    members: &[MachineLevel],
) -> Option<ProtocolLevel> {
    lowest(members).filter(|level| *level > committed)
}

/// The members that speak less than the highest level any member speaks: they hold the
/// fleet's level down.
pub fn held_back_by(members: &[MachineLevel]) -> Vec<MachineId> {
    let highest = members.iter().map(|m| m.level).max();
    members
        .iter()
        .filter(|m| Some(m.level) < highest)
        .map(|m| m.id)
        .collect()
}

/// Whether the leader takes in a machine that is not a member yet: only one that speaks
/// at least the fleet's level.
pub fn admits(fleet_level: ProtocolLevel, newcomer: ProtocolLevel) -> bool {
    newcomer >= fleet_level
}

/// Whether the leader may propose `cmd` with the fleet at `fleet_level`. A command above
/// it is refused with the members to upgrade (409), or, when every member already speaks
/// it and only the raise is pending, with a retry (503). `SetFleetLevel` is judged by the
/// members' levels, the one thing that lets the level rise.
///
/// The members are asked for only when the fleet's level does not settle it.
pub fn check(
    cmd: &Command,
    fleet_level: ProtocolLevel,
    members: impl FnOnce() -> Vec<MachineLevel>,
) -> Result<(), ApiError> {
    let raise = match cmd {
        Command::SetFleetLevel { level } => Some(*level),
        _ => None,
    };
    let needed = cmd.min_level().max(raise.unwrap_or(ProtocolLevel::FIRST));
    if raise.is_none() && needed <= fleet_level {
        return Ok(());
    }
    let members = members();
    let allowed = match raise {
        Some(_) => lowest(&members).unwrap_or(ProtocolLevel::FIRST),
        None => fleet_level,
    };
    if needed <= allowed {
        return Ok(());
    }
    let behind: Vec<String> = members
        .iter()
        .filter(|m| m.level < needed)
        .map(|m| format!("{} ({}, level {})", m.name, m.version, m.level))
        .collect();
    if behind.is_empty() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "needs protocol level {needed}; every member speaks it and the leader raises \
                 the fleet from level {fleet_level} within a moment: retry"
            ),
        ));
    }
    Err(ApiError::new(
        ErrorCode::Conflict,
        format!(
            "needs protocol level {needed} (the fleet is at level {fleet_level}); upgrade {}",
            behind.join(", ")
        ),
    ))
}

/// Each Raft member (voters and learners) with its level: from its gossip if this node
/// hears it, else from its record in the log, else unknown (level 1).
pub fn member_levels(node: &Node) -> Vec<MachineLevel> {
    let ids: Vec<MachineId> = members(&node.raft).into_keys().collect();
    let peers = node.peers.borrow().clone();
    let own = node.info.borrow().clone();
    node.fleet.read(|state| {
        ids.iter()
            .map(|id| {
                let heard = peers.iter().find(|p| p.info.id == *id).map(|p| &p.info);
                let heard = heard.or((*id == own.id).then_some(&own));
                let recorded = state.machines.get(id).map(|r: &MachineRecord| &r.info);
                heard
                    .or(recorded)
                    .map_or_else(|| MachineLevel::unknown(*id), MachineLevel::of)
            })
            .collect()
    })
}

/// On any node, before a write goes to the leader: a command above the fleet's level as
/// this replica knows it (checked again after a read barrier, so a level just raised
/// counts) is refused here with the leader's answer. So it never reaches a leader on an
/// older build, which could not even read it. `SetFleetLevel` is the leader's own.
pub async fn check_before_forwarding(node: &Node, cmd: &Command) -> Result<(), ApiError> {
    let needed = cmd.min_level();
    let allowed = || needed <= node.fleet.read(|state| state.fleet_level);
    if needed == ProtocolLevel::FIRST || matches!(cmd, Command::SetFleetLevel { .. }) || allowed() {
        return Ok(());
    }
    node.read_barrier().await?;
    let fleet_level = node.fleet.read(|state| state.fleet_level);
    check(cmd, fleet_level, || member_levels(node))
}

/// On the leader, refuses a write the fleet's level does not allow yet. Elsewhere it lets
/// the write through: the proposer answers `NoLeader` and the sender asks the leader.
pub fn check_write(node: &Node, cmd: &Command) -> Result<(), ApiError> {
    if cmd.min_level() == ProtocolLevel::FIRST || node.leader() != Some(node.id) {
        return Ok(());
    }
    let fleet_level = node.fleet.read(|state| state.fleet_level);
    check(cmd, fleet_level, || member_levels(node))
}

/// On the leader: commits a higher fleet level once every member speaks it.
pub async fn raise_when_ready(node: &Node) -> Result<(), ApiError> {
    let committed = node.fleet.read(|state| state.fleet_level);
    let levels = member_levels(node);
    let Some(level) = level_to_commit(committed, &levels) else {
        return Ok(());
    };
    node.write(Command::SetFleetLevel { level }).await?;
    tracing::info!(from = %committed, to = %level, members = levels.len(), "fleet protocol level raised");
    Ok(())
}

/// Machines gossiping with the fleet that speak less than its level: the ones the leader
/// refuses to take in (not members), and members that were downgraded.
pub fn below_fleet_level(
    peers: &[PeerView],
    fleet_level: ProtocolLevel,
) -> impl Iterator<Item = &PeerView> {
    peers
        .iter()
        .filter(move |peer| peer.live && !admits(fleet_level, peer.info.protocol_level))
}

/// Warns once per machine (per term of leading, `warned` remembers) about each machine
/// below the fleet's level.
pub fn warn_below(
    peers: &[PeerView],
    members: &BTreeSet<MachineId>,
    fleet_level: ProtocolLevel,
    warned: &mut BTreeSet<MachineId>,
) {
    for peer in below_fleet_level(peers, fleet_level) {
        let info = &peer.info;
        if !warned.insert(info.id) {
            continue;
        }
        if members.contains(&info.id) {
            tracing::warn!(machine_id = %info.id, name = %info.name, version = %info.version,
                level = %info.protocol_level, fleet_level = %fleet_level,
                "a member speaks less than the fleet's protocol level and cannot read the log past it: upgrade it");
        } else {
            tracing::warn!(machine_id = %info.id, name = %info.name, version = %info.version,
                level = %info.protocol_level, fleet_level = %fleet_level,
                "refusing a machine below the fleet's protocol level: upgrade it to a build that speaks the fleet's level");
        }
    }
}

#[cfg(test)]
mod tests {
    use shoal_protocol::settings::FleetSettings;

    use super::*;

    fn machine(id: u64, level: u16) -> MachineLevel {
        MachineLevel {
            id: MachineId(id),
            name: format!("dev-{id}"),
            version: "0.1.0".into(),
            level: ProtocolLevel(level),
        }
    }

    fn settings() -> Command {
        Command::Audited {
            actor: "k1".into(),
            org: "default".into(),
            at_ms: 1,
            command: Box::new(Command::SetFleetSettings {
                settings: FleetSettings::default(),
            }),
        }
    }

    const ONE: ProtocolLevel = ProtocolLevel(1);
    const TWO: ProtocolLevel = ProtocolLevel(2);

    #[test]
    fn the_leader_commits_the_lowest_member_level_once_it_rises() {
        let mixed = [machine(1, 2), machine(2, 1), machine(3, 2)];
        assert_eq!(level_to_commit(ONE, &mixed), None);
        let upgraded = [machine(1, 2), machine(2, 2), machine(3, 2)];
        assert_eq!(level_to_commit(ONE, &upgraded), Some(TWO));
        assert_eq!(level_to_commit(TWO, &upgraded), None);
        let ahead = [machine(1, 3), machine(2, 2)];
        assert_eq!(level_to_commit(ONE, &ahead), Some(TWO));
    }

    #[test]
    fn the_level_never_goes_down_and_needs_members() {
        // A member downgraded after the raise does not lower the level.
        let downgraded = [machine(1, 2), machine(2, 1)];
        assert_eq!(level_to_commit(TWO, &downgraded), None);
        assert_eq!(level_to_commit(ONE, &[]), None);
    }

    #[test]
    fn held_back_names_the_members_below_the_others() {
        let mixed = [machine(1, 2), machine(2, 1), machine(3, 2)];
        assert_eq!(held_back_by(&mixed), [MachineId(2)]);
        assert!(held_back_by(&[machine(1, 2), machine(2, 2)]).is_empty());
    }

    #[test]
    fn a_write_above_the_fleet_level_names_the_machines_to_upgrade() {
        let mixed = [machine(1, 2), machine(2, 1), machine(3, 2)];
        let err = check(&settings(), ONE, || mixed.to_vec()).unwrap_err();
        assert_eq!(err.code, ErrorCode::Conflict);
        assert_eq!(
            err.message,
            "needs protocol level 2 (the fleet is at level 1); upgrade dev-2 (0.1.0, level 1)"
        );
        let cancel = Command::CancelJob {
            job: shoal_protocol::JobId(1),
            at_ms: 1,
        };
        assert_eq!(check(&cancel, ONE, || mixed.to_vec()), Ok(()));
        assert_eq!(check(&settings(), TWO, || mixed.to_vec()), Ok(()));
    }

    #[test]
    fn a_write_waiting_only_for_the_raise_is_retried() {
        let upgraded = [machine(1, 2), machine(2, 2)];
        let err = check(&settings(), ONE, || upgraded.to_vec()).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable, "{}", err.message);
    }

    #[test]
    fn raising_the_level_needs_every_member_to_speak_it() {
        let raise = Command::SetFleetLevel { level: TWO };
        let mixed = [machine(1, 2), machine(2, 1)];
        let err = check(&raise, ONE, || mixed.to_vec()).unwrap_err();
        assert!(err.message.contains("upgrade dev-2"), "{}", err.message);
        assert_eq!(
            check(&raise, ONE, || vec![machine(1, 2), machine(2, 2)]),
            Ok(())
        );
        let too_far = Command::SetFleetLevel {
            level: ProtocolLevel(3),
        };
        assert!(check(&too_far, ONE, || vec![machine(1, 2), machine(2, 2)]).is_err());
    }

    #[test]
    fn newcomers_below_the_fleet_level_are_refused() {
        assert!(admits(ONE, ONE));
        assert!(admits(ONE, TWO));
        assert!(admits(TWO, TWO));
        assert!(!admits(TWO, ONE));
    }
}
