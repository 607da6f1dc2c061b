//! Applying the fleet-wide knobs the leader and admins commit: the fleet's protocol level
//! and its settings. Neither refuses by anyone's level; every replica applies alike.

use shoal_protocol::levels::TEMPLATE_ORGS_LEVEL;
use shoal_protocol::settings::FleetSettings;
use shoal_protocol::{ErrorCode, FleetState, ProtocolLevel, Response};

/// Raises the fleet's level; the same level again changes nothing, a lower one is refused.
/// Reaching [`TEMPLATE_ORGS_LEVEL`] gives each fleet-wide template to its maker's org.
pub(crate) fn set_level(state: &mut FleetState, level: ProtocolLevel) -> Response {
    if level < state.fleet_level {
        return Response::Rejected {
            code: ErrorCode::Conflict,
            message: format!(
                "the fleet is at protocol level {}; its level never goes down (asked for {level})",
                state.fleet_level
            ),
        };
    }
    let crossing = |at| state.fleet_level < at && level >= at;
    if crossing(TEMPLATE_ORGS_LEVEL) {
        crate::templates::adopt_unowned(state);
    }
    state.fleet_level = level;
    Response::Done
}

/// Replaces the fleet's settings when every one is in range.
pub(crate) fn set_settings(state: &mut FleetState, settings: FleetSettings) -> Response {
    match settings.validate() {
        Ok(()) => {
            state.settings = settings;
            Response::Done
        }
        Err(message) => Response::Rejected {
            code: ErrorCode::BadRequest,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use shoal_protocol::Command;

    use crate::{ApplyCtx, apply};

    use super::*;

    fn run(state: &mut FleetState, cmd: Command) -> Response {
        apply(state, cmd, &ApplyCtx { log_index: 1 })
    }

    #[test]
    fn the_level_starts_at_one_and_only_goes_up() {
        let mut state = FleetState::default();
        assert_eq!(state.fleet_level, ProtocolLevel(1));
        let to = |level| Command::SetFleetLevel {
            level: ProtocolLevel(level),
        };
        assert_eq!(run(&mut state, to(2)), Response::Done);
        assert_eq!(run(&mut state, to(2)), Response::Done);
        let refused = run(&mut state, to(1));
        assert!(
            matches!(&refused, Response::Rejected { code: ErrorCode::Conflict, message } if message.contains("never goes down")),
            "{refused:?}"
        );
        assert_eq!(state.fleet_level, ProtocolLevel(2));
    }

    #[test]
    fn settings_out_of_range_change_nothing_and_are_audited() {
        let mut state = FleetState::default();
        let set = |seconds| Command::Audited {
            actor: "k1".into(),
            org: "default".into(),
            at_ms: 5,
            command: Box::new(Command::SetFleetSettings {
                settings: FleetSettings {
                    job_retention_seconds: Some(seconds),
                },
            }),
        };
        assert_eq!(run(&mut state, set(7200)), Response::Done);
        assert_eq!(state.settings.job_retention_seconds, Some(7200));
        let refused = run(&mut state, set(1));
        assert!(matches!(
            refused,
            Response::Rejected {
                code: ErrorCode::BadRequest,
                ..
            }
        ));
        assert_eq!(state.settings.job_retention_seconds, Some(7200));
        let actions: Vec<(&str, &str, &str)> = state
            .audit
            .iter()
            .map(|e| (e.action.as_str(), e.target.as_str(), &e.outcome[..2]))
            .collect();
        assert_eq!(
            actions,
            [
                ("set_fleet_settings", "fleet", "ok"),
                ("set_fleet_settings", "fleet", "re")
            ]
        );
    }
}
