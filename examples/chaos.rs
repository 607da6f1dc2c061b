//! The long chaos run: five `shoald` containers (an image `FROM scratch` with this build's
//! binary) on a Docker network of their own, clients submitting keyed jobs, every fault of
//! the suite in turn for several rounds, then the invariants; prints the figures
//! `BENCHMARKS.md` keeps. The harness is the bounded test's (`daemon/tests/exec/chaos/`).
//!
//! Run: `cargo build --release -p shoal-daemon --bin shoald && cargo run --release -p
//! shoal-examples --example chaos -- [--rounds N] [--clients N] [--down SECS] [--logs DIR]`
//! (`--logs`: keep every container's log there).
//!
//! Needs a Docker engine and Debian's static busybox. It stops by itself after the last
//! round; Ctrl-C (or a failure) removes the containers, the network and the image too.

#[path = "../daemon/tests/exec/chaos/harness/mod.rs"]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{Fault, Fleet, FleetOptions, Plan};

/// The value after `flag` on the command line, parsed, else `default`.
fn arg<T: std::str::FromStr>(flag: &str, default: T) -> anyhow::Result<T> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == flag) {
        None => Ok(default),
        Some(at) => args
            .get(at + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = arg("--rounds", 2)?;
    let clients: usize = arg("--clients", 3)?;
    let down: u64 = arg("--down", 3)?;
    let logs: String = arg("--logs", String::new())?;
    let logs = Some(logs).filter(|dir| !dir.is_empty());
    let exe = std::env::current_exe()?;
    let shoald = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|target| target.join("shoald"))
        .filter(|path| path.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no shoald next to {}: build it first with `cargo build -p shoal-daemon --bin shoald` \
                 (the same profile as this example)",
                exe.display()
            )
        })?;
    println!(
        "chaos: 5 shoald containers ({}), {rounds} rounds of {} faults, {clients} clients, \
         machines away {down}s",
        shoald.display(),
        Fault::ALL.len()
    );
    let began = Instant::now();
    let fleet = Arc::new(
        Fleet::start(FleetOptions {
            shoald,
            nodes: 5,
            snapshot_every_logs: 1000,
        })
        .await?,
    );
    println!("formed in {:.1}s", began.elapsed().as_secs_f64());
    let plan = Plan {
        faults: (0..rounds).flat_map(|_| Fault::ALL).collect(),
        clients,
        probe_every: Duration::from_millis(100),
        down_for: Duration::from_secs(down),
        settle: Duration::from_secs(3),
    };
    let report = tokio::select! {
        report = harness::run(fleet.clone(), &plan) => report,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; the fleet is removed")),
    };
    if let Some(dir) = &logs {
        fleet.save_logs(std::path::Path::new(dir))?;
        println!("container logs in {dir}");
    }
    let report = report?;
    println!("\n{report}in {:.0}s", began.elapsed().as_secs_f64());
    drop(fleet);
    if !report.failures().is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
