//! Bodies of the operator endpoints that steer the whole fleet: drain and the kill switch.

use serde::{Deserialize, Serialize};

use crate::{KillSwitch, Labels, MachineId, UnixMillis};

/// `POST /v1/drain` and `POST /v1/undrain`: which machines. `machines` (ids or names)
/// narrows to those, `selector` to machines carrying every label, `idle_only` to machines
/// running nothing; with none of them, nothing is selected (say `"all": true` for all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    #[serde(default)]
    pub machines: Vec<String>,
    #[serde(default)]
    pub selector: Labels,
    #[serde(default)]
    pub idle_only: bool,
    #[serde(default)]
    pub all: bool,
    /// Drain only: after this long, work still on the machines is taken back and runs
    /// elsewhere. Without it, running work finishes where it is.
    #[serde(default)]
    pub deadline_seconds: Option<u64>,
}

/// The machines a drain or undrain selected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrainResponse {
    pub machines: Vec<MachineId>,
    /// Those of `machines` that already were as asked (draining for a drain, not draining
    /// for an undrain), so the request changed nothing on them.
    #[serde(default)]
    pub unchanged: Vec<MachineId>,
}

/// `PUT /v1/killswitch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KillSwitchRequest {
    pub on: bool,
    /// Why; required to turn it on.
    #[serde(default)]
    pub reason: Option<String>,
    /// Who; defaults to the id of the API key that asks.
    #[serde(default)]
    pub actor: Option<String>,
    /// With `on`: also stop every job running now (it ends cancelled). Queued jobs wait.
    #[serde(default)]
    pub terminate: bool,
}

/// The kill switch while it is on, as the fleet summary answers it
/// (`KillSwitchView::from`, the one conversion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KillSwitchView {
    pub reason: String,
    /// Who turned it on.
    pub actor: String,
    pub since_ms: UnixMillis,
}

impl From<&KillSwitch> for KillSwitchView {
    fn from(switch: &KillSwitch) -> Self {
        let KillSwitch {
            reason,
            actor,
            since_ms,
        } = switch;
        KillSwitchView {
            reason: reason.clone(),
            actor: actor.clone(),
            since_ms: *since_ms,
        }
    }
}

/// `GET /v1/killswitch`: on (with who, why and since when) or off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KillSwitchState {
    pub on: bool,
    /// Why it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who turned it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Since when it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<UnixMillis>,
}

impl KillSwitchState {
    pub fn new(switch: Option<KillSwitch>) -> Self {
        match switch {
            Some(switch) => KillSwitchState {
                on: true,
                reason: Some(switch.reason),
                actor: Some(switch.actor),
                since_ms: Some(switch.since_ms),
            },
            None => KillSwitchState {
                on: false,
                reason: None,
                actor: None,
                since_ms: None,
            },
        }
    }

    /// The switch, when it is on.
    pub fn switch(&self) -> Option<KillSwitch> {
        Some(KillSwitch {
            reason: self.reason.clone()?,
            actor: self.actor.clone()?,
            since_ms: self.since_ms?,
        })
        .filter(|_| self.on)
    }
}
