//! Resource history over HTTP: a machine's samples read through another node (over peer
//! RPC) and through itself, `since_ms`, and the errors for an unknown machine, a bad
//! query and a machine that cannot be reached.

use std::time::Duration;

use serde_json::Value;
use shoal_daemon::testsuite::{Cluster, init_logs};
use shoal_protocol::api::MachineHistory;
use shoal_protocol::{MachineId, UnixMillis};

/// `GET url` through the cluster's client: the status and the body as JSON.
async fn get(cluster: &Cluster, url: &str) -> (u16, Value) {
    let response = cluster
        .http()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The history of `machine` as node `via` answers it, which must succeed.
async fn history(cluster: &Cluster, via: usize, machine: MachineId, query: &str) -> MachineHistory {
    let url = format!("{}/v1/machines/{machine}/history{query}", cluster.api(via));
    let (status, body) = get(cluster, &url).await;
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_value(body).unwrap()
}

/// Polls until node `via` shows at least `n` samples of `machine`.
async fn wait_samples(
    cluster: &Cluster,
    via: usize,
    machine: MachineId,
    n: usize,
) -> MachineHistory {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = history(cluster, via, machine, "").await;
        if got.samples.len() >= n {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {n} samples of {machine}; last answer: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn now_ms() -> UnixMillis {
    shoal_daemon::node::now_ms()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_read_from_the_machine_through_any_node() {
    init_logs();
    let mut cluster = Cluster::start(3).await.unwrap();
    let (own, other) = (cluster.node(0).id, cluster.node(2).id);
    // The fast timings sample every 500 ms.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Node 2's history through node 0: node 2's own samples, over peer RPC.
    let proxied = wait_samples(&cluster, 0, other, 2).await;
    assert_eq!(proxied.machine, other);
    assert_eq!(proxied.interval_ms, 500);
    let times: Vec<UnixMillis> = proxied.samples.iter().map(|s| s.at_ms).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    let newest = *times.last().unwrap();
    assert!(
        now_ms().saturating_sub(newest) < 5_000,
        "stale history: {times:?}"
    );
    for sample in &proxied.samples {
        assert!(sample.memory_total_bytes > 0, "{sample:?}");
        assert!(sample.memory_used_bytes <= sample.memory_total_bytes);
        assert!((0.0..=1.0).contains(&sample.cpu_usage), "{sample:?}");
    }
    let kept_by_node_2 = cluster.node(2).history.since(None, now_ms());
    assert!(
        proxied.samples.iter().all(|s| kept_by_node_2.contains(s)),
        "node 0 answered samples node 2 does not have: {proxied:?} vs {kept_by_node_2:?}"
    );

    // since_ms gives only what came after it.
    let since = times[times.len() - 2];
    let later = history(&cluster, 0, other, &format!("?since_ms={since}")).await;
    assert!(!later.samples.is_empty());
    assert!(later.samples.iter().all(|s| s.at_ms > since), "{later:?}");
    assert!(later.samples.iter().any(|s| s.at_ms == newest), "{later:?}");
    let none = history(
        &cluster,
        0,
        other,
        &format!("?since_ms={}", now_ms() + 60_000),
    )
    .await;
    assert!(none.samples.is_empty(), "{none:?}");

    // A node answers its own history from its ring.
    let mine = wait_samples(&cluster, 0, own, 2).await;
    assert_eq!(mine.machine, own);
    assert!(mine.samples.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
    assert!(mine.samples.iter().all(|s| s.memory_total_bytes > 0));

    // A machine the fleet does not know is a 404; a malformed id or query a 400.
    let api = cluster.api(1);
    let unknown = MachineId(0xdead_beef);
    let (status, body) = get(&cluster, &format!("{api}/v1/machines/{unknown}/history")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    assert_eq!(body["message"], format!("no machine with id {unknown}"));
    for query in ["since_ms=yesterday", "since_ms=-5", "since=10m"] {
        let url = format!("{api}/v1/machines/{other}/history?{query}");
        let (status, body) = get(&cluster, &url).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("bad_request")),
            "{query}: {body}"
        );
    }
    let (status, _) = get(&cluster, &format!("{api}/v1/machines/not-an-id/history")).await;
    assert_eq!(status, 400);

    // A stopped machine stays in the fleet but cannot be asked: 503, saying which.
    cluster.stop(2).await;
    let url = format!("{}/v1/machines/{other}/history", cluster.api(0));
    let (status, body) = get(&cluster, &url).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "cannot read the history of machine node-2 ({other})"
        )),
        "{message}"
    );
    cluster.shutdown().await;
}
