//! Idle memory, label propagation, failure detection and leader failover of 3 real `shoald`s.
//! Run: `cargo build --release -p shoal-daemon && cargo run --release -p shoal-examples --example bench_fleet`
//!
//! Node i binds 127.0.0.(20+i) on the default ports (API 7400, gossip 7401, peer RPC
//! 7402) with short timings from its config file. Every child is SIGKILLed when the
//! benchmark ends, fails, panics or gets Ctrl-C.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use shoal_protocol::api::{ClusterStatus, Health, MachineList, MachineView};
use shoal_protocol::{MachineId, MachineStatus};

#[path = "common/poll.rs"]
mod poll;
use poll::poll;

const NODES: usize = 3;
const ROUNDS: usize = 3;
/// Label propagations measured per round.
const PROPAGATIONS: usize = 5;
const SECRET: &str = "bench-cluster-secret-0123";
/// Each node's config file. A busy build host must not make the nodes BUSY. Gossip is
/// quicker than shipped; Raft keeps the shipped timings, so failover is what users get.
const CONFIG: &str = r#"load_threshold = 1000.0

[timings]
offline_after = "1500ms"
heartbeat_interval = "100ms"
gossip_interval = "100ms"
reconcile_interval = "100ms"
"#;

/// The three `shoald` children; dropping it SIGKILLs them and removes their data
/// (kept, with the logs, when the benchmark failed).
struct Fleet {
    shoald: PathBuf,
    dir: PathBuf,
    keep_dir: bool,
    children: Vec<Option<Child>>,
    ids: Vec<MachineId>,
    http: reqwest::Client,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let shoald = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|target| target.join("shoald"))
        .filter(|path| path.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no shoald next to {}: run `cargo build --release -p shoal-daemon` first",
                exe.display()
            )
        })?;
    let dir = std::env::temp_dir().join(format!("shoal-bench-fleet-{}", std::process::id()));
    let mut fleet = Fleet {
        shoald,
        dir,
        keep_dir: false,
        children: (0..NODES).map(|_| None).collect(),
        ids: Vec::new(),
        http: shoal_daemon::testsuite::http_client_builder()
            .no_proxy()
            .default_headers(shoal_daemon::testsuite::keyed_headers())
            .build()?,
    };
    let result = tokio::select! {
        figures = measure(&mut fleet) => figures,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let [rss, propagation, detection, failover] = result.map_err(|err| fleet.explain(err))?;
    println!("3 shoald processes on 127.0.0.20-22, {ROUNDS} rounds");
    println!(
        "{:<24} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "figure", "samples", "min", "median", "max", "target"
    );
    row("idle RSS per node (MiB)", rss, "< 25");
    row("label propagation (ms)", propagation, "< 500");
    row("failure detection (ms)", detection, "< 5000");
    row("leader failover (ms)", failover, "< 1000");
    Ok(())
}

/// Forms the fleet, then runs the rounds: idle RSS (MiB), then propagation, detection
/// and failover times (ms).
async fn measure(fleet: &mut Fleet) -> anyhow::Result<[Vec<f64>; 4]> {
    for i in 0..NODES {
        fleet.spawn(i)?;
    }
    for i in 0..NODES {
        let health = poll(Duration::from_secs(20), 50, "the API", async || {
            fleet.health(i).await
        })
        .await?;
        fleet.ids.push(health.machine_id);
    }

    let [mut rss, mut propagation, mut detection, mut failover] = [const { Vec::new() }; 4];
    for round in 0..ROUNDS {
        fleet.wait_formed().await?;
        tokio::time::sleep(Duration::from_secs(10)).await;
        for child in fleet.children.iter().flatten() {
            rss.push(vm_rss_kib(child.id())? as f64 / 1024.0);
        }

        for k in 0..PROPAGATIONS {
            propagation.push(fleet.propagate(&format!("r{round}-{k}")).await?);
        }

        let leader = fleet.leader().await?;
        let victim = (leader + 1 + round % 2) % NODES;
        detection.push(fleet.detect(victim).await?);
        fleet.spawn(victim)?;
        fleet.wait_formed().await?;

        let leader = fleet.leader().await?;
        failover.push(fleet.failover(leader, round).await?);
        fleet.spawn(leader)?;
    }

    Ok([rss, propagation, detection, failover])
}

impl Fleet {
    fn api(&self, i: usize) -> String {
        format!("https://127.0.0.{}:7400", 20 + i)
    }

