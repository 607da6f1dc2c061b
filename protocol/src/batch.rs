//! Batch operations on selected machines (`POST /v1/batch/{action}`, with the same machine
//! selection as a drain): what each machine did.

use serde::{Deserialize, Serialize};

use crate::MachineId;

/// What a batch does on each machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BatchAction {
    /// Restart the sessions running there in place (`docker restart`).
    Restart,
    /// Refresh the images of the templates' current versions: whether each is present there
    /// (and matches its pinned id). Nothing is pulled.
    Update,
    /// Check what runs there against the policies that select the machine now.
    ApplyConfig,
}

impl BatchAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchAction::Restart => "restart",
            BatchAction::Update => "update",
            BatchAction::ApplyConfig => "apply-config",
        }
    }
}

impl std::str::FromStr for BatchAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            BatchAction::Restart,
            BatchAction::Update,
            BatchAction::ApplyConfig,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
        .ok_or_else(|| format!("unknown batch {s:?}: use restart, update or apply-config"))
    }
}

/// What one machine did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MachineOutcome {
    pub machine: MachineId,
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// `POST /v1/batch/{action}`: each selected machine's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchReport {
    pub action: BatchAction,
    pub machines: Vec<MachineOutcome>,
}
