//! The node side of jobs: watch the local replica for attempts dispatched to this
//! machine, run each with the right executor, and report running and the outcome
//! through the log. A cancel asked for in the log stops the run.
//!
//! ```text
//!  replica ──applied──▶ runner_loop ── start ──▶ Executor ── wait ──▶ report (ReportJob)
//!                          │                └─▶ report running          ▲
//!                          └── cancel_requested ──▶ RunHandle::cancel   │
//!            reports go out in their own tasks, retried under one request id
//! ```
//!
//! No runner pass waits on the log: a report that cannot land yet (no leader, an answer
//! lost) is retried in the background, and the next attempt starts meanwhile.
//!
//! When the node stops, nothing new starts: containers run on and are adopted after the
//! restart, process runs are stopped (the log counts them lost, a failed attempt), and a
//! final report not sent yet is kept on disk (`kept`) and sent after the restart.

mod kept;

use std::collections::{BTreeMap, HashMap, HashSet};

use shoal_protocol::policies::{ContainerAsk, Policy, govern};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_protocol::levels::PULL_EVENTS_LEVEL;
use shoal_protocol::{ApiError, Command, ErrorCode, FleetState, JobId, JobReport, JobState};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::exec::confine::{Confinement, ContainerLimits};
use crate::exec::pull::PullAuth;
use crate::exec::{
    Adopted, DockerConfig, DockerExecutor, ExecError, Executor, Outcome, ProcessConfig,
    ProcessExecutor, RunHandle, RunSpec,
};
use crate::isolate::isolate;
use crate::logs;
use crate::node::{Node, WRITE_TIMEOUT, now_ms};
use crate::writes;

/// SIGTERM-to-SIGKILL grace when a job is cancelled.
pub const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// How often saved output past the job retention is deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// How long a pass waits to hear the leader's commit index before it starts new runs.
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);
/// SIGTERM-to-SIGKILL grace for process runs when the node stops.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// This machine's executors and the runs it holds.
pub struct Runner {
    process: Option<ProcessExecutor>,
    docker: DockerExecutor,
    docker_version: Option<String>,
    runs: Mutex<HashMap<(JobId, u32), RunHandle>>,
    /// Attempts that ended with no run held here (refused, failed to start, lost in a
    /// restart, or ended while shoald was down) whose report is still on its way.
    reporting: Mutex<HashSet<(JobId, u32)>>,
    /// Attempts being started (their image pulled, their container made): each starts in a
    /// task of its own, so a long pull holds up no other run.
    starting: Mutex<HashSet<(JobId, u32)>>,
    /// The GPUs this machine's runs hold.
    gpus: crate::gpus::HeldGpus,
    /// Held by the `batch update` that runs here (one at a time; its pulls may outlast
    /// the request).
    pub updating: Arc<tokio::sync::Mutex<()>>,
    /// True once the node shuts down: runs are let go (a container is adopted after the
    /// restart; a process is lost, and reported so) and reports stop retrying.
    stopping: watch::Sender<bool>,
}

impl Runner {
    /// Connects to Docker (absent is fine) and runs process jobs as `process` says (none
    /// when `None`). Containers are labelled with `machine` so machines sharing an engine
    /// adopt only their own.
    pub async fn new(
        machine: shoal_protocol::MachineId,
        process: Option<ProcessConfig>,
        limits: ContainerLimits,
    ) -> Runner {
        let docker = DockerExecutor::new(DockerConfig {
            node: Some(machine.to_string()),
            limits,
            ..DockerConfig::default()
        });
        let docker_version = docker.docker_available().await;
        match &docker_version {
            Some(version) => {
                tracing::info!(%version, "docker engine found: this machine runs container jobs")
            }
            None => tracing::info!("no docker engine: this machine does not advertise docker"),
        }
        Runner {
            process: process.map(ProcessExecutor::new),
            docker,
            docker_version,
            runs: Mutex::new(HashMap::new()),
            reporting: Mutex::new(HashSet::new()),
            starting: Mutex::new(HashSet::new()),
            gpus: Default::default(),
            updating: Arc::default(),
            stopping: watch::Sender::new(false),
        }
    }

