//! Sessions on a 3-voter in-process cluster on 127.0.0.1 against the Docker CLI, on the
//! same engine and image (`FROM scratch` busybox, built here):
//! Run: `cargo run --release -p shoal-examples --example bench_sessions`
//!
//! 1. Create to running: `POST /v1/sessions` until the leader's replica shows the session
//!    running, against `docker run -d` of the same image and command to its exit; 20
//!    rounds each way, alternating, after 3 not counted. Each session and container is
//!    removed after its round, untimed.
//! 2. Exec round trip: `POST /v1/sessions/{id}/exec` of `true` to the node running the
//!    session and to another node (one peer RPC hop more), against `docker exec` of the
//!    same container; 50 rounds each, alternating, after 3 not counted.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shoal_daemon::exec::docker::container_name;
use shoal_daemon::testsuite::Cluster;
use shoal_daemon::{Node, Timings};
use shoal_protocol::{JobId, JobState};

// The allocator shoald runs on, so the figures are shoald's.
#[global_allocator]
static ALLOCATOR: shoal_daemon::Allocator = shoal_daemon::Allocator;

#[path = "common/docker.rs"]
mod docker;

const IMAGE: &str = "shoal-bench-sessions:local";
const CREATE_ROUNDS: usize = 20;
const EXEC_ROUNDS: usize = 50;
const WARMUP: usize = 3;
const WAIT_CAP: Duration = Duration::from_secs(60);
/// A shell that waits, and ends at once on SIGTERM.
const SLEEPER: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    docker::require_engine("bench_sessions")?;
    let image = docker::Image::build(IMAGE)?;
    let http = shoal_daemon::testsuite::http_client_builder()
        .default_headers(shoal_daemon::testsuite::keyed_headers())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let timings = Timings {
        snapshot_every_logs: Timings::default().snapshot_every_logs,
        ..Timings::fast()
    };
    let cluster = Cluster::start_with(3, timings).await?;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    let api = cluster.api(leader);
    let template = json!({"image": image.tag(), "command": ["sh", "-c", SLEEPER]});
    call(
        &http,
        reqwest::Method::PUT,
        format!("{api}/v1/templates/bench"),
        &template,
    )
    .await?;

    let (sessions, runs) = create_to_running(&cluster, leader, &http).await?;
    let (local, remote, execs) = exec_round_trip(&cluster, leader, &http).await?;
    cluster.shutdown().await;
    drop(image);

    println!();
    println!(
        "{:<44} {:>7} {:>10} {:>10}",
        "figure", "samples", "p50", "p90"
    );
    let row = |name: &str, times: &[Duration]| {
        println!(
            "{name:<44} {:>7} {:>10} {:>10}",
            times.len(),
            ms(percentile(times, 50)),
            ms(percentile(times, 90))
        );
    };
    row("1 session create -> running", &sessions);
    row("  docker run -d", &runs);
    row("2 session exec, on its node", &local);
    row("  session exec, via another node", &remote);
    row("  docker exec", &execs);
    let ratio = |a: &[Duration], b: &[Duration]| {
        percentile(a, 50).as_secs_f64() / percentile(b, 50).as_secs_f64()
    };
    println!();
    println!(
        "create / docker run -d (p50s): {:.2}x (target <= 1.2x)",
        ratio(&sessions, &runs)
    );
    println!(
        "exec on its node / docker exec (p50s): {:.2}x (target <= 1.5x)",
        ratio(&local, &execs)
    );
    println!(
        "exec via another node / docker exec (p50s): {:.2}x (target <= 1.5x)",
        ratio(&remote, &execs)
    );
    Ok(())
}

