//! The write path under faults: forwarded writes whose answers are lost apply once, and
//! a report the log never answers does not stop a machine from starting its next job.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use shoal_daemon::Timings;
use shoal_daemon::testsuite::{Cluster, init_logs, wait_until};
use shoal_protocol::requests::REQUEST_LEVEL;
use shoal_protocol::{JobId, JobState};

use crate::http::post;

/// Waits until every node knows the fleet is at the level that brings request ids, so
/// every write it takes carries one.
async fn wait_request_ids(cluster: &Cluster) {
    cluster
        .wait_every_replica(Duration::from_secs(20), "request ids on every node", |s| {
            s.fleet_level >= REQUEST_LEVEL
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_writes_whose_answers_are_lost_apply_once() {
    init_logs();
    let cluster = Cluster::start_configured(3, Timings::fast(), |config| {
        config.run_jobs = false;
    })
    .await
    .unwrap();
    wait_request_ids(&cluster).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await.unwrap();
    let follower = (0..3).find(|i| *i != leader).unwrap();
    // Every third forwarded write applies on the leader, and then its answer is lost.
    cluster.node(leader).faults.drop_every_nth_forward_answer(3);

    // Submits without idempotency keys: only the request id keeps a retry from adding a job.
    let api = cluster.api(follower);
    let submits = (0..40).map(|n| {
        let url = format!("{api}/v1/jobs");
        async move {
            let body = json!({"command": ["echo", format!("w{n}")]});
            post(url, body).await
        }
    });
    let answers = futures::future::join_all(submits).await;
    let mut acknowledged = BTreeSet::new();
    for (status, body) in &answers {
        assert_eq!(*status, 201, "{body}");
        acknowledged.insert(JobId(body["job"]["id"].as_u64().expect("a job id")));
    }
    let dropped = cluster.node(leader).faults.forward_answers_dropped();
    assert!(dropped >= 10, "only {dropped} answers were dropped");
    assert_eq!(
        acknowledged.len(),
        40,
        "two submits were answered with one job"
    );

    // Every replica holds exactly the jobs that were acknowledged.
    for i in 0..3 {
        let jobs = || {
            let ids: BTreeSet<JobId> = cluster
                .node(i)
                .fleet
                .read(|s| s.jobs.keys().copied().collect());
            (ids.len() >= acknowledged.len()).then_some(ids)
        };
        let ids = wait_until(Duration::from_secs(10), "the jobs on every node", jobs)
            .await
            .unwrap();
        assert_eq!(ids, acknowledged, "node {i}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_never_answered_does_not_stop_the_next_job() {
    init_logs();
    let cluster = Cluster::start(1).await.unwrap();
    wait_request_ids(&cluster).await;
    let node = cluster.node(0);
    let api = cluster.api(0);
    let dir = shoal_daemon::testsuite::dir_for_process_jobs();
    let touch = |name: &str| {
        let path = dir.path().join(name);
        let body = json!({ "command": ["touch", path.to_str().unwrap()] });
        (path, body)
    };

    // This node leads; openraft never answers its proposals of job reports from now on,
    // as when a snapshot install purges the entry of a write it still waits for.
    node.faults.never_answer_reports(true);
    let (first_ran, first) = touch("first");
    let (status, body) = post(format!("{api}/v1/jobs"), first).await;
    assert_eq!(status, 201, "{body}");
    let first = JobId(body["job"]["id"].as_u64().unwrap());
    wait_until(Duration::from_secs(10), "the first job to run", || {
        first_ran.exists().then_some(())
    })
    .await
    .unwrap();

    // Its reports hang; the next job dispatched here still starts.
    let (second_ran, second) = touch("second");
    let (status, body) = post(format!("{api}/v1/jobs"), second).await;
    assert_eq!(status, 201, "{body}");
    let second = JobId(body["job"]["id"].as_u64().unwrap());
    wait_until(Duration::from_secs(15), "the second job to run", || {
        second_ran.exists().then_some(())
    })
    .await
    .unwrap();
    let state = |id| node.fleet.read(|s| s.jobs.get(&id).map(|j| j.state));
    assert_eq!(state(first), Some(JobState::Dispatched));

    // Once reports are answered again, the retries land and both jobs complete.
    node.faults.never_answer_reports(false);
    for job in [first, second] {
        cluster
            .wait_job(0, job, "the job to complete", |j| {
                j.state == JobState::Completed
            })
            .await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_report_unsent_at_shutdown_is_sent_after_the_restart() {
    init_logs();
    let mut cluster = Cluster::start(1).await.unwrap();
    wait_request_ids(&cluster).await;
    let dir = shoal_daemon::testsuite::dir_for_process_jobs();
    let ran = dir.path().join("ran");
    // The job ends at once with exit code 7, but no report of it reaches the log.
    cluster.node(0).faults.never_answer_reports(true);
    let body = json!({
        "command": ["sh", "-c", format!("touch {}; exit 7", ran.display())],
        "max_attempts": 1,
    });
    let (status, body) = post(format!("{}/v1/jobs", cluster.api(0)), body).await;
    assert_eq!(status, 201, "{body}");
    let job = JobId(body["job"]["id"].as_u64().unwrap());
    wait_until(Duration::from_secs(10), "the job to run", || {
        ran.exists().then_some(())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let state = |cluster: &Cluster| cluster.node(0).fleet.read(|s| s.jobs[&job].state);
    assert_eq!(
        state(&cluster),
        JobState::Dispatched,
        "a report got through"
    );

    // Stopped with the report unsent, started again (without the fault): the log hears
    // how the attempt really ended, not that the restart lost it.
    cluster.stop(0).await;
    cluster.restart(0).await.unwrap();
    let record = cluster
        .wait_job(0, job, "the kept report applied", |j| j.state.is_finished())
        .await;
    let attempt = record.current_attempt().unwrap();
    assert_eq!(attempt.exit_code, Some(7), "{record:#?}");
    assert_eq!(record.attempts.len(), 1, "{record:#?}");
    cluster.shutdown().await;
}
