//! Applying the gossip key commands (see `shoal_protocol::gossip_keys`): a request marks a
//! rotation due, the leader's rotation adds the next sealed generation, and from protocol
//! level 7 a removal marks one due until the removed machine has left Raft.

use shoal_protocol::gossip_keys::SealedGossipKey;
use shoal_protocol::levels::GOSSIP_KEYRING_LEVEL;
use shoal_protocol::{ErrorCode, FleetState, MachineId, Response};

/// An admin asked for a new key.
pub(crate) fn request_rotation(state: &mut FleetState) -> Response {
    state.gossip_keys.request_rotation();
    Response::Done
}

/// The leader's next generation; a stale, skipped or misshapen one changes nothing.
pub(crate) fn rotate(state: &mut FleetState, generation: u32, sealed_key: Vec<u8>) -> Response {
    let key = SealedGossipKey {
        generation,
        sealed_key,
    };
    if let Some(message) = state.gossip_keys.refuse_next(&key) {
        return Response::Rejected {
            code: ErrorCode::Conflict,
            message,
        };
    }
    state.gossip_keys.push(key);
    Response::Done
}

/// A machine was removed: in a fleet at [`GOSSIP_KEYRING_LEVEL`], the key it held goes.
pub(crate) fn removed(state: &mut FleetState, machine: MachineId) {
    if state.fleet_level >= GOSSIP_KEYRING_LEVEL {
        state.gossip_keys.rotate_after_removal(machine);
    }
}

#[cfg(test)]
mod tests {
    use shoal_protocol::gossip_keys::SEALED_KEY_LEN;
    use shoal_protocol::{Command, MachineInfo, ProtocolLevel};

    use crate::{ApplyCtx, apply};

    use super::*;

    fn run(state: &mut FleetState, cmd: Command) -> Response {
        apply(state, cmd, &ApplyCtx { log_index: 1 })
    }

    fn rotate_to(generation: u32) -> Command {
        Command::RotateGossipKey {
            generation,
            sealed_key: vec![9; SEALED_KEY_LEN],
        }
    }

    fn with_machine(level: ProtocolLevel, id: MachineId) -> FleetState {
        let mut state = FleetState {
            fleet_level: level,
            ..FleetState::default()
        };
        let info = Box::new(MachineInfo {
            id,
            ..MachineInfo::default()
        });
        run(&mut state, Command::UpsertMachine { info, at_ms: 1 });
        state
    }

    #[test]
    fn a_request_is_due_until_the_next_generation_is_added() {
        let mut state = FleetState::default();
        assert_eq!(
            run(&mut state, Command::RequestGossipKeyRotation),
            Response::Done
        );
        assert!(state.gossip_keys.rotation_due);
        assert_eq!(run(&mut state, rotate_to(1)), Response::Done);
        assert_eq!(state.gossip_keys.generation(), 1);
        assert!(!state.gossip_keys.rotation_due);
    }

    #[test]
    fn a_stale_or_misshapen_rotation_changes_nothing() {
        let mut state = FleetState::default();
        run(&mut state, rotate_to(1));
        let before = state.clone();
        let short = Command::RotateGossipKey {
            generation: 2,
            sealed_key: vec![9; 3],
        };
        for wrong in [rotate_to(1), rotate_to(3), short] {
            assert!(
                matches!(run(&mut state, wrong), Response::Rejected { .. }),
                "accepted"
            );
            assert_eq!(state, before);
        }
    }

    #[test]
    fn a_removal_rotates_only_at_level_seven() {
        let id = MachineId(5);
        let mut old = with_machine(ProtocolLevel(6), id);
        run(&mut old, Command::RetireMachine { id });
        assert!(!old.gossip_keys.rotation_due);

        let mut state = with_machine(GOSSIP_KEYRING_LEVEL, id);
        run(&mut state, Command::RetireMachine { id });
        assert!(state.gossip_keys.rotation_due);
        assert!(state.gossip_keys.awaiting_removal.contains(&id));
        // An unknown machine's removal is refused and rotates nothing.
        let mut state = with_machine(GOSSIP_KEYRING_LEVEL, id);
        let refused = run(&mut state, Command::RetireMachine { id: MachineId(6) });
        assert!(matches!(refused, Response::Rejected { .. }));
        assert!(!state.gossip_keys.rotation_due);
    }
}
