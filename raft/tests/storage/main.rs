//! The stores on a real disk: openraft's storage suite, reopening a data directory, and a
//! one-node Raft that commits, snapshots and restarts.

mod node;
mod reopen;
mod suite;

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use shoal_protocol::{Command, MachineId, MachineInfo};
use shoal_raft::TypeConfig;

/// A command that registers machine `id` under `name`.
pub fn upsert(id: u64, name: &str, at_ms: u64) -> Command {
    Command::UpsertMachine {
        info: Box::new(MachineInfo {
            id: MachineId(id),
            name: name.to_string(),
            ..MachineInfo::default()
        }),
        at_ms,
    }
}

/// A normal log entry at `index` in term 1, led by machine 1.
pub fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(cmd.into()),
    }
}

pub fn log_id(index: u64) -> LogId<MachineId> {
    LogId::new(CommittedLeaderId::new(1, MachineId(1)), index)
}
