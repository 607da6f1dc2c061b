//! Work goes only where it can run: a process job to a machine that allows them (or it
//! waits, saying so), a container past a machine whose policy refuses it at its first
//! attempt, and a retry after a failure to another machine.

use serde_json::{Value, json};
use shoal_daemon::config::Timings;
use shoal_daemon::testsuite::{Cluster, init_logs};
use shoal_protocol::{JobId, JobState, MachineId};

use crate::http::send;

async fn put(url: String, body: Value) {
    let (status, answer) = send(reqwest::Method::PUT, url, body).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_goes_only_where_it_can_run() {
    init_logs();
    // node-2 runs no process jobs.
    let cluster = Cluster::start_configured(3, Timings::fast(), |config| {
        config.allow_process_jobs = config.node_name != "node-2";
    })
    .await
    .unwrap();
    let api = cluster.api(2);
    let ids: Vec<MachineId> = (0..3).map(|i| cluster.node(i).id).collect();
    for (i, pool) in [(1, "a"), (2, "a")] {
        let url = format!("{api}/v1/machines/{}/labels", ids[i]);
        put(url, json!({"set": {"pool": pool}})).await;
    }
    put(
        format!("{api}/v1/machines/{}/labels", ids[1]),
        json!({"set": {"zone": "dmz"}}),
    )
    .await;
    let ran_on = |id: JobId| {
        let job = cluster.node(0).fleet.read(|s| s.jobs[&id].clone());
        job.attempts.iter().map(|a| a.machine).collect::<Vec<_>>()
    };

    // The README's first example, through the machine that does not run it.
    let hello = json!({"command": ["sh", "-c", "echo hello from $(hostname)"]});
    for _ in 0..3 {
        let id = cluster.submit(2, hello.clone()).await;
        cluster
            .wait_job(0, id, "completed", |j| j.state == JobState::Completed)
            .await;
        let machines = ran_on(id);
        assert!(machines.len() == 1 && machines[0] != ids[2], "{machines:?}");
    }
    // Held to node-2 by a label, a process job waits, saying why.
    put(
        format!("{api}/v1/machines/{}/labels", ids[2]),
        json!({"set": {"only": "two"}}),
    )
    .await;
    let waiting = cluster
        .submit(
            2,
            json!({"command": ["true"], "required_labels": {"only": "two"}}),
        )
        .await;
    let job = cluster
        .wait_job(0, waiting, "a queue reason", |j| j.queue_reason.is_some())
        .await;
    assert_eq!(
        job.queue_reason.as_deref(),
        Some("no ONLINE machine allows process jobs (1 ONLINE machine matches)")
    );

    // A container in pool a: node-1's policy refuses its image, so it goes to node-2 at
    // its first attempt (whether the image is there does not matter to where it went; it
    // is never pulled, so nothing leaves the machine).
    let policy = json!({"selector": {"zone": "dmz"}, "allowed_images": ["nothing:*"]});
    put(format!("{api}/v1/policies/dmz"), policy).await;
    let has_docker = cluster.node(0).fleet.read(|s| {
        s.machines[&ids[1]].labels().get("docker").is_some()
            && s.machines[&ids[2]].labels().get("docker").is_some()
    });
    assert!(
        has_docker,
        "the test machine runs a Docker engine, as CI's does"
    );
    let container = json!({"image": "shoal-never-pulled:local", "command": ["true"],
        "required_labels": {"pool": "a"}, "max_attempts": 1, "pull": "never"});
    let id = cluster.submit(2, container).await;
    cluster
        .wait_job(0, id, "finished", |j| j.state.is_finished())
        .await;
    assert_eq!(ran_on(id), [ids[2]]);

    // A retry goes to the other machine that runs process jobs.
    let second_try =
        json!({"command": ["sh", "-c", "test \"$SHOAL_ATTEMPT\" = 2"], "max_attempts": 2});
    let id = cluster.submit(2, second_try).await;
    let job = cluster
        .wait_job(0, id, "completed", |j| j.state == JobState::Completed)
        .await;
    let machines = ran_on(id);
    assert_eq!(machines.len(), 2, "{machines:?}");
    assert_ne!(machines[0], machines[1], "the retry moved");
    // The attempt says why it moved.
    let first_machine = cluster
        .node(0)
        .fleet
        .read(|s| s.machines[&machines[0]].info.name.clone());
    assert_eq!(
        job.attempts[1].placed_because.as_deref(),
        Some(format!("moved from {first_machine}, where attempt 1 failed: exit code 1").as_str()),
        "{job:#?}"
    );
    assert_eq!(job.attempts[0].placed_because, None);
}
