//! The chaos harness, shared by the bounded test (`daemon/tests/exec/chaos/`) and the long
//! run (`examples/chaos.rs`, which includes this directory by path): a fleet of `shoald`
//! containers on a Docker network of its own, clients submitting keyed jobs, faults, and
//! the invariants checked at the end.
//!
//! ```text
//!  host (this process)                          Docker network shoal-chaos-<run>
//!  ┌───────────────────────────┐  127.0.0.1:port ┌─────┐ ┌─────┐      ┌─────┐
//!  │ clients ── POST /v1/jobs ─┼────────────────▶│ n1  │ │ n2  │ ...  │ n5  │
//!  │ probe   ── POST /v1/jobs  │   (published)   └──┬──┘ └──┬──┘      └──┬──┘
//!  │ sampler ── GET /v1/cluster│                    │ jobs: sh -c 'echo mark >> /marks/..'
//!  │ faults  ── docker kill,   │                    ▼       ▼            ▼
//!  │   restart, network cut    │               marks directory (bind mount of a host tempdir)
//!  │ check: records + marks ◀──┼───────────────────────────────────────────────
//!  └───────────────────────────┘
//! ```
//!
//! The only traffic is to 127.0.0.1 and inside the network the harness creates.

// The test and the example each use part of it.
#![allow(dead_code)]

pub mod check;
pub mod client;
pub mod faults;
pub mod fleet;
pub mod report;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use faults::Fault;
pub use fleet::{Fleet, FleetOptions};
pub use report::Report;

/// What one chaos run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Faults, in order.
    pub faults: Vec<Fault>,
    /// Clients that each submit one keyed job at a time.
    pub clients: usize,
    /// How often the probe starts a write.
    pub probe_every: Duration,
    /// How long a killed or cut-off machine stays away.
    pub down_for: Duration,
    /// Quiet time after each fault's liveness check, before the next fault.
    pub settle: Duration,
}

/// Runs `plan` against `fleet`: clients and probe throughout, the faults one after another,
/// then waits for the acknowledged jobs to finish and checks everything.
pub async fn run(fleet: Arc<Fleet>, plan: &Plan) -> anyhow::Result<Report> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let book = Arc::new(client::Book::new());
    let samples = Arc::new(check::Samples::default());
    let mut tasks = Vec::new();
    for c in 0..plan.clients {
        tasks.push(tokio::spawn(client::client_loop(
            fleet.clone(),
            book.clone(),
            format!("{}-c{c}", fleet.name),
            stop_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(client::probe_loop(
        fleet.clone(),
        book.clone(),
        format!("{}-p", fleet.name),
        plan.probe_every,
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(check::sample_loop(
        fleet.clone(),
        samples.clone(),
        stop_rx.clone(),
    )));
    // Some load before the first fault.
    tokio::time::sleep(plan.settle).await;
    let mut rounds = Vec::new();
    for (i, fault) in plan.faults.iter().enumerate() {
        let round = faults::run_fault(&fleet, &book, *fault, i + 1, plan).await;
        println!("{round}");
        rounds.push(round);
        tokio::time::sleep(plan.settle).await;
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let checked = check::check(&fleet, &book, &samples).await?;
    Ok(Report::new(&book, rounds, checked))
}
