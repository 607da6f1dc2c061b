//! Every type that crosses a wire or lands on disk in a Shoal fleet.
//!
//! This crate has no I/O: serde derives, small constructors and validation only.
//! Binary frames carry a version byte ([`frame`]); JSON bodies are the admin API.

pub mod api;
pub mod audit;
pub mod authors;
pub mod batch;
pub mod command;
pub mod cost_ledger;
pub mod costs;
pub mod events;
pub mod frame;
pub mod gossip_keys;
pub mod gpus;
pub mod ids;
pub mod image_ref;
pub mod indexes;
pub mod job;
pub mod job_request;
pub mod job_spec;
pub mod job_view;
pub mod keys;
pub mod labels;
pub mod levels;
pub mod log_command;
pub mod machine;
pub mod operate;
pub mod params;
pub mod policies;
pub mod registries;
pub mod requests;
pub mod running_spend;
pub mod sessions;
pub mod settings;
pub mod templates;
pub mod tokens;

pub use api::{ApiError, ErrorCode, JobList, SubmitJobResponse};
pub use command::{Command, FleetState, KillSwitch, Response};
pub use gpus::Gpu;
pub use ids::MachineId;
pub use job::{
    Attempt, JobId, JobKind, JobRecord, JobReport, JobSpec, JobState, JobTarget, Placement,
    PullPolicy,
};
pub use job_request::JobRequest;
pub use job_view::{AttemptView, JobView};
pub use labels::{LabelError, Labels};
pub use levels::{PROTOCOL_LEVEL, ProtocolLevel};
pub use log_command::{Decoded, LogCommand};
pub use machine::{
    Announcement, Check, Drain, MachineInfo, MachineRecord, MachineStatus, MemberAddr, Resources,
};

/// Milliseconds since the Unix epoch, the one time unit on the wire and on disk.
pub type UnixMillis = u64;

/// The wall clock now, in [`UnixMillis`] (0 for a clock before 1970).
pub fn now_ms() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as UnixMillis)
}
