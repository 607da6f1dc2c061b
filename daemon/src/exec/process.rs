//! Plain process runs: the command as a child of the daemon, in a process group of its
//! own so that a cancel or a timeout signals the whole tree.
//!
//! ```text
//!  start ─▶ spawn (own group, env = PATH + spec.env, stdin null) ─▶ supervisor task
//!             │ stdout, stderr ─▶ reader tasks ─▶ OutputWriter
//!  supervisor: child exits ─────────────▶ Exited (128 + signal if killed)
//!              cancel(grace) ─▶ stop ───▶ Cancelled
//!              timeout ───────▶ stop ───▶ TimedOut
//!  stop: SIGTERM to the group; once the leader and every member are gone, or after the
//!        grace, SIGKILL to the group. Whatever is left of the group after the leader
//!        ends is killed too: a job's processes do not outlive it.
//! ```
//!
//! Process runs are off unless the node's config enables them. A run takes an
//! unprivileged user when shoald is root (`process_user`, default `nobody`) and a scratch
//! directory of its own as working directory, `HOME` and `TMPDIR` (see [`super::run_as`]),
//! so it reaches neither the data directory nor another run's files; it is otherwise not
//! isolated, and [`RunSpec::cpu_limit`] / [`RunSpec::memory_limit`] are not enforced.
//! The daemon's own environment is not passed on (it may hold the cluster secret).

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::output::{OutputWriter, Stream};
use super::run_as::{RunAs, make_scratch, scratch_root};
use super::{
    DEFAULT_OUTPUT_LIMIT, DEFAULT_TIMEOUT_GRACE, ExecError, Executor, Outcome, RunControl,
    RunHandle, RunSpec, run_channel,
};

/// `PATH` for a run whose spec does not set one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long output still in the pipes is read after the run ends, in case a process that
/// left the group holds them open.
const DRAIN: Duration = Duration::from_secs(2);

/// How often a stopping run checks whether its group is gone.
const POLL: Duration = Duration::from_millis(20);

/// Settings of the process executor.
#[derive(Clone, Debug)]
pub struct ProcessConfig {
    /// Bytes of output kept per run (the newest).
    pub output_limit: usize,
    /// Grace between SIGTERM and SIGKILL when a run times out.
    pub timeout_grace: Duration,
    /// The user runs take (`None`: shoald's own; see [`RunAs::resolve`]).
    pub run_as: Option<RunAs>,
    /// Where each run's scratch directory is made.
    pub scratch_root: PathBuf,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        Self {
            output_limit: DEFAULT_OUTPUT_LIMIT,
            timeout_grace: DEFAULT_TIMEOUT_GRACE,
            run_as: None,
            scratch_root: scratch_root(),
        }
    }
}

/// Runs [`RunSpec`]s without an image as child processes. Each run is supervised by its
/// own task, so dropping the executor does not affect runs already started.
#[derive(Clone, Debug, Default)]
pub struct ProcessExecutor {
    config: ProcessConfig,
}

impl ProcessExecutor {
    pub fn new(config: ProcessConfig) -> Self {
        Self { config }
    }
}

#[async_trait::async_trait]
impl Executor for ProcessExecutor {
    async fn start(&self, spec: RunSpec) -> Result<RunHandle, ExecError> {
        if spec.image.is_some() {
            return Err(ExecError::InvalidSpec(
                "a spec with an image runs in a container, not as a process".into(),
            ));
        }
        let Some((program, args)) = spec.command.split_first() else {
            return Err(ExecError::InvalidSpec("the command is empty".into()));
        };
        let run_as = self.config.run_as.as_ref();
        let scratch = make_scratch(&self.config.scratch_root, spec.job, spec.attempt, run_as)
            .map_err(|err| ExecError::InvalidSpec(format!("no scratch directory: {err:#}")))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("PATH", DEFAULT_PATH)
            .env("HOME", &scratch)
            .env("TMPDIR", &scratch)
            .envs(&spec.env)
            .current_dir(&scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(user) = run_as {
            // As root, std also drops every supplementary group before it switches.
            command.uid(user.uid).gid(user.gid);
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(source) => {
                remove_scratch(&scratch);
                return Err(ExecError::Spawn {
                    program: program.clone(),
                    source,
                });
            }
        };
        let pid = child.id().expect("a just-spawned child has a pid");
        // process_group(0) makes the child the leader of a group with its own pid.
        let group = Pid::from_raw(i32::try_from(pid).expect("pids fit in i32"));
        let (handle, control) = run_channel(spec.job, spec.attempt, self.config.output_limit);
        let readers = [
            child
                .stdout
                .take()
                .map(|out| tokio::spawn(pump(out, Stream::Stdout, control.output.clone()))),
            child
                .stderr
                .take()
                .map(|err| tokio::spawn(pump(err, Stream::Stderr, control.output.clone()))),
        ];
        tracing::info!(
            job = spec.job,
            attempt = spec.attempt,
            pid,
            "process run started"
        );
        let run = Supervised {
            job: spec.job,
            attempt: spec.attempt,
            child,
            group,
            timeout: spec.timeout,
            timeout_grace: self.config.timeout_grace,
            scratch,
        };
        tokio::spawn(run.supervise(control, readers.into_iter().flatten().collect()));
        Ok(handle)
    }
}

/// Copies one pipe into the output as data arrives.
async fn pump(mut pipe: impl AsyncRead + Unpin, stream: Stream, output: OutputWriter) {
    let mut buf = vec![0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => output.push(stream, &buf[..n]),
            Err(error) => {
                tracing::warn!(?stream, %error, "reading process output failed");
                break;
            }
        }
    }
}

