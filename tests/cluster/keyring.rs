//! The gossip keyring in the log (protocol level 7): an admin's rotation rolls out to
//! every node while jobs run, a removal rotates the key so the removed machine is no
//! longer heard, only an admin key may rotate, and only in a fleet at level 7.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use shoal_daemon::testsuite::{Cluster, http_client_builder, init_logs, wait_until};
use shoal_gossip::DropReason;
use shoal_protocol::gossip_keys::GossipKeys;
use shoal_protocol::{JobState, MachineId};

const WAIT: Duration = Duration::from_secs(30);
/// The test timings' `gossip_key_grace`, and a margin for the last datagrams.
const GRACE: Duration = Duration::from_millis(2500);

async fn call(method: reqwest::Method, url: &str, key: &str) -> (u16, Value) {
    let response = http_client_builder()
        .build()
        .unwrap()
        .request(method, url)
        .bearer_auth(key)
        .send()
        .await
        .unwrap_or_else(|err| panic!("{url}: {err}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `POST /v1/fleet/rotate-key` through node `i` with `key`.
async fn rotate(cluster: &Cluster, i: usize, key: &str) -> (u16, Value) {
    let url = format!("{}/v1/fleet/rotate-key", cluster.api(i));
    call(reqwest::Method::POST, &url, key).await
}

/// `GET /v1/cluster` of node `i`: (the log's generation, the one node `i` seals with).
async fn generations(cluster: &Cluster, i: usize) -> (u64, u64) {
    let url = format!("{}/v1/cluster", cluster.api(i));
    let (status, body) = call(
        reqwest::Method::GET,
        &url,
        shoal_daemon::testsuite::TEST_KEY,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (
        body["gossip_key_generation"].as_u64().unwrap(),
        body["node_gossip_key_generation"].as_u64().unwrap(),
    )
}

/// Waits until every running node's API says the log holds `generation` and the node
/// seals with it; fails after `within`.
pub async fn every_node_seals_with(cluster: &Cluster, generation: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut seen = BTreeMap::new();
        for i in cluster.running() {
            seen.insert(i, generations(cluster, i).await);
        }
        if seen.values().all(|g| *g == (generation, generation)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every node seals with generation {generation} within {within:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until node `observer` hears every other running node's heartbeat advance.
async fn every_heartbeat_advances(cluster: &Cluster, observer: usize) {
    let node = cluster.node(observer);
    let others: Vec<MachineId> = cluster
        .running()
        .into_iter()
        .filter(|i| *i != observer)
        .map(|i| cluster.node(i).id)
        .collect();
    let heartbeat = |id: MachineId| {
        node.peer(id)
            .filter(|p| p.live)
            .map(|p| p.last_heartbeat_ms)
    };
    let before: Vec<Option<u64>> = others.iter().map(|id| heartbeat(*id)).collect();
    wait_until(
        WAIT,
        "every machine heard alive, its heartbeat advancing",
        || {
            others
                .iter()
                .zip(&before)
                .all(|(id, then)| heartbeat(*id).is_some_and(|now| Some(now) > *then))
                .then_some(())
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_rolls_out_to_every_node_while_jobs_run() {
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    let key = shoal_daemon::testsuite::TEST_KEY;
    let jobs: Vec<_> = submit_short_jobs(&cluster).await;

    // Through a follower or the leader alike: node 1 forwards it with the admin's key.
    let asked = tokio::time::Instant::now();
    let (status, body) = rotate(&cluster, 1, key).await;
    assert!([200, 202].contains(&status), "{status} {body}");
    assert_eq!(body["generation"], 1, "{body}");
    let left = Duration::from_secs(5).saturating_sub(asked.elapsed());
    every_node_seals_with(&cluster, 1, left).await;

    // The log holds the key sealed only; every node holds it in clear, privately.
    let log: GossipKeys = cluster.node(0).fleet.read(|s| s.gossip_keys.clone());
    let clear = cluster
        .node(2)
        .gossip_keys
        .key(1)
        .expect("node 2 holds generation 1");
    assert_eq!(log.generation(), 1);
    assert!(
        !log.sealed[0]
            .sealed_key
            .windows(32)
            .any(|w| w == clear.secret_bytes()),
        "the log holds the key in clear"
    );
    assert_ne!(
        clear,
        shoal_gossip::GossipKey::from_secret(1, shoal_daemon::testsuite::TEST_SECRET).unwrap()
    );
    for i in cluster.running() {
        use std::os::unix::fs::PermissionsExt;
        let file = cluster.data_dir(i).join("gossip.keyring");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        assert_eq!(cluster.node(i).gossip_keys.key(1).as_ref(), Some(&clear));
    }
    let url = format!("{}/metrics", cluster.api(0));
    let metrics = http_client_builder()
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains("\nshoal_gossip_key_generation 1\n"), "{text}");

    // No job lost, and after the grace every machine still hears every other.
    for job in jobs {
        cluster
            .wait_job(0, job, "completed", |j| j.state == JobState::Completed)
            .await;
    }
    tokio::time::sleep(GRACE).await;
    for i in cluster.running() {
        every_heartbeat_advances(&cluster, i).await;
    }
    let audit_url = format!("{}/v1/audit?limit=1000", cluster.api(0));
    let (_, audit) = call(reqwest::Method::GET, &audit_url, key).await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"rotate_gossip_key"), "{actions:?}");
    cluster.shutdown().await;
}

/// Submits jobs that run for a moment on any machine; their ids.
async fn submit_short_jobs(cluster: &Cluster) -> Vec<shoal_protocol::JobId> {
    let mut jobs = Vec::new();
    for n in 0..6 {
        let body = json!({"command": ["sh", "-c", format!("sleep 1; echo {n}")]});
        jobs.push(cluster.submit(n % 3, body).await);
    }
    jobs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_rotates_and_the_removed_machine_is_not_heard() {
    init_logs();
    let mut cluster = Cluster::start(3).await.unwrap();
    let leader = cluster.wait_leader(WAIT).await.unwrap();
    let removed = (0..3).find(|i| *i != leader).unwrap();
    let stays: Vec<usize> = (0..3).filter(|i| *i != removed).collect();
    let id = cluster.node(removed).id;
    let key = shoal_daemon::testsuite::TEST_KEY;

    let url = format!("{}/v1/machines/{id}", cluster.api(leader));
    let (status, body) = call(reqwest::Method::DELETE, &url, key).await;
    assert_eq!(status, 200, "{body}");
    cluster.stop(removed).await;
    every_node_seals_with(&cluster, 1, WAIT).await;
    tokio::time::sleep(GRACE).await;

    // Back with its old data dir: it seals with the key it held, which no one opens.
    let dropped_before: Vec<u64> = stays
        .iter()
        .map(|i| unknown_generation_drops(&cluster, *i))
        .collect();
    cluster.restart(removed).await.unwrap();
    assert_eq!(cluster.node(removed).gossip_keys.sealing(), 0);
    let live = |i: usize| cluster.node(i).peer(id).is_some_and(|p| p.live);
    wait_until(
        WAIT,
        "the removed machine's datagrams dropped, and it not alive",
        || {
            stays
                .iter()
                .zip(&dropped_before)
                .all(|(i, then)| unknown_generation_drops(&cluster, *i) > *then && !live(*i))
                .then_some(())
        },
    )
    .await
    .unwrap();
    for _ in 0..20 {
        for i in &stays {
            let node = cluster.node(*i);
            assert!(
                node.peer(id).is_none_or(|p| !p.live),
                "node {i} hears the removed machine"
            );
            assert!(node.fleet.read(|s| !s.machines.contains_key(&id)));
            assert!(!shoal_daemon::node::members(&node.raft).contains_key(&id));
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    cluster.shutdown().await;
}

/// Datagrams node `i` dropped because no key it holds has their generation.
fn unknown_generation_drops(cluster: &Cluster, i: usize) -> u64 {
    let drops = cluster.node(i).gossip.dropped_datagrams();
    drops.get(DropReason::UnknownGeneration)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_key_rotates() {
    init_logs();
    let cluster = Cluster::start(1).await.unwrap();
    let api = cluster.api(0);
    let admin = shoal_daemon::testsuite::TEST_KEY;
    let keys_url = format!("{api}/v1/keys");
    let response = http_client_builder()
        .build()
        .unwrap()
        .post(&keys_url)
        .bearer_auth(admin)
        .json(&json!({"scope": "operate", "name": "ops"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let operate: Value = response.json().await.unwrap();
    let operate = operate["key"].as_str().unwrap().to_string();

    let before = cluster.node(0).fleet.read(|s| s.gossip_keys.clone());
    let (status, body) = rotate(&cluster, 0, &operate).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        cluster.node(0).fleet.read(|s| s.gossip_keys.clone()),
        before
    );
    assert_eq!(generations(&cluster, 0).await, (0, 0));

    // The fleet could answer: the admin's call right after rotates.
    let (status, body) = rotate(&cluster, 0, admin).await;
    assert_eq!(
        (status, body["generation"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    every_node_seals_with(&cluster, 1, Duration::from_secs(5)).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_below_level_seven_refuses_a_rotation_until_upgraded() {
    init_logs();
    let six = shoal_protocol::ProtocolLevel(6);
    let mut cluster = Cluster::start_at_level(1, six).await.unwrap();
    let admin = shoal_daemon::testsuite::TEST_KEY;
    let (status, body) = rotate(&cluster, 0, admin).await;
    assert_eq!(status, 409, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("needs protocol level 7"), "{message}");
    let keys = cluster.node(0).fleet.read(|s| s.gossip_keys.clone());
    assert_eq!(keys, GossipKeys::default());

    cluster.upgrade(0).await.unwrap();
    wait_until(WAIT, "the fleet at level 7", || {
        let level = cluster.node(0).fleet.read(|s| s.fleet_level);
        (level >= shoal_protocol::levels::GOSSIP_KEYRING_LEVEL).then_some(())
    })
    .await
    .unwrap();
    let (status, body) = rotate(&cluster, 0, admin).await;
    assert_eq!(
        (status, body["generation"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    cluster.shutdown().await;
}
