//! Container runs through the Docker engine (bollard): one container per attempt, named
//! `shoal-job-<job>-<attempt>-<node>` and labelled so that a restarted daemon can adopt it.
//!
//! ```text
//!  start ─▶ pull (by policy; pull.rs) ─▶ create (image, cmd, env, labels, nano_cpus, memory) ─▶ start ─▶ supervisor task
//!  supervisor: logs (follow, stdout + stderr) ─▶ OutputWriter
//!              wait ─▶ exit code ─────────────────────▶ Exited
//!              cancel(grace) ─▶ docker stop -t grace ─▶ Cancelled
//!              timeout ───────▶ docker stop ──────────▶ TimedOut
//!              then: drain logs, remove the container, report
//!  executor dropped ─▶ supervisors let go; the containers run on for adopt() (adopt.rs)
//! ```
//!
//! The engine is reached lazily: nothing connects until a call needs it, and a missing
//! socket or a silent engine is reported as Docker being absent, not as a crash.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig};

use crate::gpus::handoff;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures::StreamExt;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use super::handle::Restart;
use super::output::{OutputWriter, Stream};
use super::pull::ensure_image;
use super::recreate::recreate;
use super::{
    DEFAULT_OUTPUT_LIMIT, DEFAULT_TIMEOUT_GRACE, ExecError, Executor, Outcome, RunControl,
    RunHandle, RunSpec, run_channel,
};

pub use super::adopt::Adopted;
pub use super::confine::ContainerLimits;

/// Label on every container Shoal starts.
pub const LABEL_MANAGED: &str = "shoal.managed";
pub const LABEL_JOB: &str = "shoal.job";
pub const LABEL_ATTEMPT: &str = "shoal.attempt";
/// The [`DockerConfig::node`] that started the container.
pub const LABEL_NODE: &str = "shoal.node";
/// When the run times out, in milliseconds since the Unix epoch; read back on adoption.
pub const LABEL_DEADLINE: &str = "shoal.deadline_ms";

/// Requests that do not stream give up after this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Connecting (version negotiation) gives up after this, and Docker counts as absent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams (logs, wait) last as long as the run: no request timeout to speak of.
const STREAM_TIMEOUT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long the logs may lag behind the container's exit before they are cut off.
const LOG_DRAIN: Duration = Duration::from_secs(5);

/// Settings of the Docker executor.
#[derive(Clone, Debug)]
pub struct DockerConfig {
    /// The engine's Unix socket; `None` follows `DOCKER_HOST`, else `/var/run/docker.sock`.
    pub socket: Option<PathBuf>,
    /// Written to every container as `shoal.node`; when set, [`DockerExecutor::adopt`]
    /// takes only containers with the same value, so several nodes can share one engine.
    pub node: Option<String>,
    /// Bytes of output kept per run (the newest).
    pub output_limit: usize,
    /// `docker stop` grace when a run times out.
    pub timeout_grace: Duration,
    /// What every container is held to (capabilities, processes, default memory).
    pub limits: ContainerLimits,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            socket: None,
            node: None,
            output_limit: DEFAULT_OUTPUT_LIMIT,
            timeout_grace: DEFAULT_TIMEOUT_GRACE,
            limits: ContainerLimits::default(),
        }
    }
}

/// Runs [`RunSpec`]s with an image as containers. Clones share one connection; when the
/// last clone is dropped, running containers are left for a later [`Self::adopt`].
#[derive(Clone)]
pub struct DockerExecutor {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) config: DockerConfig,
    client: Mutex<Option<Docker>>,
    /// Never sent on; its drop tells every supervisor to let go.
    shutdown: watch::Sender<()>,
}