    pub fn has_docker(&self) -> bool {
        self.docker_version.is_some()
    }

    /// The Docker engine's version, if one answered at start.
    pub fn docker_version(&self) -> Option<&str> {
        self.docker_version.as_deref()
    }

    fn hold(&self, job: JobId, attempt: u32, handle: RunHandle) {
        self.runs
            .lock()
            .expect("runs lock")
            .insert((job, attempt), handle);
    }

    /// Stops runs the log no longer gives this machine: taken back after a drain deadline
    /// or a dispatch timeout, so they now run elsewhere.
    fn stop_taken_back(&self, assigned: &[(JobId, u32, JobState, bool)]) {
        let runs = self.runs.lock().expect("runs lock");
        for ((job, attempt), handle) in runs.iter() {
            let still_mine = assigned.iter().any(|(j, a, _, _)| (j, a) == (job, attempt));
            if !still_mine && handle.outcome().is_none() {
                tracing::debug!(job = %job, attempt, "the log took the attempt back; stopping it");
                handle.cancel(CANCEL_GRACE);
            }
        }
    }

    /// The Docker executor, for commands run in a session's container.
    pub fn docker(&self) -> &DockerExecutor {
        &self.docker
    }

    /// Whether the final report of an attempt with no run held here is on its way.
    fn is_reporting(&self, job: JobId, attempt: u32) -> bool {
        self.reporting
            .lock()
            .expect("reporting lock")
            .contains(&(job, attempt))
    }

    /// Marks the attempt as starting; false when it already is.
    fn begin_start(&self, job: JobId, attempt: u32) -> bool {
        self.starting
            .lock()
            .expect("starting lock")
            .insert((job, attempt))
    }

    fn end_start(&self, job: JobId, attempt: u32) {
        self.starting
            .lock()
            .expect("starting lock")
            .remove(&(job, attempt));
    }

    /// The run of this attempt, if this machine holds it.
    pub fn run(&self, job: JobId, attempt: u32) -> Option<RunHandle> {
        self.runs
            .lock()
            .expect("runs lock")
            .get(&(job, attempt))
            .cloned()
    }
}

/// The attempts dispatched to `node` that have not finished, with their cancel flag.
fn mine(state: &FleetState, node: shoal_protocol::MachineId) -> Vec<(JobId, u32, JobState, bool)> {
    state
        .placed_jobs
        .iter()
        .filter(|(_, on)| on.machine == node)
        .filter_map(|(id, on)| {
            let job = state.jobs.get(id)?;
            Some((*id, on.attempt, job.state, job.cancel_requested))
        })
        .collect()
}

/// Whether any attempt dispatched here waits to be started.
fn wants_start(runner: &Runner, assigned: &[(JobId, u32, JobState, bool)]) -> bool {
    assigned.iter().any(|&(job, attempt, state, _)| {
        state == JobState::Dispatched
            && runner.run(job, attempt).is_none()
            && !runner.is_reporting(job, attempt)
    })
}

