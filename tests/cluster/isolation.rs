//! A panic serving one request or starting one run ends that alone: the request answers a
//! 500 that says so, the attempt fails with the reason (and is retried as any failed
//! attempt is), and the node serves and runs on.

use serde_json::{Value, json};
use shoal_daemon::testsuite::{Cluster, init_logs};
use shoal_protocol::JobState;

use crate::http::send;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_ends_one_request_or_one_run_not_the_node() {
    init_logs();
    let cluster = Cluster::start(1).await.unwrap();
    let api = cluster.api(0);
    let machines = || {
        send(
            reqwest::Method::GET,
            format!("{api}/v1/machines"),
            Value::Null,
        )
    };

    cluster.node(0).faults.panic_in_next_request();
    let (status, body) = machines().await;
    assert_eq!(status, 500, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("the node serves on"), "{message}");
    let (status, body) = machines().await;
    assert_eq!(status, 200, "the next request is served: {body}");

    cluster.node(0).faults.panic_in_next_start();
    let body = json!({"command": ["true"], "max_attempts": 1});
    let failed = cluster.submit(0, body.clone()).await;
    let record = cluster
        .wait_job(0, failed, "failed", |j| j.state == JobState::Failed)
        .await;
    let error = record.attempts[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("shoald failed starting this attempt"),
        "{record:?}"
    );
    let next = cluster.submit(0, body).await;
    cluster
        .wait_job(0, next, "completed", |j| j.state == JobState::Completed)
        .await;
}