/// Figure 1.
async fn create_to_running(
    cluster: &Cluster,
    leader: usize,
    http: &reqwest::Client,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let api = cluster.api(leader);
    let node = cluster.node(leader).clone();
    let (mut sessions, mut runs) = (Vec::new(), Vec::new());
    for round in 0..WARMUP + CREATE_ROUNDS {
        let session_first = round % 2 == 0;
        let (mut session_time, mut run_time) = (Duration::ZERO, Duration::ZERO);
        for session_turn in [session_first, !session_first] {
            if session_turn {
                let sent = Instant::now();
                let created = call(
                    http,
                    reqwest::Method::POST,
                    format!("{api}/v1/sessions"),
                    &json!({"template_id": "bench"}),
                )
                .await?;
                let id = JobId(created["id"].as_u64().unwrap_or_default());
                session_time = running_at(&node, id).await? - sent;
                let url = format!("{api}/v1/sessions/{id}/terminate");
                call(http, reqwest::Method::POST, url, &Value::Null).await?;
                ended(&node, id).await?;
            } else {
                let (took, container) =
                    docker::timed(&["run", "-d", IMAGE, "sh", "-c", SLEEPER]).await?;
                run_time = took;
                docker::docker(&["rm", "-f", &container])?;
            }
        }
        if round >= WARMUP {
            sessions.push(session_time);
            runs.push(run_time);
        }
    }
    sessions.sort();
    runs.sort();
    Ok((sessions, runs))
}

/// Figure 2.
async fn exec_round_trip(
    cluster: &Cluster,
    leader: usize,
    http: &reqwest::Client,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>, Vec<Duration>)> {
    let api = cluster.api(leader);
    let node = cluster.node(leader).clone();
    let created = call(
        http,
        reqwest::Method::POST,
        format!("{api}/v1/sessions"),
        &json!({"template_id": "bench"}),
    )
    .await?;
    let id = JobId(created["id"].as_u64().unwrap_or_default());
    running_at(&node, id).await?;
    let machine = node
        .fleet
        .read(|s| s.jobs[&id].current_attempt().map(|a| a.machine))
        .ok_or_else(|| anyhow::anyhow!("session {id} has no machine"))?;
    let here = (0..cluster.len())
        .find(|&i| cluster.node(i).id == machine)
        .ok_or_else(|| anyhow::anyhow!("no node runs session {id}"))?;
    let there = (here + 1) % cluster.len();
    let container = container_name(Some(&machine.to_string()), id.0, 1);
    let exec = |i: usize| format!("{}/v1/sessions/{id}/exec", cluster.api(i));
    let body = json!({"command": ["true"]});
    let (mut local, mut remote, mut execs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..WARMUP + EXEC_ROUNDS {
        let mut times = [Duration::ZERO; 3];
        for turn in 0..3 {
            let which = (turn + round) % 3;
            let start = Instant::now();
            match which {
                0 => {
                    let out = call(http, reqwest::Method::POST, exec(here), &body).await?;
                    anyhow::ensure!(out["exit_code"] == 0, "exec: {out}");
                }
                1 => {
                    let out = call(http, reqwest::Method::POST, exec(there), &body).await?;
                    anyhow::ensure!(out["exit_code"] == 0, "exec: {out}");
                }
                _ => {
                    docker::timed(&["exec", &container, "true"]).await?;
                }
            }
            times[which] = start.elapsed();
        }
        if round >= WARMUP {
            local.push(times[0]);
            remote.push(times[1]);
            execs.push(times[2]);
        }
    }
    let url = format!("{api}/v1/sessions/{id}/terminate");
    call(http, reqwest::Method::POST, url, &Value::Null).await?;
    ended(&node, id).await?;
    local.sort();
    remote.sort();
    execs.sort();
    Ok((local, remote, execs))
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: &Value,
) -> anyhow::Result<Value> {
    let response = http.request(method, &url).json(body).send().await?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "{url}: HTTP {status}: {answer}");
    Ok(answer)
}

/// The instant `node`'s replica first shows session `id` running.
async fn running_at(node: &Node, id: JobId) -> anyhow::Result<Instant> {
    wait_for(node, id, |state| state == JobState::Running).await
}

async fn ended(node: &Node, id: JobId) -> anyhow::Result<Instant> {
    wait_for(node, id, JobState::is_finished).await
}

async fn wait_for(
    node: &Node,
    id: JobId,
    done: impl Fn(JobState) -> bool,
) -> anyhow::Result<Instant> {
    let mut applied = node.fleet.applied();
    tokio::time::timeout(WAIT_CAP, async {
        loop {
            let state = node.fleet.read(|s| s.jobs.get(&id).map(|j| j.state));
            if state.is_some_and(&done) {
                return Instant::now();
            }
            let _ = applied.changed().await;
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("session {id} did not get there within {WAIT_CAP:?}"))
}

/// The nearest-rank `q`th percentile of sorted `values`.
fn percentile(values: &[Duration], q: usize) -> Duration {
    let i = (values.len() * q / 100).min(values.len().saturating_sub(1));
    values.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