impl DockerExecutor {
    pub fn new(config: DockerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                client: Mutex::new(None),
                shutdown: watch::Sender::new(()),
            }),
        }
    }

    /// The engine's version, or `None` when it cannot be reached: advertise the `docker`
    /// capability only when this is `Some`.
    pub async fn docker_available(&self) -> Option<String> {
        let docker = match self.client().await {
            Ok(docker) => docker,
            Err(error) => {
                tracing::debug!(%error, "docker not available");
                return None;
            }
        };
        docker.version().await.ok()?.version
    }

    /// The connection, made on first use.
    /// The node name containers carry, if any.
    pub(super) fn node_tag(&self) -> Option<&str> {
        self.inner.config.node.as_deref()
    }

    pub(super) async fn client(&self) -> Result<Docker, ExecError> {
        let mut slot = self.inner.client.lock().await;
        if let Some(docker) = &*slot {
            return Ok(docker.clone());
        }
        let unavailable = |error: DockerError| ExecError::DockerUnavailable(error.to_string());
        let docker = match &self.inner.config.socket {
            Some(path) => Docker::connect_with_unix(
                &path.to_string_lossy(),
                REQUEST_TIMEOUT.as_secs(),
                API_DEFAULT_VERSION,
            ),
            None => Docker::connect_with_local_defaults(),
        }
        .map_err(unavailable)?;
        // Speak the engine's API version when it is older than bollard's.
        let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| {
                ExecError::DockerUnavailable(format!(
                    "the engine did not answer within {CONNECT_TIMEOUT:?}"
                ))
            })?
            .map_err(unavailable)?;
        *slot = Some(docker.clone());
        Ok(docker)
    }

    /// A supervisor for `name`, let go when this executor is dropped.
    pub(super) fn watched(
        &self,
        docker: Docker,
        name: String,
        deadline: Option<Instant>,
    ) -> Watched {
        Watched {
            docker,
            name,
            deadline,
            timeout_grace: self.inner.config.timeout_grace,
            shutdown: self.inner.shutdown.subscribe(),
        }
    }
}

#[async_trait::async_trait]
impl Executor for DockerExecutor {
    async fn start(&self, spec: RunSpec) -> Result<RunHandle, ExecError> {
        let nothing_to_tell = std::future::ready(());
        self.start_unless(spec, std::future::pending(), nothing_to_tell)
            .await
    }
}

impl DockerExecutor {
    /// Starts `spec` as [`Executor::start`] does, but gives up while the image is pulled
    /// if `give_up` ends first (with why): nothing is made until the pull is done, so
    /// nothing is left behind. `before_pull` runs only when the image is to be pulled,
    /// just before.
    pub async fn start_unless(
        &self,
        spec: RunSpec,
        give_up: impl Future<Output = String> + Send,
        before_pull: impl Future<Output = ()> + Send,
    ) -> Result<RunHandle, ExecError> {
        let mut body = create_body(&spec, self.inner.config.node.as_deref(), SystemTime::now())?;
        if let Some(host) = body.host_config.as_mut() {
            self.inner.config.limits.confine(host, &spec.confinement);
        }
        let docker = self.client().await?;
        let (handle, control) = run_channel(spec.job, spec.attempt, self.inner.config.output_limit);
        if let Some(image) = &spec.image {
            let auth = spec.pull_auth.as_ref();
            tokio::select! {
                pulled = ensure_image(&docker, image, spec.pull, auth, &control.output, before_pull) => pulled?,
                why = give_up => return Err(ExecError::GivenUp(why)),
            }
        }
        if let (Some(image), Some(pinned)) = (&spec.image, &spec.image_digest) {
            let here = docker.inspect_image(image).await?.id.unwrap_or_default();
            if here != *pinned {
                return Err(ExecError::InvalidSpec(format!(
                    "image {image} here is {here}, but {pinned} is pinned"
                )));
            }
        }
        let name = container_name(self.node_tag(), spec.job, spec.attempt);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        docker.create_container(Some(options), body).await?;
        if let Err(error) = docker.start_container(&name, None).await {
            remove(&docker, &name).await;
            return Err(error.into());
        }
        tracing::info!(job = spec.job, attempt = spec.attempt, container = %name, "container run started");
        // A timeout too long to add to the clock (the log may hold one) is no deadline.
        let deadline = spec
            .timeout
            .and_then(|timeout| Instant::now().checked_add(timeout));
        let watched = self.watched(docker, name, deadline);
        tokio::spawn(watched.supervise(control));
        Ok(handle)
    }
}