/// Runs until shutdown: adopts containers left from before a restart, then follows the log.
pub async fn runner_loop(
    node: Arc<Node>,
    runner: Arc<Runner>,
    mut shutdown: watch::Receiver<bool>,
) {
    for adopted in runner.docker.adopt().await {
        match adopted {
            Adopted::Running {
                job,
                attempt,
                handle,
                gpus,
            } => {
                tracing::info!(job, attempt, "adopted a running container");
                runner.gpus.hold(JobId(job), attempt, gpus);
                watch_run(&node, &runner, JobId(job), attempt, handle, None);
            }
            Adopted::Finished {
                job,
                attempt,
                outcome,
                output,
            } => {
                tracing::info!(
                    job,
                    attempt,
                    ?outcome,
                    "a container ended while shoald was down"
                );
                if let Err(err) = logs::save(&node.config.data_dir, JobId(job), attempt, &output) {
                    tracing::warn!(job, attempt, %err, "could not save the job's output");
                }
                report_final(&node, &runner, JobId(job), attempt, outcome_report(outcome));
            }
        }
    }
    send_kept_reports(&node, &runner);
    let mut applied = node.fleet.applied();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    loop {
        let mut assigned = node.fleet.read(|state| mine(state, node.id));
        if wants_start(&runner, &assigned) {
            // A replica replaying after a restart or a partition still shows attempts the
            // fleet took back and finished elsewhere: start nothing before it has caught
            // up with what the leader has committed now.
            let caught_up = tokio::time::timeout(CATCH_UP_WAIT, node.read_barrier()).await;
            match caught_up.unwrap_or_else(|_| {
                Err(ApiError::new(
                    ErrorCode::Unavailable,
                    "no answer from the leader",
                ))
            }) {
                Ok(()) => assigned = node.fleet.read(|state| mine(state, node.id)),
                Err(err) => {
                    tracing::debug!(%err, "not caught up with the leader: no new runs yet");
                    assigned.retain(|(_, _, state, _)| *state != JobState::Dispatched);
                }
            }
        }
        runner.stop_taken_back(&assigned);
        for (job, attempt, state, cancel) in assigned {
            if *shutdown.borrow() {
                break;
            }
            match runner.run(job, attempt) {
                Some(handle) if cancel => handle.cancel(CANCEL_GRACE),
                Some(_) => {}
                None if runner.is_reporting(job, attempt) => {}
                None if state == JobState::Dispatched => {
                    if runner.begin_start(job, attempt) {
                        spawn_start(&node, &runner, job, attempt);
                    }
                }
                // Running here per the log, but no run holds it: lost in a restart.
                None => report_final(
                    &node,
                    &runner,
                    job,
                    attempt,
                    JobReport::Failed {
                        error: "shoald restarted and lost the run".into(),
                    },
                ),
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            _ = applied.changed() => {}
            _ = tick.tick() => {}
            _ = sweep.tick() => {
                let retention = node
                    .fleet
                    .read(|state| state.settings.job_retention(node.config.job_retention));
                let removed = logs::sweep(&node.config.data_dir, retention);
                if removed > 0 {
                    tracing::info!(files = removed, "deleted job output past its retention");
                }
            }
        }
    }
    runner.stopping.send_replace(true);
    settle_starts(&runner).await;
    stop_process_runs(&node, &runner).await;
}

/// Longest a stopping node waits for the starts in flight (a pull, a container being
/// made), so a process one of them starts is stopped with the rest.
const STARTS_SETTLE: Duration = Duration::from_secs(2);

/// Waits until no start is in flight, or [`STARTS_SETTLE`] has passed. A start that begins
/// once the node is stopping starts nothing (see `start`).
async fn settle_starts(runner: &Runner) {
    let deadline = tokio::time::Instant::now() + STARTS_SETTLE;
    while !runner.starting.lock().expect("starting lock").is_empty()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends the final reports an earlier run kept when it stopped, for attempts the log
/// still gives this machine.
fn send_kept_reports(node: &Arc<Node>, runner: &Arc<Runner>) {
    for kept::KeptReport {
        job,
        attempt,
        report,
    } in kept::load_all(&node.config.data_dir)
    {
        tracing::info!(job = %job, attempt, "sending a report kept over the restart");
        let key = (job, attempt);
        if !runner.reporting.lock().expect("reporting lock").insert(key) {
            continue;
        }
        let (node, runner) = (node.clone(), runner.clone());
        tokio::spawn(async move {
            deliver(&node, job, attempt, report).await;
            if !*runner.stopping.borrow() {
                kept::forget(&node.config.data_dir, job, attempt);
            }
            runner
                .reporting
                .lock()
                .expect("reporting lock")
                .remove(&key);
        });
    }
}

/// Stops every process run (a container runs on, to be adopted): SIGTERM, then SIGKILL
/// after [`STOP_GRACE`]; waits for them that long and a little more.
async fn stop_process_runs(node: &Node, runner: &Runner) {
    let processes: Vec<RunHandle> = {
        let runs = runner.runs.lock().expect("runs lock");
        node.fleet.read(|state| {
            runs.iter()
                .filter(|((job, _), handle)| {
                    handle.outcome().is_none()
                        && state.jobs.get(job).is_some_and(|j| j.spec.image.is_none())
                })
                .map(|(_, handle)| handle.clone())
                .collect()
        })
    };
    if processes.is_empty() {
        return;
    }
    tracing::info!(
        runs = processes.len(),
        "stopping process runs: the log will count them lost"
    );
    for handle in &processes {
        handle.cancel(STOP_GRACE);
    }
    let deadline = tokio::time::Instant::now() + STOP_GRACE + Duration::from_millis(500);
    while processes.iter().any(|h| h.outcome().is_none()) && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The login for `image`'s registry, when the fleet holds credentials for it.
pub fn pull_auth(node: &Node, image: &str) -> Result<Option<PullAuth>, String> {
    let registry = shoal_protocol::image_ref::registry_of(image);
    let Some(credential) = node
        .fleet
        .read(|state| state.registry_credentials.get(registry).cloned())
    else {
        return Ok(None);
    };
    let password = crate::secrets::registry::open(&node.cluster_secret, &credential)?;
    Ok(Some(PullAuth {
        username: credential.username,
        password,
    }))
}

/// The job's own environment with its secrets opened, and what every attempt gets:
/// where the API is, and the token that lets it report costs (`POST /v1/costs`) while
/// it runs.
fn attempt_env(
    node: &Node,
    env: &BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    job: JobId,
    attempt: u32,
) -> BTreeMap<String, String> {
    let mut api = node.api_addr;
    if api.ip().is_unspecified() {
        api.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let mut env = env.clone();
    env.extend(secrets);
    let scheme = if node.tls.mode.is_https() {
        "https"
    } else {
        "http"
    };
    env.insert("SHOAL_API".into(), format!("{scheme}://{api}"));
    // The CA's certificate itself, not a path: a container has no view of the host's
    // data directory. `shoal` reads it from SHOAL_CACERT_PEM.
    if let Some(ca) = node.tls.fleet_ca() {
        env.insert("SHOAL_CACERT_PEM".into(), ca.cert_pem);
    }
    env.insert(
        "SHOAL_JOB_TOKEN".into(),
        crate::secrets::job_token::issue(&node.cluster_secret, job, attempt),
    );
    env.insert("SHOAL_JOB_ID".into(), job.to_string());
    env.insert("SHOAL_ATTEMPT".into(), attempt.to_string());
    env
}

/// This machine's labels as the log has them (operator labels included).
fn labels_here(node: &Node, state: &FleetState) -> shoal_protocol::Labels {
    state
        .machines
        .get(&node.id)
        .map(|m| m.labels())
        .unwrap_or_default()
}

/// The policies that select this machine now.
pub fn policies_here(node: &Node) -> Vec<Policy> {
    node.fleet.read(|state| {
        let labels = labels_here(node, state);
        state
            .policies
            .values()
            .filter(|p| p.spec.selects(&labels))
            .cloned()
            .collect()
    })
}

/// `ask` under every policy that governs this machine, or the first one's refusal (the
/// check the scheduler made too: [`shoal_protocol::policies::govern`]).
pub fn governed(node: &Node, ask: ContainerAsk) -> Result<ContainerAsk, String> {
    node.fleet
        .read(|state| govern(state.policies.values(), &labels_here(node, state), ask))
}

/// Starts the attempt in a task of its own; it stays marked as starting until its run is
/// held or its final report is on its way.
fn spawn_start(node: &Arc<Node>, runner: &Arc<Runner>, job: JobId, attempt: u32) {
    let (node, runner) = (node.clone(), runner.clone());
    tokio::spawn(async move {
        // Work that makes the node panic fails, saying so, and is not run again here: the
        // node does not crash-loop on its own log.
        let started = isolate(start(&node, &runner, job, attempt)).await;
        if let Err(panic) = started {
            let error = format!("shoald failed starting this attempt: {panic}");
            report_final(&node, &runner, job, attempt, JobReport::Failed { error });
        }
        // A start that holds no run gives its GPUs back (a run gives them back as it ends).
        if runner.run(job, attempt).is_none() {
            runner.gpus.release(job, attempt);
        }
        runner.end_start(job, attempt);
    });
}

async fn start(node: &Arc<Node>, runner: &Arc<Runner>, job: JobId, attempt: u32) {
    #[cfg(feature = "testsuite")]
    node.faults.maybe_panic_in_start();
    // A stopping node starts nothing: the attempt starts after the restart.
    if *runner.stopping.borrow() {
        return;
    }
    let Some(spec) = node
        .fleet
        .read(|state| state.jobs.get(&job).map(|j| j.spec.clone()))
    else {
        return;
    };
    let mut ask = ContainerAsk::for_job(&spec);
    if spec.image.is_some() {
        ask = match governed(node, ask) {
            Ok(ask) => ask,
            Err(error) => {
                return report_final(node, runner, job, attempt, JobReport::Failed { error });
            }
        };
    }
    // The machine's own fit check for GPUs, the one the scheduler made from the log:
    // the lowest free indices, none held by another run here.
    let here = node.info.borrow().gpus.clone();
    let gpus = match runner.gpus.take(job, attempt, spec.gpus, &here) {
        Ok(gpus) => gpus,
        Err(why) => {
            let error = format!("machine {}: {why}", node.config.node_name);
            return report_final(node, runner, job, attempt, JobReport::Failed { error });
        }
    };
    let secrets = crate::secrets::env::open_all(&node.cluster_secret, &spec.org, &spec.secret_env);
    let secrets = match secrets {
        Ok(secrets) => secrets,
        Err(error) => return report_final(node, runner, job, attempt, JobReport::Failed { error }),
    };
    let pull_auth = match spec.image.as_deref().map(|image| pull_auth(node, image)) {
        Some(Err(error)) => {
            return report_final(node, runner, job, attempt, JobReport::Failed { error });
        }
        Some(Ok(auth)) => auth,
        None => None,
    };
    let run = RunSpec {
        job: job.0,
        attempt,
        command: spec.command.clone(),
        image: spec.image.clone(),
        image_digest: spec.image_digest.clone(),
        env: attempt_env(node, &spec.env, secrets, job, attempt),
        cpu_limit: ask.cpus,
        memory_limit: ask.memory_mb.map(|mb| mb << 20),
        timeout: ask.duration_seconds.map(Duration::from_secs),
        network_mode: ask.network_mode,
        confinement: Confinement {
            cap_add: ask.cap_add,
            cap_drop: ask.cap_drop,
            pids_limit: ask.pids_limit,
        },
        user: ask.user,
        pull: ask.pull.unwrap_or_default(),
        pull_auth,
        gpus,
    };
    let started = match (&run.image, &runner.process) {
        (Some(image), _) if runner.has_docker() => {
            let announce = announce_pull(node, job, attempt, image.clone());
            let give_up = given_up(node, job, attempt);
            runner.docker.start_unless(run, give_up, announce).await
        }
        (Some(image), _) => {
            let error = format!(
                "machine {} has no docker engine to run image {image}",
                node.config.node_name
            );
            return report_final(node, runner, job, attempt, JobReport::Failed { error });
        }
        (None, Some(process)) => process.start(run).await,
        (None, None) => {
            let error = format!(
                "machine {} does not run process jobs (allow_process_jobs is off)",
                node.config.node_name
            );
            return report_final(node, runner, job, attempt, JobReport::Failed { error });
        }
    };
    match started {
        Ok(handle) => {
            // Held before the log says running, so its output is readable from then on.
            runner.hold(job, attempt, handle.clone());
            let running = spawn_report(node, job, attempt, JobReport::Running);
            watch_run(node, runner, job, attempt, handle, Some(running));
        }
        Err(ExecError::ImageAbsent { image }) => {
            let error = format!(
                "image {image} is not on machine {} and pull is never",
                node.config.node_name
            );
            report_final(node, runner, job, attempt, JobReport::Failed { error })
        }
        Err(err) => report_final(
            node,
            runner,
            job,
            attempt,
            JobReport::Failed {
                error: err.to_string(),
            },
        ),
    }
}

/// Holds the run, waits for it in its own task, reports the outcome (after the `running`
/// report, if one is on its way) and lets go.
fn watch_run(
    node: &Arc<Node>,
    runner: &Arc<Runner>,
    job: JobId,
    attempt: u32,
    handle: RunHandle,
    running: Option<JoinHandle<()>>,
) {
    runner.hold(job, attempt, handle.clone());
    publish_running(node, runner);
    let (node, runner) = (node.clone(), runner.clone());
    let mut stopping = runner.stopping.subscribe();
    tokio::spawn(async move {
        // Stopping is looked at first: the node's stop cancels its processes right after
        // setting it, and a run that ends so must be counted lost, not cancelled.
        let outcome = tokio::select! {
            biased;
            _ = stopping.wait_for(|stop| *stop) => return,
            outcome = handle.wait() => outcome,
        };
        tracing::info!(job = %job, attempt, ?outcome, "job attempt ended");
        runner.gpus.release(job, attempt);
        // Saved before the run is let go, so the output is readable all along.
        if let Err(err) = logs::save(
            &node.config.data_dir,
            job,
            attempt,
            &handle.output().snapshot(),
        ) {
            tracing::warn!(job = %job, attempt, %err, "could not save the job's output");
        }
        publish_running(&node, &runner);
        if let Some(mut running) = running {
            // The log hears of the start first; a start report stuck that long is given up.
            if tokio::time::timeout(WRITE_TIMEOUT, &mut running)
                .await
                .is_err()
            {
                running.abort();
            }
        }
        deliver(&node, job, attempt, outcome_report(outcome)).await;
        // Only now: while the run is held, the loop does not take the attempt for lost.
        runner
            .runs
            .lock()
            .expect("runs lock")
            .remove(&(job, attempt));
    });
}

fn publish_running(node: &Node, runner: &Runner) {
    let running = runner
        .runs
        .lock()
        .expect("runs lock")
        .values()
        .filter(|handle| handle.outcome().is_none())
        .count() as u32;
    node.info
        .send_if_modified(|info| std::mem::replace(&mut info.running, running) != running);
}

fn outcome_report(outcome: Outcome) -> JobReport {
    match outcome {
        Outcome::Exited { exit_code } => JobReport::Exited { exit_code },
        Outcome::Failed { error } => JobReport::Failed { error },
        Outcome::TimedOut => JobReport::Failed {
            error: "timed out".into(),
        },
        Outcome::Cancelled => JobReport::Failed {
            error: "cancelled".into(),
        },
    }
}

/// Longest a start waits for the log to hear that it pulls.
const PULL_REPORT_WAIT: Duration = Duration::from_secs(2);

/// Tells the fleet (`JobReport::Pulling`, an event) that the attempt's image is about to
/// be pulled, from protocol level 9 on. Waits [`PULL_REPORT_WAIT`] at most: the report is
/// news, not a condition of the start.
async fn announce_pull(node: &Node, job: JobId, attempt: u32, image: String) {
    if node.fleet.read(|state| state.fleet_level) < PULL_EVENTS_LEVEL {
        return;
    }
    let report = JobReport::Pulling { image };
    let _ = tokio::time::timeout(PULL_REPORT_WAIT, deliver(node, job, attempt, report)).await;
}

/// Ends, saying why, once the attempt is cancelled or no longer this machine's to run: a
/// start still pulling its image then gives up.
async fn given_up(node: &Node, job: JobId, attempt: u32) -> String {
    let mut applied = node.fleet.applied();
    loop {
        let (cancelled, still_ours) = node.fleet.read(|state| match state.jobs.get(&job) {
            Some(j) => (
                j.cancel_requested,
                !j.state.is_finished() && j.current_attempt().map(|a| a.number) == Some(attempt),
            ),
            None => (false, false),
        });
        if cancelled {
            return "cancelled while its image was pulled".into();
        }
        if !still_ours {
            return "taken back while its image was pulled".into();
        }
        if applied.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Reports on an attempt in the background: a runner pass never waits on the log.
fn spawn_report(node: &Arc<Node>, job: JobId, attempt: u32, report: JobReport) -> JoinHandle<()> {
    let node = node.clone();
    tokio::spawn(async move { deliver(&node, job, attempt, report).await })
}

/// Reports how an attempt that holds no run here ended, in the background; runner passes
/// leave the attempt alone until the log has the report (or it is no longer this
/// machine's), so it is neither started again nor reported twice.
fn report_final(
    node: &Arc<Node>,
    runner: &Arc<Runner>,
    job: JobId,
    attempt: u32,
    report: JobReport,
) {
    let key = (job, attempt);
    if !runner.reporting.lock().expect("reporting lock").insert(key) {
        return;
    }
    let (node, runner) = (node.clone(), runner.clone());
    tokio::spawn(async move {
        deliver(&node, job, attempt, report).await;
        runner
            .reporting
            .lock()
            .expect("reporting lock")
            .remove(&key);
    });
}

/// Sends one report, the same request every time, through elections and lost answers
/// until the log has it or the attempt is no longer this machine's (taken back, ended,
/// or the job is gone), or the node stops: a final report is then kept, to be sent after
/// the restart.
async fn deliver(node: &Node, job: JobId, attempt: u32, report: JobReport) {
    let request = writes::request(
        node,
        Command::ReportJob {
            job,
            attempt,
            report: report.clone(),
            at_ms: now_ms(),
        },
    );
    let mut stopping = node.runner.stopping.subscribe();
    let mut delay = Duration::from_millis(200);
    loop {
        let written = tokio::select! {
            written = node.write_request(request.clone()) => written,
            _ = stopping.wait_for(|stop| *stop) => return keep_for_restart(node, job, attempt, report),
        };
        match written {
            Ok(_) => return,
            Err(err) if err.code == ErrorCode::Conflict => return,
            Err(err) => {
                tracing::warn!(job = %job, attempt, error = %err.message, "could not report on a job attempt; retrying");
            }
        }
        let still_mine = node.fleet.read(|state| {
            state
                .jobs
                .get(&job)
                .and_then(|j| j.current_attempt())
                .is_some_and(|a| {
                    a.number == attempt && a.machine == node.id && a.finished_at_ms.is_none()
                })
        });
        if !still_mine {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopping.wait_for(|stop| *stop) => return keep_for_restart(node, job, attempt, report),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Keeps a final report the stopping node could not send (a `running` report is moot by
/// then). Sent again after the restart, it is refused as a conflict if this one landed.
fn keep_for_restart(node: &Node, job: JobId, attempt: u32, report: JobReport) {
    if report == JobReport::Running {
        return;
    }
    let kept = kept::KeptReport {
        job,
        attempt,
        report,
    };
    if let Err(err) = kept::keep(&node.config.data_dir, &kept) {
        tracing::warn!(job = %job, attempt, %err, "could not keep a job report over the restart");
    }
}
