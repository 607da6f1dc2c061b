//! Operators steering a live cluster: a drain with a deadline moves work elsewhere and
//! keeps new work away until undrain; the kill switch holds the queue fleet-wide.

use std::time::Duration;

use serde_json::{Value, json};
use shoal_daemon::exec::Outcome;
use shoal_daemon::testsuite::{Cluster, init_logs, wait_until};
use shoal_protocol::{JobState, MachineId, MachineStatus};

use crate::http::send;

fn index_of(cluster: &Cluster, machine: MachineId) -> usize {
    (0..cluster.len())
        .find(|&i| cluster.node(i).id == machine)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_moves_work_away_and_the_kill_switch_holds_the_queue() {
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    let api = cluster.api(1);
    let post = reqwest::Method::POST;

    // Drain the machine running a job, with a 1 s deadline: the job is taken back, stopped
    // there, and completes elsewhere as attempt 2.
    let id = cluster
        .submit(1, json!({"command": ["sh", "-c", "sleep 2"]}))
        .await;
    let job = cluster
        .wait_job(0, id, "running", |j| j.state == JobState::Running)
        .await;
    let drained = job.attempts[0].machine;
    let name = cluster
        .node(index_of(&cluster, drained))
        .config
        .node_name
        .clone();
    let (status, body) = send(
        post.clone(),
        format!("{api}/v1/drain"),
        json!({"machines": [name], "deadline_seconds": 1}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["machines"], json!([drained.to_string()]));
    let job = cluster
        .wait_job(0, id, "completed elsewhere", |j| {
            j.state == JobState::Completed
        })
        .await;
    assert_eq!(job.attempts.len(), 2, "{:?}", job.attempts);
    assert_ne!(job.attempts[1].machine, drained);
    let why = job.attempts[0].error.clone().unwrap_or_default();
    assert!(why.contains("drained"), "{why}");
    let first = cluster.node(index_of(&cluster, drained)).runner.run(id, 1);
    if let Some(run) = first {
        let outcome = tokio::time::timeout(Duration::from_secs(15), run.wait())
            .await
            .unwrap();
        assert_eq!(
            outcome,
            Outcome::Cancelled,
            "the taken-back run was stopped"
        );
    }

    // Every node shows it DRAINING, and new work goes elsewhere.
    wait_until(Duration::from_secs(10), "DRAINING everywhere", || {
        (0..3)
            .all(|i| cluster.status_seen(i, drained) == Some(MachineStatus::Draining))
            .then_some(())
    })
    .await
    .unwrap();
    let mut later = Vec::new();
    for _ in 0..6 {
        later.push(cluster.submit(1, json!({"command": ["true"]})).await);
    }
    for id in later {
        let job = cluster
            .wait_job(0, id, "completed", |j| j.state == JobState::Completed)
            .await;
        assert_ne!(
            job.attempts[0].machine, drained,
            "a drained machine got new work"
        );
    }
    let (status, body) = send(
        post.clone(),
        format!("{api}/v1/undrain"),
        json!({"machines": [drained.to_string()]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_until(Duration::from_secs(10), "ONLINE again", || {
        (cluster.status_seen(0, drained) == Some(MachineStatus::Online)).then_some(())
    })
    .await
    .unwrap();

    // Bad drains change nothing.
    for (body, code, needle) in [
        (json!({}), 400, "select machines"),
        (json!({"machines": ["nowhere"]}), 404, "nowhere"),
        (
            json!({"all": true, "deadline_seconds": 0}),
            400,
            "deadline_seconds",
        ),
        (json!({"all": true, "surprise": 1}), 400, "surprise"),
    ] {
        let (status, answer) = send(post.clone(), format!("{api}/v1/drain"), body.clone()).await;
        assert_eq!(status, code, "{body} -> {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(needle),
            "{answer}"
        );
    }
    assert!(
        cluster
            .node(0)
            .fleet
            .read(|s| s.machines.values().all(|m| m.drain.is_none()))
    );

    // The kill switch holds the queue on every node until it is turned off.
    let put = reqwest::Method::PUT;
    let (status, body) = send(
        put.clone(),
        format!("{api}/v1/killswitch"),
        json!({"on": true}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    // On with terminate: what runs now is stopped and ends cancelled.
    let long = cluster
        .submit(1, json!({"command": ["sh", "-c", "sleep 60"]}))
        .await;
    cluster
        .wait_job(0, long, "running", |j| j.state == JobState::Running)
        .await;
    let (status, body) = send(
        put.clone(),
        format!("{api}/v1/killswitch"),
        json!({"on": true, "reason": "bad image", "actor": "alice", "terminate": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    cluster
        .wait_job(0, long, "stopped by the kill switch", |j| {
            j.state == JobState::Cancelled
        })
        .await;
    // Every node shows it (a replica applies the entry within milliseconds).
    for i in 0..3 {
        let url = format!("{}/v1/killswitch", cluster.api(i));
        let mut seen = Value::Null;
        for _ in 0..100 {
            seen = shoal_daemon::testsuite::http_client()
                .get(&url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if seen["on"] == json!(true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            (seen["on"].as_bool(), seen["reason"].as_str()),
            (Some(true), Some("bad image")),
            "node {i}"
        );
    }
    let summary: Value = shoal_daemon::testsuite::http_client()
        .get(format!("{}/v1/fleet/summary", cluster.api(0)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["kill_switch"]["actor"], json!("alice"), "{summary}");
    let held = cluster
        .submit(1, json!({"command": ["true"], "queue_timeout_seconds": 1}))
        .await;
    let job = cluster
        .wait_job(0, held, "a reason", |j| j.queue_reason.is_some())
        .await;
    assert!(
        job.queue_reason
            .unwrap()
            .contains("kill switch turned on by alice: bad image")
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let job = cluster.node(0).fleet.read(|s| s.jobs[&held].clone());
    assert_eq!(
        job.state,
        JobState::Queued,
        "held past its queue timeout, not timed out"
    );
    let (status, body) = send(put, format!("{api}/v1/killswitch"), json!({"on": false})).await;
    assert_eq!((status, body["on"].as_bool()), (200, Some(false)), "{body}");
    cluster
        .wait_job(0, held, "dispatched once the switch is off", |j| {
            !j.attempts.is_empty()
        })
        .await;

    // Every change above is in the audit log, with the key that made it; per machine too.
    let key_id = "7e57000000000001";
    let get = |url: String| async move {
        let body: Value = shoal_daemon::testsuite::http_client()
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["entries"].as_array().unwrap().clone()
    };
    let on_machine = get(format!("{api}/v1/audit?machine={drained}")).await;
    // The suite admits the machines it starts with the secret, as an admin would.
    let actions: Vec<&str> = on_machine
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .filter(|action| *action != "approve_machine")
        .collect();
    assert_eq!(actions, ["undrain", "drain"], "{on_machine:?}");
    assert!(
        on_machine
            .iter()
            .all(|e| e["actor"] == json!(key_id) && e["outcome"] == json!("ok"))
    );
    let (status, _) = send(post, format!("{api}/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 409, "the job already completed");
    // Read where the cancel was written: that node has applied it (others follow shortly).
    let all = get(format!("{api}/v1/audit?limit=1000")).await;
    let newest = &all[0];
    assert_eq!(
        (newest["action"].as_str(), newest["target"].as_str()),
        (Some("cancel_job"), Some(format!("job {}", id.0).as_str()))
    );
    assert!(
        newest["outcome"].as_str().unwrap().starts_with("refused: "),
        "{newest}"
    );
    for action in ["kill_switch_on", "kill_switch_off", "submit_job"] {
        assert!(
            all.iter().any(|e| e["action"] == json!(action)),
            "{action} missing"
        );
    }
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first");
    cluster.shutdown().await;
}