/// `shoal-job-<job>-<attempt>`, then `-<node>` when the executor names its node, so
/// machines (or fleets) sharing one engine never reach for the same name.
pub fn container_name(node: Option<&str>, job: u64, attempt: u32) -> String {
    match node {
        Some(node) => format!("shoal-job-{job}-{attempt}-{node}"),
        None => format!("shoal-job-{job}-{attempt}"),
    }
}

/// The container to create for `spec`, started at `now`.
fn create_body(
    spec: &RunSpec,
    node: Option<&str>,
    now: SystemTime,
) -> Result<ContainerCreateBody, ExecError> {
    let image = spec
        .image
        .clone()
        .ok_or_else(|| ExecError::InvalidSpec("a container run needs an image".into()))?;
    let nano_cpus = match spec.cpu_limit {
        Some(cores) if !(cores.is_finite() && cores > 0.0) => {
            return Err(ExecError::InvalidSpec(format!(
                "cpu_limit {cores} is not a positive number of cores"
            )));
        }
        Some(cores) => Some((cores * 1e9).round() as i64),
        None => None,
    };
    let memory =
        match spec.memory_limit {
            Some(bytes) => Some(i64::try_from(bytes).map_err(|_| {
                ExecError::InvalidSpec(format!("memory_limit {bytes} is too large"))
            })?),
            None => None,
        };
    let mut labels = HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_JOB.to_string(), spec.job.to_string()),
        (LABEL_ATTEMPT.to_string(), spec.attempt.to_string()),
    ]);
    if let Some(node) = node {
        labels.insert(LABEL_NODE.to_string(), node.to_string());
    }
    if let Some(deadline) = spec.timeout.and_then(|timeout| now.checked_add(timeout)) {
        let deadline = deadline.duration_since(UNIX_EPOCH).unwrap_or_default();
        labels.insert(LABEL_DEADLINE.to_string(), deadline.as_millis().to_string());
    }
    let device_requests = (!spec.gpus.is_empty()).then(|| {
        labels.insert(
            handoff::LABEL_GPUS.to_string(),
            handoff::label_value(&spec.gpus),
        );
        vec![handoff::device_request(&spec.gpus)]
    });
    Ok(ContainerCreateBody {
        image: Some(image),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        user: spec.user.clone(),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            nano_cpus,
            memory,
            // No swap beyond the memory limit.
            memory_swap: memory,
            network_mode: spec.network_mode.clone(),
            device_requests,
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    })
}

/// One container being watched to its end.
pub(super) struct Watched {
    docker: Docker,
    name: String,
    deadline: Option<Instant>,
    timeout_grace: Duration,
    shutdown: watch::Receiver<()>,
}

