//! Executors: run what the leader dispatched to this machine, as a plain process or a
//! Docker container, and report how it ended.
//!
//! ```text
//!  node ──Executor::start(RunSpec)──▶ ProcessExecutor │ DockerExecutor │ FakeExecutor
//!    │                                        │ spawns one supervisor task per run,
//!    │                                        │ which owns the child or the container
//!    ▼                                        ▼
//!  RunHandle ◀── channels (handle.rs) ──▶ RunControl
//!   wait() -> Outcome       cancel(grace)       output(): bounded, followable (output.rs)
//! ```
//!
//! - [`process`]: a child process in its own process group, environment cleared to
//!   `PATH` plus the spec's variables. A node runs process jobs only when its config
//!   enables them (they run as the daemon's user, without isolation or limits).
//! - [`docker`]: one container per attempt, with CPU and memory limits, labelled so a
//!   restarted daemon can [`DockerExecutor::adopt`] what it left running; its image is
//!   pulled first when the run's pull policy says so ([`pull`]).
//! - [`fake`]: an in-memory executor for unit tests of the code that dispatches runs.

mod adopt;
pub mod confine;
pub mod docker;
pub mod fake;
mod handle;
pub mod output;
pub mod process;
pub mod pull;
mod recreate;
pub mod run_as;
mod session_exec;

use std::collections::BTreeMap;
use std::time::Duration;

pub use docker::{Adopted, DockerConfig, DockerExecutor};
pub use fake::FakeExecutor;
pub use handle::{Restart, RunControl, RunHandle, run_channel};
pub use output::{Chunk, DEFAULT_OUTPUT_LIMIT, Follower, Output, OutputSnapshot, Stream};
pub use process::{ProcessConfig, ProcessExecutor};

/// Grace between SIGTERM and SIGKILL when a run hits its own timeout.
pub const DEFAULT_TIMEOUT_GRACE: Duration = Duration::from_secs(10);

/// One attempt of one job, as this machine should run it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSpec {
    pub job: u64,
    pub attempt: u32,
    /// Program and arguments. For a container, empty means the image's own command.
    pub command: Vec<String>,
    /// `Some` runs in a container of this image (pulled as [`Self::pull`] says); `None`
    /// runs a plain process.
    pub image: Option<String>,
    /// The image id the local image must have (a container is refused otherwise).
    pub image_digest: Option<String>,
    pub env: BTreeMap<String, String>,
    /// CPU cores; containers only.
    pub cpu_limit: Option<f64>,
    /// Memory in bytes; containers only.
    pub memory_limit: Option<u64>,
    /// Wall-clock limit from the start; the run is then stopped and ends [`Outcome::TimedOut`].
    pub timeout: Option<Duration>,
    /// The Docker network the container joins (`none`, `bridge`, `host`); the engine's
    /// default when `None`. Containers only.
    pub network_mode: Option<String>,
    /// How policies changed the machine's default confinement. Containers only.
    pub confinement: confine::Confinement,
    /// The user the container runs as; the image's `USER` when `None`. Containers only.
    pub user: Option<String>,
    /// When the image is pulled from its registry. Containers only.
    pub pull: shoal_protocol::PullPolicy,
    /// What the pull logs in to the image's registry with, if the fleet holds credentials
    /// for it.
    pub pull_auth: Option<pull::PullAuth>,
    /// The GPU indices handed to the container (`docker run --gpus`); none when empty.
    /// Containers only.
    pub gpus: Vec<u32>,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It exited by itself. A process killed by a signal reports 128 + the signal number,
    /// as a shell does.
    Exited { exit_code: i32 },
    /// The executor lost track of it (e.g. the Docker engine stopped answering).
    Failed { error: String },
    /// It ran past [`RunSpec::timeout`] and was stopped.
    TimedOut,
    /// [`RunHandle::cancel`] stopped it.
    Cancelled,
}

/// Why a run could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("invalid run spec: {0}")]
    InvalidSpec(String),
    #[error("starting {program:?}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("docker is not available: {0}")]
    DockerUnavailable(String),
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("{0}")]
    TimedOut(String),
    /// The image is not on the machine and the run's pull policy is `never`.
    #[error("image {image} is not on this machine and pull is never")]
    ImageAbsent { image: String },
    /// Pulling the image failed; `kind` is `unauthorized`, `not found` or `unreachable`
    /// when the engine's words say which.
    #[error(
        "pulling image {image} from registry {registry} failed{}: {reason}",
        .kind.map(|kind| format!(" ({kind})")).unwrap_or_default()
    )]
    Pull {
        registry: String,
        image: String,
        kind: Option<&'static str>,
        reason: String,
    },
    /// The start was given up before anything ran (the attempt was cancelled while its
    /// image was pulled); says why.
    #[error("{0}")]
    GivenUp(String),
}

/// Starts runs. Object safe, so the node can hold `Arc<dyn Executor>`.
#[async_trait::async_trait]
pub trait Executor: Send + Sync {
    /// Starts `spec` and returns at once with its handle; errors only when it could not
    /// start at all (bad spec, missing program or image, no Docker).
    async fn start(&self, spec: RunSpec) -> Result<RunHandle, ExecError>;
}

// The trait stays object safe.
const _: Option<&dyn Executor> = None;
