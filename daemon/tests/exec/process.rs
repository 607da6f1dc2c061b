//! Process runs: output and exit code, following, cancel (the whole group, SIGTERM then
//! SIGKILL after the grace) and timeout.

use std::time::{Duration, Instant};

use shoal_daemon::exec::{
    Executor, Outcome, ProcessConfig, ProcessExecutor, RunHandle, RunSpec, Stream,
};

use crate::support::wait_for_text;

fn sh(job: u64, script: &str) -> RunSpec {
    RunSpec {
        job,
        attempt: 1,
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..RunSpec::default()
    }
}

async fn start(spec: RunSpec) -> RunHandle {
    let config = ProcessConfig {
        timeout_grace: Duration::from_secs(1),
        ..ProcessConfig::default()
    };
    ProcessExecutor::new(config).start(spec).await.unwrap()
}

async fn wait(handle: &RunHandle) -> Outcome {
    tokio::time::timeout(Duration::from_secs(20), handle.wait())
        .await
        .expect("the run ended within 20s")
}

/// Whether `pid` is gone (or a zombie nobody has reaped yet: it runs no more).
fn process_gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_reports_its_output_and_exit_code() {
    assert!(
        std::env::var("CARGO_MANIFEST_DIR").is_ok(),
        "cargo sets this for the test, so the run could inherit it"
    );
    let mut spec = sh(
        1,
        "echo out; sleep 0.2; echo err >&2; sleep 0.2; echo \"greeting=$GREETING\"; \
         echo \"inherited=$CARGO_MANIFEST_DIR\"; exit 3",
    );
    spec.env.insert("GREETING".into(), "hello".into());
    let handle = start(spec).await;
    assert_eq!(wait(&handle).await, Outcome::Exited { exit_code: 3 });
    let output = handle.output().snapshot();
    assert!(output.closed);
    assert_eq!(
        output.text(),
        "out\nerr\ngreeting=hello\ninherited=\n",
        "both streams in arrival order, the spec's env and not the daemon's"
    );
    let streams: Vec<_> = output.chunks.iter().map(|c| c.stream).collect();
    assert_eq!(streams[..2], [Stream::Stdout, Stream::Stderr]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_process_can_be_read_and_followed() {
    let handle = start(sh(2, "echo first; sleep 2; echo second")).await;
    let mut follower = handle.output().follow();
    let first = tokio::time::timeout(Duration::from_secs(2), follower.next())
        .await
        .expect("output arrives while the process runs")
        .unwrap();
    assert_eq!(first.data, b"first\n");
    assert_eq!(handle.outcome(), None, "still running");
    assert_eq!(handle.output().snapshot().text(), "first\n");
    let second = follower.next().await.unwrap();
    assert_eq!(second.data, b"second\n");
    assert_eq!(follower.next().await, None, "the follow ends with the run");
    assert_eq!(wait(&handle).await, Outcome::Exited { exit_code: 0 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_terminates_the_whole_process_group() {
    let handle = start(sh(3, "sleep 300 & echo \"child=$!\"; wait")).await;
    wait_for_text(handle.output(), "\n", Duration::from_secs(5)).await;
    let text = handle.output().snapshot().text();
    let child = text
        .trim()
        .strip_prefix("child=")
        .expect("the child's pid")
        .to_string();
    assert!(!process_gone(&child), "the background sleep runs");

    let asked = Instant::now();
    handle.cancel(Duration::from_secs(10));
    assert_eq!(wait(&handle).await, Outcome::Cancelled);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "SIGTERM ended it well within the grace ({:?})",
        asked.elapsed()
    );
    assert!(
        process_gone(&child),
        "the grandchild {child} was signalled too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_a_process_that_traps_sigterm_after_the_grace() {
    let script = "trap 'echo got TERM' TERM; echo ready; while true; do sleep 0.1; done";
    let handle = start(sh(4, script)).await;
    wait_for_text(handle.output(), "ready", Duration::from_secs(5)).await;

    let asked = Instant::now();
    handle.cancel(Duration::from_secs(1));
    assert_eq!(wait(&handle).await, Outcome::Cancelled);
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "SIGKILL came after the 1s grace, not before ({took:?})"
    );
    // The shell may also report the `sleep` that SIGTERM ended ("Terminated").
    let text = handle.output().snapshot().text();
    assert!(
        text.starts_with("ready\n") && text.contains("got TERM\n"),
        "SIGTERM came first: {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_past_its_timeout_is_stopped() {
    let mut spec = sh(5, "echo started; sleep 30");
    spec.timeout = Some(Duration::from_millis(500));
    let started = Instant::now();
    let handle = start(spec).await;
    assert_eq!(wait(&handle).await, Outcome::TimedOut);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "stopped at its timeout ({took:?})"
    );
    assert_eq!(handle.output().snapshot().text(), "started\n");
}