impl Watched {
    pub(super) async fn supervise(mut self, mut control: RunControl) {
        // What the output held before the container's logs (the pull's progress).
        let mut before_logs = control.output.written();
        let streaming = self.docker.clone().with_timeout(STREAM_TIMEOUT);
        let mut logs = tokio::spawn(pump_logs(
            streaming.clone(),
            self.name.clone(),
            control.output.clone(),
            true,
            "all",
            0,
        ));
        let exit = wait_exit(&streaming, &self.name);
        tokio::pin!(exit);
        let mut restarts = control.restarts();
        let mut recreated = restarts.borrow().onto_current_image;
        let mut stopped = None;
        let exit = loop {
            let deadline = async {
                match self.deadline {
                    Some(deadline) if stopped.is_none() => tokio::time::sleep_until(deadline).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                exit = &mut exit => break exit,
                grace = control.cancelled(), if stopped.is_none() => {
                    stopped = Some(Outcome::Cancelled);
                    self.stop(grace).await;
                }
                Ok(()) = restarts.changed(), if stopped.is_none() => {
                    let asked = restarts.borrow_and_update().onto_current_image;
                    let how = match asked != recreated {
                        true => Restart::OntoCurrentImage,
                        false => Restart::InPlace,
                    };
                    recreated = asked;
                    // Docker keeps the logs across a restart in place: they are read
                    // again from the start, past what the output already holds. A new
                    // container's logs start empty.
                    let held = match how {
                        Restart::InPlace => {
                            self.restart().await;
                            control.output.written() - before_logs
                        }
                        Restart::OntoCurrentImage => {
                            let grace = self.timeout_grace;
                            match recreate(&self.docker, &self.name, grace).await {
                                Ok(image) => {
                                    tracing::info!(container = %self.name, %image, "container made anew from its image");
                                    before_logs = control.output.written();
                                    0
                                }
                                Err(error) => {
                                    tracing::warn!(container = %self.name, %error, "restart onto the current image failed");
                                    let error = format!("restart onto the current image failed: {error}");
                                    control.output.push(Stream::Stderr, format!("shoal: {error}\n").as_bytes());
                                    // The old container gone with it: the run ends, saying why.
                                    if self.docker.inspect_container(&self.name, None).await.is_err() {
                                        stopped = Some(Outcome::Failed { error });
                                    }
                                    continue;
                                }
                            }
                        }
                    };
                    // The stop ended the old wait and log stream: watch the new process.
                    exit.set(wait_exit(&streaming, &self.name));
                    logs.abort();
                    logs = tokio::spawn(pump_logs(
                        streaming.clone(),
                        self.name.clone(),
                        control.output.clone(),
                        true,
                        "all",
                        held,
                    ));
                }
                () = deadline => {
                    stopped = Some(Outcome::TimedOut);
                    self.stop(self.timeout_grace).await;
                }
                _ = self.shutdown.changed() => {
                    logs.abort();
                    tracing::info!(container = %self.name, "executor dropped; container left for adoption");
                    return;
                }
            }
        };
        let abort = logs.abort_handle();
        if tokio::time::timeout(LOG_DRAIN, logs).await.is_err() {
            abort.abort();
        }
        let outcome = match (stopped, exit) {
            (Some(outcome), _) => outcome,
            (None, Ok(exit_code)) => Outcome::Exited { exit_code },
            (None, Err(error)) => Outcome::Failed { error },
        };
        remove(&self.docker, &self.name).await;
        tracing::info!(container = %self.name, ?outcome, "container run ended");
        control.finish(outcome);
    }

    /// `docker restart`, with the timeout grace for the stop.
    async fn restart(&self) {
        let seconds = i32::try_from(self.timeout_grace.as_secs()).unwrap_or(i32::MAX);
        let options = bollard::query_parameters::RestartContainerOptionsBuilder::default()
            .t(seconds)
            .build();
        let docker = self
            .docker
            .clone()
            .with_timeout(REQUEST_TIMEOUT + self.timeout_grace);
        match docker.restart_container(&self.name, Some(options)).await {
            Ok(()) => tracing::info!(container = %self.name, "container restarted"),
            Err(error) => tracing::warn!(container = %self.name, %error, "docker restart failed"),
        }
    }

    /// `docker stop` with `grace`, rounded up to whole seconds.
    async fn stop(&self, grace: Duration) {
        let seconds = i32::try_from(grace.as_secs() + u64::from(grace.subsec_nanos() > 0))
            .unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::default().t(seconds).build();
        let docker = self.docker.clone().with_timeout(REQUEST_TIMEOUT + grace);
        if let Err(error) = docker.stop_container(&self.name, Some(options)).await {
            tracing::warn!(container = %self.name, %error, "docker stop failed");
        }
    }
}

/// The container's exit code, once it is not running.
async fn wait_exit(docker: &Docker, name: &str) -> Result<i32, String> {
    let mut wait = docker.wait_container(name, None);
    let code = match wait.next().await {
        Some(Ok(response)) => response.status_code,
        // bollard turns a non-zero exit into this error.
        Some(Err(DockerError::DockerContainerWaitError { code, .. })) => code,
        Some(Err(error)) => return Err(format!("waiting for the container: {error}")),
        None => return Err("the engine ended the wait without an exit code".into()),
    };
    Ok(i32::try_from(code).unwrap_or(-1))
}

/// Copies the container's logs into the output, following them when `follow`.
/// `skip` bytes at the start of the logs are left out: what the output already holds
/// when a restarted container's logs are read again from their start.
pub(super) async fn pump_logs(
    docker: Docker,
    name: String,
    output: OutputWriter,
    follow: bool,
    tail: &'static str,
    mut skip: u64,
) {
    let options = LogsOptionsBuilder::default()
        .follow(follow)
        .stdout(true)
        .stderr(true)
        .tail(tail)
        .build();
    let mut logs = docker.logs(&name, Some(options));
    let mut push = |stream: Stream, message: &[u8]| {
        let skipped = skip.min(message.len() as u64);
        skip -= skipped;
        output.push(stream, &message[skipped as usize..]);
    };
    while let Some(item) = logs.next().await {
        match item {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                push(Stream::Stdout, &message)
            }
            Ok(LogOutput::StdErr { message }) => push(Stream::Stderr, &message),
            Ok(LogOutput::StdIn { .. }) => {}
            Err(error) => {
                tracing::warn!(container = %name, %error, "reading container logs failed");
                break;
            }
        }
    }
}

