//! The bounded chaos run: five `shoald` containers on a Docker network of their own, clients
//! submitting keyed jobs, a leader and a follower kill, a leader and a follower partition,
//! and a leader killed while it runs a job; then every invariant and, after each fault,
//! liveness on the machine it hit. About two minutes.
//! The long run with every fault is `examples/chaos.rs`, on the same [`harness`].
//!
//! Needs a Docker engine and Debian's static busybox; fails, saying so, without either.

pub mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{Fault, Fleet, FleetOptions, Plan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_under_faults_keeps_every_acknowledged_job_and_runs_new_work() {
    let _alone = crate::support::one_container_fleet_at_a_time().await;
    let began = Instant::now();
    let fleet = Fleet::start(FleetOptions {
        shoald: env!("CARGO_BIN_EXE_shoald").into(),
        nodes: 5,
        snapshot_every_logs: 500,
    })
    .await
    .expect("a five-machine fleet in Docker");
    let fleet = Arc::new(fleet);
    let plan = Plan {
        faults: vec![
            Fault::LeaderKill,
            Fault::FollowerKill,
            Fault::LeaderPartition,
            Fault::FollowerPartition,
            Fault::LeaderKillWhileRunning,
        ],
        clients: 2,
        probe_every: Duration::from_millis(100),
        down_for: Duration::from_secs(3),
        settle: Duration::from_secs(3),
    };
    // Every wait inside is bounded; this bounds the whole, in case.
    let run = harness::run(fleet.clone(), &plan);
    let report = tokio::time::timeout(Duration::from_secs(480), run)
        .await
        .unwrap_or_else(|_| panic!("the chaos run took over 8 minutes\n{}", fleet.log_tails(20)))
        .expect("the chaos run");
    println!("{report}\nin {:.0}s", began.elapsed().as_secs_f64());
    let logs = || fleet.log_tails(20);
    assert!(
        report.checked.acknowledged > 50,
        "too few jobs acknowledged to mean anything:\n{report}\n{}",
        logs()
    );
    assert!(report.failures().is_empty(), "{report}\n{}", logs());
    // Pre-vote: a follower back from a partition does not depose a healthy leader.
    assert!(report.heals_without_election(), "{report}\n{}", logs());
    drop(fleet);
}