struct Supervised {
    job: u64,
    attempt: u32,
    child: Child,
    group: Pid,
    timeout: Option<Duration>,
    timeout_grace: Duration,
    scratch: PathBuf,
}

impl Supervised {
    async fn supervise(mut self, mut control: RunControl, readers: Vec<JoinHandle<()>>) {
        let deadline = async {
            match self.timeout {
                Some(timeout) => tokio::time::sleep(timeout).await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            status = self.child.wait() => match status {
                Ok(status) => Outcome::Exited { exit_code: exit_code(status) },
                Err(error) => Outcome::Failed { error: format!("waiting for the process: {error}") },
            },
            grace = control.cancelled() => {
                self.stop(grace).await;
                Outcome::Cancelled
            }
            () = deadline => {
                self.stop(self.timeout_grace).await;
                Outcome::TimedOut
            }
        };
        signal_group(self.group, Signal::SIGKILL);
        for reader in readers {
            let abort = reader.abort_handle();
            if tokio::time::timeout(DRAIN, reader).await.is_err() {
                abort.abort();
            }
        }
        tracing::info!(
            job = self.job,
            attempt = self.attempt,
            ?outcome,
            "process run ended"
        );
        remove_scratch(&self.scratch);
        control.finish(outcome);
    }

    /// SIGTERM to the group; SIGKILL once `grace` has passed with any of it still alive.
    async fn stop(&mut self, grace: Duration) {
        signal_group(self.group, Signal::SIGTERM);
        let child = &mut self.child;
        let group = self.group;
        let ended = tokio::time::timeout(grace, async {
            let _ = child.wait().await;
            while group_alive(group) {
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        if ended.is_err() {
            signal_group(self.group, Signal::SIGKILL);
            let _ = self.child.wait().await;
        }
    }
}

/// Removes a run's scratch directory once nothing of the run is left to write to it.
fn remove_scratch(dir: &std::path::Path) {
    if let Err(error) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), %error, "removing a run's scratch directory failed");
    }
}

/// The exit code a shell would report: the status, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(-1)
}

fn signal_group(group: Pid, signal: Signal) {
    match killpg(group, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(error) => {
            tracing::warn!(group = group.as_raw(), ?signal, %error, "signalling a run failed")
        }
    }
}

/// Whether any process of the group is left (zombies count until their parent reaps them).
fn group_alive(group: Pid) -> bool {
    !matches!(killpg(group, None), Err(Errno::ESRCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_read_like_a_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        // Killed by SIGKILL (9) and by SIGTERM (15).
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }

    #[tokio::test]
    async fn refuses_specs_it_cannot_run() {
        let executor = ProcessExecutor::default();
        let empty = executor.start(RunSpec::default()).await;
        assert!(matches!(empty, Err(ExecError::InvalidSpec(_))));
        let image = RunSpec {
            command: vec!["true".into()],
            image: Some("busybox".into()),
            ..RunSpec::default()
        };
        assert!(matches!(
            executor.start(image).await,
            Err(ExecError::InvalidSpec(_))
        ));
        let missing = RunSpec {
            command: vec!["/nonexistent/shoal-no-such-program".into()],
            ..RunSpec::default()
        };
        match executor.start(missing).await {
            Err(error @ ExecError::Spawn { .. }) => {
                assert!(
                    error.to_string().contains("shoal-no-such-program"),
                    "{error}"
                )
            }
            Err(other) => panic!("expected a spawn error, got {other}"),
            Ok(_) => panic!("a missing program started"),
        }
    }
}