/// Removes the container, logging rather than failing.
pub(super) async fn remove(docker: &Docker, name: &str) {
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    if let Err(error) = docker.remove_container(name, Some(options)).await {
        tracing::warn!(container = %name, %error, "removing the container failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RunSpec {
        RunSpec {
            job: 12,
            attempt: 3,
            command: vec!["sh".into(), "-c".into(), "exit 1".into()],
            image: Some("shoal-test-busybox:local".into()),
            image_digest: None,
            env: [("A".to_string(), "1".to_string())].into(),
            cpu_limit: Some(1.5),
            memory_limit: Some(64 << 20),
            timeout: Some(Duration::from_secs(30)),
            network_mode: Some("none".into()),
            ..RunSpec::default()
        }
    }

    #[test]
    fn a_run_with_gpus_asks_the_engine_for_those_devices() {
        let mut spec = spec();
        spec.gpus = vec![1, 3];
        let body = create_body(&spec, None, SystemTime::now()).unwrap();
        let host = body.host_config.unwrap();
        assert_eq!(
            host.device_requests,
            Some(vec![handoff::device_request(&[1, 3])])
        );
        assert_eq!(body.labels.unwrap()[handoff::LABEL_GPUS], "1,3");
    }

    #[test]
    fn the_container_carries_limits_labels_and_env() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let body = create_body(&spec(), Some("node-a"), now).unwrap();
        assert_eq!(container_name(None, 12, 3), "shoal-job-12-3");
        assert_eq!(container_name(Some("9f2c"), 12, 3), "shoal-job-12-3-9f2c");
        assert_eq!(body.image.as_deref(), Some("shoal-test-busybox:local"));
        assert_eq!(body.env, Some(vec!["A=1".to_string()]));
        let host = body.host_config.unwrap();
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.memory_swap, Some(64 << 20));
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_MANAGED], "true");
        assert_eq!(labels[LABEL_JOB], "12");
        assert_eq!(labels[LABEL_ATTEMPT], "3");
        assert_eq!(labels[LABEL_NODE], "node-a");
        assert_eq!(labels[LABEL_DEADLINE], "1030000");
    }

    #[test]
    fn an_empty_command_keeps_the_image_default_and_bad_limits_are_refused() {
        let mut plain = spec();
        plain.command.clear();
        plain.cpu_limit = None;
        plain.memory_limit = None;
        plain.timeout = None;
        let body = create_body(&plain, None, SystemTime::now()).unwrap();
        assert_eq!(body.cmd, None);
        let labels = body.labels.unwrap();
        assert!(!labels.contains_key(LABEL_NODE) && !labels.contains_key(LABEL_DEADLINE));
        assert!(!labels.contains_key(handoff::LABEL_GPUS));
        assert_eq!(body.host_config.unwrap().device_requests, None);

        let mut bad = spec();
        bad.cpu_limit = Some(0.0);
        assert!(matches!(
            create_body(&bad, None, SystemTime::now()),
            Err(ExecError::InvalidSpec(_))
        ));
        let mut no_image = spec();
        no_image.image = None;
        assert!(matches!(
            create_body(&no_image, None, SystemTime::now()),
            Err(ExecError::InvalidSpec(_))
        ));
    }
}
