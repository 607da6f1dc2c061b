//! Partitions and restarts that must not stall or disrupt the fleet: a follower back from a
//! partition costs no election, a leader cut off from its voters stops answering as one,
//! and a leader restarted behind the fleet's log runs its next job.
//!
//! The partition cuts one node's peer RPC (Raft, forwards) both ways; gossip goes on.

use std::time::Duration;

use serde_json::json;
use shoal_daemon::testsuite::{Cluster, http_client, init_logs, wait_until};
use shoal_protocol::JobState;
use shoal_protocol::levels::PREVOTE_LEVEL;

use crate::http::put_labels;

/// Waits until the fleet elects by pre-vote (it starts below that level, like any fleet).
async fn wait_prevote(cluster: &Cluster) {
    for i in cluster.running() {
        let node = cluster.node(i);
        wait_until(
            Duration::from_secs(15),
            "the fleet at the pre-vote level",
            || {
                node.fleet
                    .read(|s| s.fleet_level >= PREVOTE_LEVEL)
                    .then_some(())
            },
        )
        .await
        .unwrap();
    }
}

fn term(cluster: &Cluster, i: usize) -> u64 {
    cluster.node(i).raft.metrics().borrow().current_term
}

/// `GET /health` of node `i`: the status code and the body.
async fn health(cluster: &Cluster, i: usize) -> (u16, serde_json::Value) {
    let response = http_client()
        .get(format!("{}/health", cluster.api(i)))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_back_from_a_partition_costs_no_election() {
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    cluster
        .wait_voters(3, Duration::from_secs(15))
        .await
        .unwrap();
    wait_prevote(&cluster).await;
    let leader = cluster.wait_leader(Duration::from_secs(5)).await.unwrap();
    let leader_id = cluster.node(leader).id;
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let before = term(&cluster, leader);

    cluster.node(follower).p2p.isolate(true);
    // It says so (an answer, not a timeout: the body names the reason).
    let timings = &cluster.node(follower).config.timings;
    let (wait, election_max) = (Duration::from_secs(10), timings.raft_election_max);
    wait_until(wait, "the follower to report itself cut off", || {
        cluster.node(follower).leadership.cut_off()
    })
    .await
    .unwrap();
    let (status, body) = health(&cluster, follower).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "cut_off", "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("no leader"),
        "{body}"
    );
    // Many election timeouts later it has not raised its term, and the rest of the fleet
    // goes on writing under the same leader.
    tokio::time::sleep(election_max * 8).await;
    assert_eq!(
        term(&cluster, follower),
        before,
        "the cut-off follower stood for election"
    );
    let target = cluster.node(leader).id;
    let (status, body) = put_labels(&cluster.api(leader), target, &["during=partition"]).await;
    assert_eq!(status, 200, "{body}");

    // Healed: it follows the same leader in the same term; nobody stood for election.
    cluster.node(follower).p2p.isolate(false);
    wait_until(wait, "the follower back with the leader", || {
        (cluster.node(follower).leader() == Some(leader_id)).then_some(())
    })
    .await
    .unwrap();
    let (status, body) = health(&cluster, follower).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ok")),
        "{body}"
    );
    tokio::time::sleep(election_max * 2).await;
    for i in 0..3 {
        assert_eq!(
            term(&cluster, i),
            before,
            "node {i}: healing cost an election"
        );
        assert_eq!(cluster.node(i).leader(), Some(leader_id), "node {i}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_voters_stops_answering_as_leader() {
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    cluster
        .wait_voters(3, Duration::from_secs(15))
        .await
        .unwrap();
    wait_prevote(&cluster).await;
    let old = cluster.wait_leader(Duration::from_secs(5)).await.unwrap();
    let before = term(&cluster, old);

    cluster.node(old).p2p.isolate(true);
    let wait = Duration::from_secs(10);
    wait_until(wait, "the old leader to report itself cut off", || {
        cluster.node(old).leadership.cut_off()
    })
    .await
    .unwrap();
    let (status, body) = health(&cluster, old).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("no quorum"),
        "{body}"
    );
    assert_eq!(body["leader"], serde_json::Value::Null, "{body}");
    // The other two elect a leader of their own, in a later term.
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let new_id = wait_until(wait, "a new leader among the others", || {
        let leader = cluster.node(others[0]).leader()?;
        (cluster.node(others[1]).leader() == Some(leader)).then_some(leader)
    })
    .await
    .unwrap();
    assert_ne!(new_id, cluster.node(old).id);
    assert!(term(&cluster, others[0]) > before);
    // A write sent to the cut-off node is refused in time, not applied by it as leader.
    let target = cluster.node(old).id;
    let (status, body) = put_labels(&cluster.api(old), target, &["cut=off"]).await;
    assert_eq!(status, 503, "{body}");

    // Healed, it follows the new leader.
    cluster.node(old).p2p.isolate(false);
    wait_until(wait, "the old leader following the new one", || {
        (cluster.node(old).leader() == Some(new_id)).then_some(())
    })
    .await
    .unwrap();
    let (status, body) = put_labels(&cluster.api(old), target, &["healed=yes"]).await;
    assert_eq!(status, 200, "{body}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leader_that_installs_a_snapshot_runs_its_next_job() {
    init_logs();
    let mut cluster = Cluster::start(3).await.unwrap();
    cluster
        .wait_voters(3, Duration::from_secs(15))
        .await
        .unwrap();
    wait_prevote(&cluster).await;
    let old = cluster.wait_leader(Duration::from_secs(5)).await.unwrap();
    let old_id = cluster.node(old).id;
    // A run it holds when it stops: after the restart it reports that run lost, while
    // it still believes it leads its old term.
    let long = json!({"command": ["sleep", "30"], "agent_id": old_id.to_string()});
    let job = cluster.submit(old, long).await;
    cluster
        .wait_job(old, job, "running on the leader", |j| {
            j.state == JobState::Running
        })
        .await;
    cluster.stop(old).await;

    // The others go on far past its log: it gets a snapshot, not entries.
    let other = (0..3).find(|i| *i != old).unwrap();
    let new = cluster.wait_leader(Duration::from_secs(10)).await.unwrap();
    let writes = cluster.node(new).config.timings.snapshot_every_logs * 3;
    for n in 0..writes {
        let (status, body) = put_labels(
            &cluster.api(other),
            cluster.node(other).id,
            &[&format!("n={n}")],
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    cluster.restart(old).await.unwrap();
    let snapshot = wait_until(Duration::from_secs(20), "a snapshot installed", || {
        cluster.node(old).raft.metrics().borrow().snapshot
    })
    .await
    .unwrap();
    assert!(snapshot.index > 0);
    cluster
        .wait_job(old, job, "the lost run reported", |j| {
            j.state != JobState::Running || j.current_attempt().is_some_and(|a| a.number > 1)
        })
        .await;

    // Its next job runs there.
    let dir = shoal_daemon::testsuite::dir_for_process_jobs();
    let ran = dir.path().join("ran");
    let next = json!({"command": ["touch", ran.to_str().unwrap()], "agent_id": old_id.to_string()});
    let next = cluster.submit(other, next).await;
    cluster
        .wait_job(other, next, "the next job completed", |j| {
            j.state == JobState::Completed
        })
        .await;
    assert!(ran.exists());
    cluster.shutdown().await;
}
