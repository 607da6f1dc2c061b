//! Container runs on the real engine: output and exit code, cancel with `docker stop`,
//! timeout, limits and labels as the engine sees them, and Docker being absent.

use std::time::{Duration, Instant};

use shoal_daemon::exec::confine::{Confinement, ContainerLimits};
use shoal_daemon::exec::docker::container_name;
use shoal_daemon::exec::{
    DockerConfig, DockerExecutor, ExecError, Executor, Outcome, RunHandle, Stream,
};

use crate::support::{
    Containers, container_exists, container_sh as sh, docker, job_id, require_docker, test_image,
    wait_for_text,
};

/// An executor for one test. Tests keep it alive until the run ends: dropping it lets go
/// of its containers, as a stopping daemon does.
fn node() -> String {
    format!("exec-test-{}", std::process::id())
}

/// The container of attempt `attempt` of `job`, as [`executor`] names it.
fn name(job: u64, attempt: u32) -> String {
    container_name(Some(&node()), job, attempt)
}

fn executor() -> DockerExecutor {
    DockerExecutor::new(DockerConfig {
        node: Some(node()),
        timeout_grace: Duration::from_secs(1),
        ..DockerConfig::default()
    })
}

async fn wait(handle: &RunHandle) -> Outcome {
    tokio::time::timeout(Duration::from_secs(60), handle.wait())
        .await
        .expect("the container run ended within 60s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_available_gives_the_engine_version() {
    let version = require_docker();
    assert_eq!(executor().docker_available().await, Some(version));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_reports_its_output_and_a_non_zero_exit() {
    let _image = test_image();
    let job = job_id(11);
    let _containers = Containers(vec![name(job, 1)]);
    let mut spec = sh(
        job,
        "echo hello from $WHO; sleep 0.3; echo oops >&2; exit 7",
    );
    spec.env.insert("WHO".into(), "busybox".into());
    let executor = executor();
    let handle = executor.start(spec).await.unwrap();
    assert_eq!(wait(&handle).await, Outcome::Exited { exit_code: 7 });
    let output = handle.output().snapshot();
    assert_eq!(output.text(), "hello from busybox\noops\n");
    let streams: Vec<_> = output.chunks.iter().map(|c| c.stream).collect();
    assert_eq!(streams, [Stream::Stdout, Stream::Stderr]);
    assert!(
        !container_exists(&name(job, 1)),
        "the container is removed once its outcome is read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_container_is_stopped_then_killed_after_the_grace_and_removed() {
    let _image = test_image();
    let (polite, stubborn) = (job_id(12), job_id(13));
    let _containers = Containers(vec![name(polite, 1), name(stubborn, 1)]);
    let executor = executor();

    // Exits on SIGTERM: `docker stop` ends it well within the grace.
    let script = "trap 'echo stopping; exit 0' TERM; echo ready; while true; do sleep 0.1; done";
    let handle = executor.start(sh(polite, script)).await.unwrap();
    wait_for_text(handle.output(), "ready", Duration::from_secs(20)).await;
    let asked = Instant::now();
    handle.cancel(Duration::from_secs(20));
    assert_eq!(wait(&handle).await, Outcome::Cancelled);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(handle.output().snapshot().text(), "ready\nstopping\n");
    assert!(!container_exists(&name(polite, 1)));

    // PID 1 without a TERM handler ignores SIGTERM: killed once the grace has passed.
    let handle = executor
        .start(sh(stubborn, "echo ready; sleep 300"))
        .await
        .unwrap();
    wait_for_text(handle.output(), "ready", Duration::from_secs(20)).await;
    let asked = Instant::now();
    handle.cancel(Duration::from_secs(2));
    assert_eq!(wait(&handle).await, Outcome::Cancelled);
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "killed after the 2s grace ({took:?})"
    );
    assert!(!container_exists(&name(stubborn, 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_past_its_timeout_is_stopped() {
    let _image = test_image();
    let job = job_id(14);
    let _containers = Containers(vec![name(job, 1)]);
    let mut spec = sh(job, "echo started; sleep 300");
    spec.timeout = Some(Duration::from_secs(1));
    let executor = executor();
    let handle = executor.start(spec).await.unwrap();
    assert_eq!(wait(&handle).await, Outcome::TimedOut);
    assert_eq!(handle.output().snapshot().text(), "started\n");
    assert!(!container_exists(&name(job, 1)));
}

/// An older build took any timeout into the log; one too long to add to the clock used to
/// panic the node at every start while the job was there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_too_long_for_the_clock_means_none() {
    let _image = test_image();
    let job = job_id(19);
    let _containers = Containers(vec![name(job, 1)]);
    let mut spec = sh(job, "echo ran");
    spec.timeout = Some(Duration::from_secs(u64::MAX));
    let executor = executor();
    let handle = executor.start(spec).await.unwrap();
    assert_eq!(wait(&handle).await, Outcome::Exited { exit_code: 0 });
    assert_eq!(handle.output().snapshot().text(), "ran\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_labels_are_on_the_container() {
    let _image = test_image();
    let job = job_id(15);
    let container = name(job, 2);
    let _containers = Containers(vec![container.clone()]);
    let mut spec = sh(job, "sleep 300");
    spec.attempt = 2;
    spec.cpu_limit = Some(0.5);
    spec.memory_limit = Some(64 << 20);
    let executor = executor();
    let handle = executor.start(spec).await.unwrap();
    let seen = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{index .Config.Labels \"shoal.job\"}} \
         {{index .Config.Labels \"shoal.attempt\"}} {{index .Config.Labels \"shoal.managed\"}}",
        &container,
    ]);
    assert_eq!(seen, format!("{} 500000000 {job} 2 true", 64 << 20));
    handle.cancel(Duration::ZERO);
    assert_eq!(wait(&handle).await, Outcome::Cancelled);
}

/// The effective capabilities a container keeps, as `/proc/self/status` shows them:
/// CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID and NET_BIND_SERVICE.
const KEPT_CAP_EFF: &str = "00000000000004fb";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_is_confined_and_a_nodes_config_sets_its_limits() {
    let _image = test_image();
    let script = "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; sleep 300";
    let job = job_id(18);
    let _containers = Containers(vec![name(job, 1), name(job, 2), name(job, 3)]);
    let inspect = |container: &str| {
        docker(&[
            "inspect",
            "--format",
            "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.PidsLimit}}",
            container,
        ])
    };

    // The defaults: what the process sees, and the limits the engine holds it to.
    let executor = executor();
    let handle = executor.start(sh(job, script)).await.unwrap();
    wait_for_text(handle.output(), "NoNewPrivs", Duration::from_secs(30)).await;
    let status = handle.output().snapshot().text();
    assert!(
        status.contains(&format!("CapEff:\t{KEPT_CAP_EFF}")) && status.contains("NoNewPrivs:\t1"),
        "the container's status: {status}"
    );
    let gib = 1u64 << 30;
    assert_eq!(inspect(&name(job, 1)), format!("{gib} {gib} 1024"));
    handle.cancel(Duration::ZERO);
    assert_eq!(wait(&handle).await, Outcome::Cancelled);

    // A node's own limits, and a job's memory limit over the node's default.
    let tight = DockerExecutor::new(DockerConfig {
        node: Some(node()),
        timeout_grace: Duration::from_secs(1),
        limits: ContainerLimits {
            default_memory_mb: 64,
            pids_limit: 100,
        },
        ..DockerConfig::default()
    });
    let mut spec = sh(job, script);
    spec.attempt = 2;
    let handle = tight.start(spec).await.unwrap();
    wait_for_text(handle.output(), "NoNewPrivs", Duration::from_secs(30)).await;
    let mib64 = 64u64 << 20;
    assert_eq!(inspect(&name(job, 2)), format!("{mib64} {mib64} 100"));
    handle.cancel(Duration::ZERO);
    assert_eq!(wait(&handle).await, Outcome::Cancelled);

    // Policies loosen (NET_RAW) and tighten (no SETUID, 64 processes) it, and name a
    // user: the bounding set shows both (a user other than root holds no effective ones).
    let mut spec = sh(job, "grep CapBnd /proc/self/status; id -u; sleep 300");
    spec.attempt = 3;
    spec.confinement = Confinement {
        cap_add: ["NET_RAW".to_string()].into(),
        cap_drop: ["SETUID".to_string()].into(),
        pids_limit: Some(64),
    };
    spec.user = Some("1000:1000".into());
    let handle = executor.start(spec).await.unwrap();
    wait_for_text(handle.output(), "1000", Duration::from_secs(30)).await;
    let shown = handle.output().snapshot().text();
    // KEPT_CAP_EFF with NET_RAW (bit 13) and without SETUID (bit 7).
    assert_eq!(shown, "CapBnd:\t000000000000247b\n1000\n", "{shown}");
    assert_eq!(inspect(&name(job, 3)), format!("{gib} {gib} 64"));
    handle.cancel(Duration::ZERO);
    assert_eq!(wait(&handle).await, Outcome::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_absent_is_reported_not_fatal() {
    let missing = "/nonexistent/shoal-exec-test/docker.sock";
    let executor = DockerExecutor::new(DockerConfig {
        socket: Some(missing.into()),
        ..DockerConfig::default()
    });
    assert_eq!(executor.docker_available().await, None);
    match executor.start(sh(job_id(16), "true")).await {
        Err(ExecError::DockerUnavailable(reason)) => {
            assert!(
                reason.contains(missing),
                "the reason names the socket: {reason}"
            )
        }
        Err(other) => panic!("expected DockerUnavailable, got {other}"),
        Ok(_) => panic!("a run started without Docker"),
    }
    assert!(executor.adopt().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_image_runs_only_with_its_id() {
    let _image = test_image();
    let job = job_id(17);
    let _containers = Containers(vec![name(job, 1), name(job, 2)]);
    let id = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        crate::support::IMAGE,
    ]);
    let executor = executor();
    let mut pinned = sh(job, "exit 0");
    pinned.image_digest = Some(id.clone());
    let handle = executor.start(pinned).await.unwrap();
    assert_eq!(wait(&handle).await, Outcome::Exited { exit_code: 0 });
    let mut other = sh(job, "exit 0");
    other.attempt = 2;
    let wrong = format!("sha256:{}", "0".repeat(64));
    other.image_digest = Some(wrong.clone());
    let Err(err) = executor.start(other).await else {
        panic!("a run with another image id started");
    };
    let message = err.to_string();
    assert!(
        message.contains(&id) && message.contains(&wrong),
        "{message}"
    );
    assert!(!container_exists(&name(job, 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_check_finds_present_missing_and_wrongly_pinned_images() {
    let _image = test_image();
    let id = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        crate::support::IMAGE,
    ]);
    let present = (
        "default@v1".to_string(),
        crate::support::IMAGE.to_string(),
        Some(id.clone()),
    );
    let check =
        shoal_daemon::diagnose::images_check(&executor(), std::slice::from_ref(&present)).await;
    assert!(check.ok, "{check:?}");
    assert!(
        check.detail.contains(&format!("present ({id})")),
        "{check:?}"
    );
    let missing = ("py@v2".to_string(), "no-such-image:local".to_string(), None);
    let wrong = (
        "pinned@v1".to_string(),
        crate::support::IMAGE.to_string(),
        Some(format!("sha256:{}", "0".repeat(64))),
    );
    let check = shoal_daemon::diagnose::images_check(&executor(), &[present, missing, wrong]).await;
    assert!(!check.ok);
    assert!(
        check.detail.contains("py@v2: no-such-image:local missing"),
        "{check:?}"
    );
    assert!(
        check.detail.contains("not the pinned sha256:000"),
        "{check:?}"
    );
}

/// A run with GPUs reaches the engine as `docker run --gpus '"device=0,1"'` does: an engine
/// without the NVIDIA container toolkit (this machine's, CI's) refuses it naming the
/// driver, and the attempt fails with the engine's words; one with the toolkit gets the
/// request on the container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_gpus_asks_the_engine_for_nvidia_devices() {
    let _image = test_image();
    let job = job_id(19);
    let container = name(job, 1);
    let _containers = Containers(vec![container.clone()]);
    let mut spec = sh(job, "sleep 300");
    spec.gpus = vec![0, 1];
    let executor = executor();
    let toolkit = docker(&["info", "--format", "{{json .Runtimes}}"]).contains("nvidia");
    match executor.start(spec).await {
        Err(err) => {
            assert!(!toolkit, "the engine has the NVIDIA toolkit, yet: {err}");
            let message = err.to_string();
            assert!(message.contains("nvidia"), "{message}");
        }
        Ok(handle) => {
            let seen = docker(&[
                "inspect",
                "--format",
                "{{range .HostConfig.DeviceRequests}}{{.Driver}} {{.DeviceIDs}}{{end}} \
                 {{index .Config.Labels \"shoal.gpus\"}}",
                &container,
            ]);
            assert_eq!(seen, "nvidia [0 1] 0,1");
            handle.cancel(Duration::ZERO);
            wait(&handle).await;
        }
    }
}
