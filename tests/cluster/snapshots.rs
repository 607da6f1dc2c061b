//! Backups: `GET /v1/snapshot` on a follower while jobs are being submitted holds every
//! acknowledged write; a fleet restored from one (`shoald restore` on node 0, one node
//! joining by gossip and one with a token from the old fleet) answers as the old one did;
//! and a damaged, truncated or foreign file is refused without touching the data dir.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use shoal_daemon::testsuite::{Cluster, TEST_SECRET, init_logs, wait_until};
use shoal_protocol::{JobId, JobState, MachineStatus};
use shoal_raft::snapshot_format;

use crate::http::send;

/// Sends `body` to `url` with `key`, returning the status and the body as JSON.
async fn send_as(key: &str, method: Method, url: String, body: Value) -> (u16, Value) {
    let response = shoal_daemon::testsuite::http_client_builder()
        .build()
        .unwrap()
        .request(method, &url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|err| panic!("{url}: {err}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get_as(key: &str, url: String) -> Value {
    let (status, body) = send_as(key, Method::GET, url.clone(), Value::Null).await;
    assert_eq!(status, 200, "GET {url}: {body}");
    body
}

/// `GET /v1/snapshot` with `key`: the bytes and the index header.
async fn snapshot_as(key: &str, api: &str) -> (Vec<u8>, u64) {
    let response = shoal_daemon::testsuite::http_client_builder()
        .build()
        .unwrap()
        .get(format!("{api}/v1/snapshot"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(header("content-type"), "application/octet-stream");
    let index: u64 = header("x-shoal-snapshot-index").parse().unwrap();
    let sha256 = header("x-shoal-snapshot-sha256");
    let bytes = response.bytes().await.unwrap().to_vec();
    assert_eq!(snapshot_format::digest_hex(&bytes).unwrap(), sha256);
    (bytes, index)
}

/// What the restored fleet must answer as the old one did.
async fn answers(key: &str, api: &str) -> Value {
    let jobs = get_as(key, format!("{api}/v1/jobs?limit=1000")).await;
    let mut jobs: Vec<Value> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| json!([j["id"], j["state"], j["spec"]["command"]]))
        .collect();
    jobs.sort_by_key(|j| j[0].as_u64());
    let keys = get_as(key, format!("{api}/v1/keys")).await;
    json!({
        "jobs": jobs,
        "keys": keys,
        "budgets": get_as(key, format!("{api}/v1/budgets")).await,
        "spend": get_as(key, format!("{api}/v1/costs")).await["total"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_from_a_follower_holds_every_acknowledged_write_and_restores_into_a_new_fleet() {
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    let leader = cluster.wait_leader(Duration::from_secs(10)).await.unwrap();
    let follower = (leader + 1) % 3;
    let api = cluster.api(leader);

    // An admin key, a budget, a registration token and some spend in the old fleet.
    let (status, created) = send(
        Method::POST,
        format!("{api}/v1/keys"),
        json!({"scope": "admin", "name": "ops"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    let url = format!("{api}/v1/budgets/default");
    let (status, body) = send(Method::PUT, url, json!({"daily_usd": 50.0})).await;
    assert_eq!(status, 200, "{body}");
    let (status, tokens) = send(
        Method::POST,
        format!("{api}/v1/tokens/registration"),
        json!({}),
    )
    .await;
    assert_eq!(status, 201, "{tokens}");
    let token = tokens["tokens"][0].as_str().unwrap().to_string();
    for i in 0..3 {
        let url = format!("{api}/v1/machines/{}/labels", cluster.node(i).id);
        let (status, body) = send(Method::PUT, url, json!({"set": {"cost_per_hour": "36"}})).await;
        assert_eq!(status, 200, "{body}");
    }
    let paid = cluster
        .submit(leader, json!({"command": ["sh", "-c", "sleep 0.3"]}))
        .await;
    cluster
        .wait_job(leader, paid, "completed", |j| {
            j.state == JobState::Completed
        })
        .await;

    // Jobs go in through the leader while the follower is asked for a copy.
    let acked: Arc<Mutex<Vec<JobId>>> = Arc::default();
    let submitting = {
        let (api, acked) = (api.clone(), acked.clone());
        tokio::spawn(async move {
            for _ in 0..30 {
                let (status, body) = send(
                    Method::POST,
                    format!("{api}/v1/jobs"),
                    json!({"command": ["true"]}),
                )
                .await;
                assert_eq!(status, 201, "{body}");
                let id = JobId(body["job"]["id"].as_u64().unwrap());
                acked.lock().unwrap().push(id);
            }
        })
    };
    wait_until(Duration::from_secs(10), "some jobs acknowledged", || {
        (acked.lock().unwrap().len() >= 5).then_some(())
    })
    .await
    .unwrap();
    let before: Vec<JobId> = acked.lock().unwrap().clone();
    let (bytes, index) = snapshot_as(&key, &cluster.api(follower)).await;
    let copy = snapshot_format::open::<shoal_raft::TypeConfig>(&bytes)
        .expect("a whole snapshot")
        .snapshot;
    assert_eq!(copy.meta.last_log_id.unwrap().index, index);
    for id in &before {
        assert!(
            copy.state.jobs.contains_key(id),
            "acknowledged job {id} missing"
        );
    }
    let voters = copy.meta.last_membership.membership().voter_ids().count();
    assert_eq!(voters, 3);
    submitting.await.unwrap();

    // A read key may not take a copy: it holds key and token hashes.
    let (status, read) = send(
        Method::POST,
        format!("{api}/v1/keys"),
        json!({"scope": "read"}),
    )
    .await;
    assert_eq!(status, 201, "{read}");
    let (status, _) = send_as(
        read["key"].as_str().unwrap(),
        Method::GET,
        format!("{api}/v1/snapshot"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 403);

    // Once the fleet is quiet: the copy to restore, and what the old fleet answers.
    let last = *acked.lock().unwrap().last().unwrap();
    cluster
        .wait_job(follower, last, "finished", |j| j.state.is_finished())
        .await;
    wait_until(Duration::from_secs(30), "every job finished", || {
        cluster
            .node(follower)
            .fleet
            .read(|s| s.open_jobs().next().is_none())
            .then_some(())
    })
    .await
    .unwrap();
    let (bytes, _) = snapshot_as(&key, &cluster.api(follower)).await;
    let old_answers = answers(&key, &cluster.api(follower)).await;
    assert!(
        old_answers["spend"]["usd"].as_f64().unwrap() > 0.0,
        "{old_answers}"
    );
    let old_ids: Vec<_> = (0..3).map(|i| cluster.node(i).id).collect();
    cluster.shutdown().await;
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("fleet.snap");
    std::fs::write(&backup, &bytes).unwrap();

    // A new fleet: node 0 restored offline, node 1 joins by gossip, node 2 with the token
    // made in the old fleet.
    let mut restored = Cluster::restored(&backup, 2).await.unwrap();
    let joined = restored.join_with_token(0, &token).await.unwrap();
    restored
        .wait_new_online(Duration::from_secs(20))
        .await
        .unwrap();
    restored
        .wait_voters(3, Duration::from_secs(20))
        .await
        .unwrap();
    let new_api = restored.api(joined);
    assert_eq!(answers(&key, &new_api).await, old_answers);

    // The old machines are records, OFFLINE or later, never members again.
    let machines = get_as(&key, format!("{new_api}/v1/machines")).await;
    for id in &old_ids {
        let record = machines["machines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == json!(id.to_string()))
            .unwrap_or_else(|| panic!("old machine {id} missing: {machines}"));
        let status: MachineStatus = serde_json::from_value(record["status"].clone()).unwrap();
        assert!(!status.is_reachable(), "old machine {id} is {status}");
    }
    let members = restored
        .node(0)
        .raft
        .metrics()
        .borrow()
        .membership_config
        .clone();
    assert!(
        old_ids
            .iter()
            .all(|id| members.membership().get_node(id).is_none())
    );

    // The restored fleet takes new work, with ids after the old ones.
    let (status, body) = send_as(
        &key,
        Method::POST,
        format!("{new_api}/v1/jobs"),
        json!({"command": ["true"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let new_id = JobId(body["job"]["id"].as_u64().unwrap());
    assert!(new_id > last, "{new_id} after {last}");
    restored
        .wait_job(joined, new_id, "completed", |j| {
            j.state == JobState::Completed
        })
        .await;
    restored.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_truncated_or_foreign_file_is_refused_and_changes_nothing() {
    init_logs();
    let cluster = Cluster::start(1).await.unwrap();
    let (bytes, _) = snapshot_as(shoal_daemon::testsuite::TEST_KEY, &cluster.api(0)).await;
    cluster.shutdown().await;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("raft")).unwrap();
    std::fs::write(data.join("raft").join("marker"), b"old state").unwrap();
    let settings = shoal_daemon::Settings {
        data_dir: data.clone(),
        cluster_secret: Some(TEST_SECRET.into()),
        ..shoal_daemon::Settings::default()
    };
    let config = settings.validate().unwrap();

    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    let cases: [(&str, &[u8], &str); 3] = [
        ("damaged.snap", &damaged, "checksum does not match"),
        (
            "truncated.snap",
            &bytes[..bytes.len() - 40],
            "damaged or truncated",
        ),
        ("foreign.tar", b"ustar\0 some archive", "not a Shoal frame"),
    ];
    for (name, content, why) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, content).unwrap();
        let err = shoal_daemon::restore::restore(&file, &config, true).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains(&format!("{name} is not a usable Shoal fleet snapshot")),
            "{err}"
        );
        assert!(err.contains(why), "{name}: {err}");
        let entries: Vec<_> = std::fs::read_dir(&data).unwrap().collect();
        assert_eq!(entries.len(), 1, "{name}: the data dir changed");
        assert_eq!(
            std::fs::read(data.join("raft").join("marker")).unwrap(),
            b"old state"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_keeps_its_newest_scheduled_backups() {
    use std::os::unix::fs::PermissionsExt;

    init_logs();
    let cluster = Cluster::start_configured(1, shoal_daemon::Timings::fast(), |config| {
        config.snapshot_every = Duration::from_secs(1);
        config.snapshot_keep = 2;
    })
    .await
    .unwrap();
    let dir = cluster.data_dir(0).join(shoal_daemon::backups::BACKUP_DIR);
    let backups = || -> Vec<std::path::PathBuf> {
        let mut found: Vec<_> = std::fs::read_dir(&dir)
            .map(|read| read.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        found.sort();
        found
    };
    // A write between ticks, so each tick has something new to keep.
    let mut last = JobId(0);
    for _ in 0..8 {
        last = cluster.submit(0, json!({"command": ["true"]})).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let found = backups();
    assert_eq!(found.len(), 2, "{found:?}");
    for path in &found {
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        let bytes = std::fs::read(path).unwrap();
        let opened = snapshot_format::open::<shoal_raft::TypeConfig>(&bytes).unwrap();
        assert!(opened.taken_at_ms.is_some());
    }
    let newest = std::fs::read(&found[1]).unwrap();
    let newest = snapshot_format::open::<shoal_raft::TypeConfig>(&newest).unwrap();
    assert!(
        newest.snapshot.state.jobs.len() >= 6,
        "the newest backup holds {} of the jobs up to {last}",
        newest.snapshot.state.jobs.len()
    );
    cluster.shutdown().await;
}
