//! `GET /metrics` on a live cluster: the numbers a Prometheus user looks at after one job
//! (and gossip's mode and drops), and the text checked by `promtool check metrics` (Debian
//! package `prometheus`).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use shoal_daemon::testsuite::{Cluster, init_logs, wait_until};
use shoal_protocol::{JobId, JobState};

pub async fn scrape(api: &str) -> String {
    let response = shoal_daemon::testsuite::http_client()
        .get(format!("{api}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET {api}/metrics");
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

/// The value of one series, spelled as the exposition spells it.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

pub fn must(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// Runs `promtool check metrics` on the text; fails, saying how to get it, without it.
pub fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run promtool ({err}): this test checks the exposition with it; \
                 install Debian's `prometheus` package (apt-get install prometheus), as .ci/run does"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\n--- exposition ---\n{text}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_fleet_raft_jobs_requests_and_dispatch_latency() {
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    let leader = cluster.wait_leader(Duration::from_secs(10)).await.unwrap();
    let follower = (leader + 1) % cluster.len();
    let api = cluster.api(follower);

    let response = shoal_daemon::testsuite::http_client()
        .post(format!("{api}/v1/jobs"))
        .json(&json!({"command": ["true"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let id = JobId(body["job"]["id"].as_u64().expect("a job id"));
    let node = cluster.node(follower);
    wait_until(Duration::from_secs(10), "the job completed", || {
        node.fleet
            .read(|s| s.jobs.get(&id).map(|j| j.state))
            .filter(|state| *state == JobState::Completed)
    })
    .await
    .unwrap();
    let response = shoal_daemon::testsuite::http_client()
        .get(format!("{api}/v1/jobs/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The follower that served the requests.
    let text = scrape(&api).await;
    assert_eq!(must(&text, "shoal_machines{status=\"ONLINE\"}"), 3.0);
    assert_eq!(must(&text, "shoal_machines{status=\"DEAD\"}"), 0.0);
    assert!(must(&text, "shoal_raft_term") >= 1.0, "{text}");
    assert_eq!(must(&text, "shoal_raft_is_leader"), 0.0);
    let committed = must(&text, "shoal_raft_commit_index");
    let applied = must(&text, "shoal_raft_last_applied_index");
    assert!(committed >= 1.0 && applied >= 1.0, "{text}");
    assert!(must(&text, "shoal_raft_apply_lag_entries") <= committed);
    assert_eq!(must(&text, "shoal_jobs{state=\"completed\"}"), 1.0);
    assert_eq!(must(&text, "shoal_jobs{state=\"queued\"}"), 0.0);
    let post = "shoal_api_requests_total{route=\"/v1/jobs\",method=\"POST\",status=\"201\"}";
    assert_eq!(must(&text, post), 1.0);
    let show = "shoal_api_requests_total{route=\"/v1/jobs/{id}\",method=\"GET\",status=\"200\"}";
    assert_eq!(must(&text, show), 1.0);
    assert!(
        !text.contains(&format!("/v1/jobs/{id}\"")),
        "a raw path as a label:\n{text}"
    );
    let count = "shoal_api_request_duration_seconds_count{route=\"/v1/jobs\",method=\"POST\"}";
    assert_eq!(must(&text, count), 1.0);
    assert_eq!(must(&text, "shoal_job_dispatch_latency_seconds_count"), 0.0);
    // Gossip is in one mode, and no datagram of the fleet failed its tag.
    let modes: f64 = ["plain", "open", "sealed"]
        .iter()
        .map(|mode| must(&text, &format!("shoal_gossip_mode{{mode=\"{mode}\"}}")))
        .sum();
    assert_eq!(modes, 1.0, "{text}");
    let bad_tag = "shoal_gossip_datagrams_dropped_total{reason=\"bad_tag\"}";
    assert_eq!(must(&text, bad_tag), 0.0);
    promtool_check(&text);

    // The leader placed the job, and timed the wait; the POST went to the follower.
    let text = scrape(&cluster.api(leader)).await;
    assert_eq!(must(&text, "shoal_raft_is_leader"), 1.0);
    assert_eq!(must(&text, "shoal_job_dispatch_latency_seconds_count"), 1.0);
    let waited = must(&text, "shoal_job_dispatch_latency_seconds_sum");
    assert!((0.0..5.0).contains(&waited), "waited {waited} s\n{text}");
    assert_eq!(
        must(
            &text,
            "shoal_job_dispatch_latency_seconds_bucket{le=\"+Inf\"}"
        ),
        1.0
    );
    assert_eq!(value(&text, post), None, "{text}");
    assert_eq!(must(&text, "shoal_jobs{state=\"completed\"}"), 1.0);
    promtool_check(&text);

    // A second scrape counts the first under its route, and a path no route matches
    // under one label whatever the path.
    let response = shoal_daemon::testsuite::http_client()
        .get(format!("{api}/v1/no/such/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let text = scrape(&api).await;
    let scrapes = "shoal_api_requests_total{route=\"/metrics\",method=\"GET\",status=\"200\"}";
    assert_eq!(must(&text, scrapes), 1.0);
    let unmatched = "shoal_api_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}";
    assert_eq!(must(&text, unmatched), 1.0);
    assert!(!text.contains("/v1/no/such"), "{text}");
    cluster.shutdown().await;
}