    /// Starts (or restarts, on the same data) node `i`.
    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let data = self.dir.join(format!("n{i}"));
        std::fs::create_dir_all(&data)?;
        // The fleet CA the benchmark's client trusts, where shoald looks for it.
        if shoal_daemon::tls::FleetCa::load(&data)?.is_none() {
            shoal_daemon::testsuite::TEST_CA.store(&data)?;
        }
        let config = self.dir.join(format!("n{i}.toml"));
        std::fs::write(&config, CONFIG)?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("n{i}.log")))?;
        let mut cmd = Command::new(&self.shoald);
        cmd.arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .args(["--bind", &format!("127.0.0.{}", 20 + i)])
            .args(["--node-name", &format!("bench-{i}")])
            .args(["--cluster-secret", SECRET])
            .env("SHOAL_BOOTSTRAP_KEY", shoal_daemon::testsuite::TEST_KEY)
            .env("NO_COLOR", "1")
            .stdout(log.try_clone()?)
            .stderr(log);
        if i > 0 {
            cmd.args(["--join", "127.0.0.20:7401"]);
        }
        self.children[i] = Some(cmd.spawn()?);
        Ok(())
    }

    fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let mut child = self.children[i].take().expect("node is running");
        let killed = child.kill(); // SIGKILL
        child.wait()?;
        killed?;
        Ok(())
    }

    /// Adds to `err` which nodes exited by themselves and why, and keeps the logs.
    fn explain(&mut self, mut err: anyhow::Error) -> anyhow::Error {
        self.keep_dir = true;
        for i in 0..NODES {
            let Some(Ok(Some(status))) = self.children[i].as_mut().map(Child::try_wait) else {
                continue;
            };
            let log = std::fs::read_to_string(self.dir.join(format!("n{i}.log")));
            let log = log.unwrap_or_default();
            let last = log
                .lines()
                .find(|l| l.starts_with("Error:"))
                .or(log.lines().last());
            err = err.context(format!(
                "node {i} exited ({status}): {}",
                last.unwrap_or("")
            ));
        }
        err.context(format!("node logs kept in {}", self.dir.display()))
    }

    fn running(&self) -> Vec<usize> {
        (0..NODES).filter(|i| self.children[*i].is_some()).collect()
    }

    /// `GET {api of node i}{path}`, failing on an error status.
    async fn get(&self, i: usize, path: &str) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{path}", self.api(i));
        let response = self
            .http
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await?;
        Ok(response.error_for_status()?)
    }

    async fn health(&self, i: usize) -> Option<Health> {
        self.get(i, "/health").await.ok()?.json().await.ok()
    }

    async fn machines(&self, i: usize) -> Option<MachineList> {
        self.get(i, "/v1/machines").await.ok()?.json().await.ok()
    }

    async fn cluster(&self, i: usize) -> Option<ClusterStatus> {
        self.get(i, "/v1/cluster").await.ok()?.json().await.ok()
    }

    /// Node `subject` as node `observer` shows it.
    async fn machine(&self, observer: usize, subject: usize) -> Option<MachineView> {
        let path = format!("/v1/machines/{}", self.ids[subject]);
        self.get(observer, &path).await.ok()?.json().await.ok()
    }

    /// Approves the machines that joined with the secret, as an admin would, and waits
    /// until every node lists 3 ONLINE machines and shows 3 voters.
    async fn wait_formed(&self) -> anyhow::Result<()> {
        poll(
            Duration::from_secs(60),
            50,
            "3 ONLINE machines and 3 voters everywhere",
            async || {
                // Machines that came with the secret alone wait for an admin's approval.
                for pending in self.machines(0).await?.pending {
                    let url = format!("{}/v1/machines/{}/approve", self.api(0), pending.id);
                    self.http.post(url).send().await.ok()?;
                }
                for i in 0..NODES {
                    let list = self.machines(i).await?.machines;
                    let online = list.iter().filter(|m| m.status == MachineStatus::Online);
                    if online.count() != NODES || self.cluster(i).await?.voters.len() != NODES {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await
    }

    /// The index of the node the first running node names leader.
    async fn leader(&self) -> anyhow::Result<usize> {
        let first = self.running()[0];
        poll(Duration::from_secs(10), 20, "a leader", async || {
            let leader = self.cluster(first).await?.leader?;
            self.ids.iter().position(|id| *id == leader)
        })
        .await
    }

    /// Ms from sending `PUT bench=<value>` to node 0 until nodes 1 and 2 both show it.
    async fn propagate(&self, value: &str) -> anyhow::Result<f64> {
        let url = format!("{}/v1/machines/{}/labels", self.api(0), self.ids[2]);
        let body = serde_json::json!({ "set": { "bench": value } });
        let start = Instant::now();
        self.http
            .put(url)
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
        poll(
            Duration::from_secs(5),
            5,
            "the label on nodes 1 and 2",
            async || {
                for observer in [1, 2] {
                    let machine = self.machine(observer, 2).await?;
                    machine.labels.get("bench").filter(|v| *v == value)?;
                }
                Some(())
            },
        )
        .await?;
        Ok(ms(start))
    }

    /// Ms from `kill -9` of `victim` until both survivors report it OFFLINE.
    async fn detect(&mut self, victim: usize) -> anyhow::Result<f64> {
        let start = Instant::now();
        self.kill(victim)?;
        poll(
            Duration::from_secs(15),
            20,
            "the victim OFFLINE on both survivors",
            async || {
                for observer in self.running() {
                    let machine = self.machine(observer, victim).await?;
                    (machine.status == MachineStatus::Offline).then_some(())?;
                }
                Some(())
            },
        )
        .await?;
        Ok(ms(start))
    }

    /// Ms from `kill -9` of the leader until a label write through a survivor succeeds.
    async fn failover(&mut self, leader: usize, round: usize) -> anyhow::Result<f64> {
        let start = Instant::now();
        self.kill(leader)?;
        let survivor = self.running()[0];
        let url = format!(
            "{}/v1/machines/{}/labels",
            self.api(survivor),
            self.ids[survivor]
        );
        let body = serde_json::json!({ "set": { "failover": round.to_string() } });
        poll(
            Duration::from_secs(15),
            10,
            "a write after the leader died",
            async || {
                let sent = self
                    .http
                    .put(&url)
                    .json(&body)
                    .timeout(Duration::from_millis(300));
                sent.send().await.ok()?.error_for_status().ok().map(|_| ())
            },
        )
        .await?;
        Ok(ms(start))
    }
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// Resident memory of process `pid`, from /proc.
fn vm_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}

fn row(figure: &str, mut samples: Vec<f64>, target: &str) {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    println!(
        "{figure:<24} {n:>7} {:>9.1} {:>9.1} {:>9.1} {target:>9}",
        samples[0],
        samples[n / 2],
        samples[n - 1]
    );
}
