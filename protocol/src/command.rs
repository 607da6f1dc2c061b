//! The fleet state machine's input ([`Command`]), output ([`Response`]) and state ([`FleetState`]).
//!
//! Commands carry every time they need: applying one never reads a clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ErrorCode, Labels, MachineId, MachineInfo, MachineRecord, MachineStatus, UnixMillis};

/// A write to the fleet state, proposed to the leader and applied on every replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Adds a machine, or refreshes what it published (addresses, own labels, version).
    /// A new machine starts as REGISTERING; the leader's status loop moves it on.
    UpsertMachine {
        info: Box<MachineInfo>,
        at_ms: UnixMillis,
    },
    /// The leader saw the machine's status change.
    SetStatus {
        id: MachineId,
        status: MachineStatus,
        last_heartbeat_ms: UnixMillis,
        at_ms: UnixMillis,
    },
    /// An operator sets or removes labels on a machine.
    LabelMachine {
        id: MachineId,
        set: Labels,
        remove: Vec<String>,
    },
    /// Forgets a machine.
    RemoveMachine { id: MachineId },
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Applied, with nothing to return.
    Done,
    /// Applied; the machine as it now stands.
    Machine(Box<MachineRecord>),
    /// Refused; nothing changed.
    Rejected { code: ErrorCode, message: String },
}

/// Everything the fleet agrees on. Snapshots serialize it whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    pub machines: BTreeMap<MachineId, MachineRecord>,
}
