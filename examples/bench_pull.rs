//! First run of a job whose image the machine lacks: Shoal pulls it from a registry on
//! loopback and runs it, against `docker pull` then `docker run --rm` of the same image
//! from the same registry, on the same engine.
//! Run: `cargo run --release -p shoal-examples --example bench_pull`
//!
//! The registry is Debian's `docker-registry` on 127.0.0.1 at a free port, holding an image
//! built here `FROM scratch`: the host's static busybox and a 32 MiB layer of random bytes
//! (so the pull moves real data). Each round removes the image from the engine (untimed),
//! then times one side: a one-node in-process cluster, `POST /v1/jobs` of `true` in that
//! image until the replica shows the job completed; or `docker pull -q` plus `docker run
//! --rm IMAGE true`. 10 rounds each way, alternating, after 2 not counted.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shoal_daemon::testsuite::Cluster;
use shoal_daemon::{Node, Timings};
use shoal_protocol::{JobId, JobState};

// The allocator shoald runs on, so the figures are shoald's.
#[global_allocator]
static ALLOCATOR: shoal_daemon::Allocator = shoal_daemon::Allocator;

#[path = "common/docker.rs"]
mod docker;

const BASE: &str = "shoal-bench-pull-base:local";
const ROUNDS: usize = 10;
const WARMUP: usize = 2;
const LAYER_BYTES: usize = 32 << 20;
const WAIT_CAP: Duration = Duration::from_secs(120);
const REGISTRY: &str = "/usr/bin/docker-registry";

/// The registry, killed when dropped (then its storage removed).
struct Registry {
    child: Child,
    _storage: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    docker::require_engine("bench_pull")?;
    anyhow::ensure!(
        std::path::Path::new(REGISTRY).exists(),
        "bench_pull needs {REGISTRY}: `apt-get install -y docker-registry`"
    );
    let base = docker::Image::build(BASE)?;
    let (registry, host) = start_registry().await?;
    let image = format!("{host}/bench/pull:1");
    build_big_image(base.tag(), &image)?;
    docker::docker(&["push", "-q", &image])?;

    let http = shoal_daemon::testsuite::http_client_builder()
        .default_headers(shoal_daemon::testsuite::keyed_headers())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let cluster = Cluster::start_with(1, Timings::fast()).await?;
    cluster.wait_leader(Duration::from_secs(10)).await?;
    let api = cluster.api(0);
    let node = cluster.node(0).clone();

    let (mut shoal, mut plain) = (Vec::new(), Vec::new());
    for round in 0..WARMUP + ROUNDS {
        let shoal_first = round % 2 == 0;
        let (mut shoal_time, mut plain_time) = (Duration::ZERO, Duration::ZERO);
        for shoal_turn in [shoal_first, !shoal_first] {
            let _ = docker::docker(&["rmi", "-f", &image]);
            if shoal_turn {
                let job = json!({"image": image, "command": ["true"], "max_attempts": 1});
                let sent = Instant::now();
                let answer = http
                    .post(format!("{api}/v1/jobs"))
                    .json(&job)
                    .send()
                    .await?;
                let answer: Value = answer.json().await?;
                let id = JobId(answer["job"]["id"].as_u64().unwrap_or_default());
                let (done_at, state) = finished(&node, id).await?;
                anyhow::ensure!(state == JobState::Completed, "job {id} ended {state:?}");
                shoal_time = done_at - sent;
            } else {
                let (pull, _) = docker::timed(&["pull", "-q", &image]).await?;
                let (run, _) = docker::timed(&["run", "--rm", &image, "true"]).await?;
                plain_time = pull + run;
            }
        }
        if round >= WARMUP {
            shoal.push(shoal_time);
            plain.push(plain_time);
        }
    }
    cluster.shutdown().await;
    let _ = docker::docker(&["rmi", "-f", &image]);
    drop(registry);
    drop(base);

    shoal.sort();
    plain.sort();
    println!();
    println!(
        "{:<52} {:>7} {:>10} {:>10}",
        "figure", "samples", "p50", "p90"
    );
    let row = |name: &str, times: &[Duration]| {
        println!(
            "{name:<52} {:>7} {:>10} {:>10}",
            times.len(),
            ms(percentile(times, 50)),
            ms(percentile(times, 90))
        );
    };
    row("job, image missing: pull + run to completed", &shoal);
    row("  docker pull && docker run --rm", &plain);
    let ratio = percentile(&shoal, 50).as_secs_f64() / percentile(&plain, 50).as_secs_f64();
    println!();
    println!("job / docker pull && run (p50s): {ratio:.2}x (target <= 1.2x)");
    Ok(())
}

/// Starts the registry on a free loopback port; its `host:port`.
async fn start_registry() -> anyhow::Result<(Registry, String)> {
    let storage = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = storage.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            storage.path().join("data").display()
        ),
    )?;
    let child = Command::new(REGISTRY)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let registry = Registry {
        child,
        _storage: storage,
    };
    let host = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&host).is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the registry did not listen on {host}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((registry, host))
}

/// `image`: `base` and a layer of random bytes.
fn build_big_image(base: &str, image: &str) -> anyhow::Result<()> {
    let context = tempfile::tempdir()?;
    let mut blob = vec![0u8; LAYER_BYTES];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in blob.chunks_mut(8) {
        // xorshift: incompressible enough that the layer's size is what moves.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(context.path().join("blob"), blob)?;
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {base}\nCOPY blob /blob\n"),
    )?;
    docker::docker(&[
        "build",
        "-q",
        "-t",
        image,
        &context.path().to_string_lossy(),
    ])?;
    Ok(())
}

/// When `node`'s replica first shows job `id` finished, and how.
async fn finished(node: &Node, id: JobId) -> anyhow::Result<(Instant, JobState)> {
    let mut applied = node.fleet.applied();
    tokio::time::timeout(WAIT_CAP, async {
        loop {
            let state = node.fleet.read(|s| s.jobs.get(&id).map(|j| j.state));
            if let Some(state) = state.filter(|s| s.is_finished()) {
                return (Instant::now(), state);
            }
            let _ = applied.changed().await;
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("job {id} did not finish within {WAIT_CAP:?}"))
}

/// The nearest-rank `q`th percentile of sorted `values`.
fn percentile(values: &[Duration], q: usize) -> Duration {
    let i = (values.len() * q / 100).min(values.len().saturating_sub(1));
    values.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
