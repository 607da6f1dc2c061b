//! A machine that comes back after the fleet moved its work elsewhere never runs that work
//! again: its replica replays attempts the log has since finished, and the runner starts
//! nothing before it has caught up with the leader.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use shoal_daemon::config::Timings;
use shoal_daemon::testsuite::{Cluster, init_logs};
use shoal_protocol::JobState;

use crate::http::send;

fn runs(marks: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(marks)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_back_from_away_never_runs_what_finished_meanwhile() {
    init_logs();
    // node-2 runs nothing until it is restarted: its job waits there, dispatched.
    let idle = Arc::new(AtomicBool::new(true));
    let flag = idle.clone();
    let mut cluster = Cluster::start_configured(3, Timings::fast(), move |config| {
        if config.node_name == "node-2" && flag.load(Ordering::SeqCst) {
            config.run_jobs = false;
        }
    })
    .await
    .unwrap();
    let api = cluster.api(0);
    let (away, elsewhere) = (cluster.node(2).id, cluster.node(0).id);
    let label = |machine, body| {
        send(
            reqwest::Method::PUT,
            format!("{api}/v1/machines/{machine}/labels"),
            body,
        )
    };
    let (status, _) = label(away, json!({"set": {"only": "here"}})).await;
    assert_eq!(status, 200);

    let dir = shoal_daemon::testsuite::dir_for_process_jobs();
    let marks = dir.path().join("runs");
    let record = |name: &str| format!("echo {name} >> {}", marks.display());
    let body =
        json!({"command": ["sh", "-c", record("moved")], "required_labels": {"only": "here"}});
    let job = cluster.submit(0, body).await;
    cluster
        .wait_job(2, job, "dispatched to node-2", |j| {
            j.state == JobState::Dispatched
                && j.current_attempt().is_some_and(|a| a.machine == away)
        })
        .await;

    // node-2 goes away; its label moves; the leader takes the job back once node-2 is
    // STALE and it runs on node-0.
    cluster.stop(2).await;
    let (status, _) = label(away, json!({"remove": ["only"]})).await;
    assert_eq!(status, 200);
    let (status, _) = label(elsewhere, json!({"set": {"only": "here"}})).await;
    assert_eq!(status, 200);
    cluster
        .wait_job(0, job, "completed elsewhere", |j| {
            j.state == JobState::Completed
        })
        .await;
    assert_eq!(runs(&marks), ["moved"]);

    // Back, now running jobs: its replica starts from what it saved (the job dispatched
    // to it) and catches up.
    idle.store(false, Ordering::SeqCst);
    cluster.restart(2).await.unwrap();
    // It does run new work (so the check below is not passing on a machine that runs
    // nothing): a job pinned to it completes.
    let pinned = json!({"command": ["sh", "-c", record("pinned")], "agent_id": away.to_string()});
    let control = cluster.submit(0, pinned).await;
    cluster
        .wait_job(2, control, "the pinned job completed", |j| {
            j.state == JobState::Completed
        })
        .await;
    cluster
        .wait_job(2, job, "caught up", |j| j.state == JobState::Completed)
        .await;
    // A run started on the first pass after the restart would have written by now; give
    // a slow one a moment more.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(runs(&marks), ["moved", "pinned"], "the moved job ran again");
    cluster.shutdown().await;
}
