//! Committed writes per second on a 3-node in-process cluster, every append fsynced.
//! Run: `cargo run --release -p shoal-examples --example bench_writes`
//!
//! C client tasks each label the leader's machine a fixed number of times (20 s cap per
//! run) through the leader's `Node::write`, a follower's `Node::write_as` (a user's
//! change, audited, forwarded over peer RPC with the user's key, which the leader checks
//! again), or the leader's API over HTTPS (`https`) and, on a second fleet started with
//! plain HTTP, over HTTP (`http`). Everything stays on 127.0.0.1.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shoal_daemon::Node;
use shoal_daemon::Timings;
use shoal_daemon::keys::{Caller, authenticate};
use shoal_daemon::testsuite::{Cluster, TEST_KEY, wait_until};
use shoal_daemon::tls::ApiTls;
use shoal_protocol::{Command, Labels, MachineId, Response};

// The allocator shoald runs on, so the figures are shoald's.
#[global_allocator]
static ALLOCATOR: shoal_daemon::Allocator = shoal_daemon::Allocator;

/// Writes per run, split over the clients (at least `MIN_PER_CLIENT` each).
const WRITES_PER_RUN: usize = 8192;
const MIN_PER_CLIENT: usize = 16;
/// No run lasts longer than this.
const RUN_CAP: Duration = Duration::from_secs(20);
/// Numbers the writes, so every label value is new.
static SEQ: AtomicUsize = AtomicUsize::new(0);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cluster = Cluster::start(3).await?;
    wait_until(Duration::from_secs(20), "3 voters", || {
        let members = shoal_daemon::node::members(&cluster.node(0).raft);
        (members.values().filter(|(_, voter)| *voter).count() == 3).then_some(())
    })
    .await?;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    let follower = (0..3).find(|i| *i != leader).expect("3 nodes");
    let target = cluster.node(leader).id;

    println!("3 nodes on 127.0.0.1, leader node-{leader}; writes label the leader's machine");
    println!(
        "{:<10} {:>7} {:>7} {:>6} {:>7} {:>9} {:>8} {:>8}",
        "via", "clients", "writes", "errors", "secs", "writes/s", "p50 ms", "p99 ms"
    );
    for (via, node, clients) in [
        ("leader", leader, 1),
        ("leader", leader, 16),
        ("leader", leader, 64),
        ("leader", leader, 256),
        ("follower", follower, 64),
    ] {
        let node = cluster.node(node).clone();
        // A follower forwards only a user's change, with the user's key.
        let caller = (via == "follower")
            .then(|| node.fleet.read(|s| authenticate(s, TEST_KEY)))
            .transpose()?;
        let write = move |n| {
            let (node, caller) = (node.clone(), caller.clone());
            async move { label(&node, caller.as_ref(), target, n).await }
        };
        run(clients, write).await.print(via, clients);
    }

    cluster.shutdown().await;

    // The API row over HTTPS (the default) and over plain HTTP (`--insecure-http`), each
    // on a fresh fleet, so the two differ only in TLS.
    for (via, tls) in [("https", true), ("http", false)] {
        let cluster = Cluster::start_configured(3, Timings::fast(), move |config| {
            if !tls {
                config.api_tls = ApiTls::Off;
            }
        })
        .await?;
        let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
        run(64, http_writes(&cluster, leader)?).await.print(via, 64);
        cluster.shutdown().await;
    }
    Ok(())
}

/// One write in flight.
type BoxedWrite = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A write through node `leader`'s API (HTTPS, or HTTP where the fleet serves it): sets
/// `bench=<n>` on the leader's machine. One client, so its connections are reused, as a
/// program calling the API would.
fn http_writes(
    cluster: &Cluster,
    leader: usize,
) -> anyhow::Result<impl Fn(usize) -> BoxedWrite + Clone + Send + 'static> {
    let http = shoal_daemon::testsuite::http_client_builder()
        .default_headers(shoal_daemon::testsuite::keyed_headers())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;
    let target = cluster.node(leader).id;
    let url = format!("{}/v1/machines/{target}/labels", cluster.api(leader));
    Ok(move |n: usize| {
        let request = http
            .put(&url)
            .json(&serde_json::json!({ "set": { "bench": n.to_string() } }));
        Box::pin(async move {
            let response = request.send().await?;
            anyhow::ensure!(response.status().is_success(), "HTTP {}", response.status());
            Ok(())
        }) as BoxedWrite
    })
}

/// One write through `node.write` (or `node.write_as` for `caller`): sets `bench=<n>` on
/// machine `target`.
async fn label(
    node: &Node,
    caller: Option<&Caller>,
    target: MachineId,
    n: usize,
) -> anyhow::Result<()> {
    let cmd = Command::LabelMachine {
        id: target,
        set: Labels::from_pairs([format!("bench={n}").as_str()])?,
        remove: vec![],
    };
    let written = match caller {
        Some(caller) => node.write_as(caller, cmd).await?,
        None => node.write(cmd).await?,
    };
    match written.response {
        Response::Machine(_) => Ok(()),
        other => anyhow::bail!("unexpected answer {other:?}"),
    }
}

struct Stats {
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: usize,
}

/// Runs `clients` tasks, each doing its share of `WRITES_PER_RUN` writes or stopping at `RUN_CAP`.
/// `write(n)` gets a number no other write in the process gets.
async fn run<F, Fut>(clients: usize, write: F) -> Stats
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let per_client = (WRITES_PER_RUN / clients).max(MIN_PER_CLIENT);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let write = write.clone();
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::with_capacity(per_client), 0);
                for _ in 0..per_client {
                    if start.elapsed() > RUN_CAP {
                        break;
                    }
                    let sent = Instant::now();
                    match write(SEQ.fetch_add(1, Ordering::Relaxed)).await {
                        Ok(()) => latencies.push(sent.elapsed()),
                        Err(err) => {
                            errors += 1;
                            if errors == 1 {
                                eprintln!("write failed: {err:#}");
                            }
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut stats = Stats {
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        errors: 0,
    };
    for task in tasks {
        let (latencies, errors) = task.await.expect("client task panicked");
        stats.latencies.extend(latencies);
        stats.errors += errors;
    }
    stats.elapsed = start.elapsed();
    stats.latencies.sort();
    stats
}

impl Stats {
    fn print(&self, via: &str, clients: usize) {
        let ms = |q: usize| {
            let lat = &self.latencies;
            lat.get((lat.len() * q / 100).min(lat.len().saturating_sub(1)))
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
        };
        let secs = self.elapsed.as_secs_f64();
        println!(
            "{via:<10} {clients:>7} {:>7} {:>6} {secs:>7.2} {:>9.0} {:>8.1} {:>8.1}",
            self.latencies.len(),
            self.errors,
            self.latencies.len() as f64 / secs,
            ms(50),
            ms(99),
        );
    }
}
