//! Golden data directories: a fleet written by an earlier build must open and serve what
//! it held with every later build.
//!
//! `tests/fixtures/<version>/data` is a one-node fleet's data directory (log, snapshot,
//! keys, jobs in every state, a session, budgets, costs, templates, policies, tokens,
//! audit) and `expected.json` what its API answered before it stopped. The generator
//! below writes a new one:
//!
//! ```sh
//! SHOAL_FIXTURE=v6 cargo test -p shoal-tests --test cluster fixture::generate -- --ignored
//! SHOAL_FIXTURE=v6 cargo test -p shoal-protocol --test fixtures generate -- --ignored
//! ```
//!
//! A format change adds a fixture and keeps the old ones: each must keep opening.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use shoal_daemon::config::Timings;
use shoal_daemon::testsuite::{Cluster, TEST_KEY, copy_dir, init_logs, wait_until};
use shoal_protocol::JobState;

use crate::http::send;

/// Ten years: the retention a fixture's check runs with, so its old jobs are kept.
const FOREVER_SECONDS: u64 = 10 * 365 * 24 * 3600;
/// The longest queue timeout the API takes (a year, see `db14dc6`): the fixture's queued
/// job waits that long (its check does not compare open jobs' states).
const LONGEST_QUEUE_TIMEOUT_SECONDS: u64 = 366 * 24 * 3600;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

async fn call(method: reqwest::Method, url: String, body: Value) -> Value {
    let (status, answer) = send(method.clone(), url.clone(), body).await;
    assert!(
        (200..300).contains(&status),
        "{method} {url}: {status} {answer}"
    );
    answer
}

async fn get(url: String) -> Value {
    call(reqwest::Method::GET, url, Value::Null).await
}

/// What the fleet answers that must survive: keyed by what the test compares.
async fn answers(api: &str) -> Value {
    json!({
        "jobs": get(format!("{api}/v1/jobs?limit=1000&order=oldest")).await,
        "keys": get(format!("{api}/v1/keys")).await,
        "tokens": get(format!("{api}/v1/tokens/registration")).await,
        "budgets": get(format!("{api}/v1/budgets")).await,
        "costs_by_job": get(format!("{api}/v1/costs?by=job&since_ms=0")).await,
        "templates": get(format!("{api}/v1/templates")).await,
        "policies": get(format!("{api}/v1/policies")).await,
        "registries": get(format!("{api}/v1/registries")).await,
        "sessions": get(format!("{api}/v1/sessions")).await,
        "audit": get(format!("{api}/v1/audit?limit=1000")).await,
        "settings": get(format!("{api}/v1/fleet/settings")).await,
        "cluster": get(format!("{api}/v1/cluster")).await,
    })
}

/// Fields an answer gained since a fixture was written, with what a record from before
/// reads as.
const ADDED_FIELDS: &[(&str, &str)] = &[
    // Registry credentials (protocol level 9): none.
    ("registries", "{\"registries\": []}"),
    // Templates (protocol level 8): their org, the fixture key's.
    ("org", "\"default\""),
    // Job and template specs (protocol level 8): no secret variables.
    ("secret_env", "{}"),
    // Job, template and policy specs (protocol level 8): the image's user, the default
    // confinement.
    ("user", "null"),
    ("cap_add", "[]"),
    ("cap_drop", "[]"),
    ("pids_limit", "null"),
    // Job and template specs (protocol level 8): pulled when missing.
    ("pull", "null"),
    // Job and template specs (protocol level 9): no GPUs. (A machine's `gpus` is left out
    // when it has none.)
    ("gpus", "null"),
];

/// Fields answers stopped showing, though the fleet still keeps them: a job's attempt's
/// `report_ids` (which cost reports were counted), bookkeeping since answers are views.
const HIDDEN_FIELDS: &[&str] = &["report_ids"];

/// `served` is `expected`, but for [`ADDED_FIELDS`] at the value given there and
/// [`HIDDEN_FIELDS`]; `at` says where, for the message.
fn assert_same(served: &Value, expected: &Value, at: &str) {
    match (served, expected) {
        (Value::Object(served), Value::Object(expected)) => {
            for (key, value) in served {
                let at = format!("{at}.{key}");
                match expected.get(key) {
                    Some(held) => assert_same(value, held, &at),
                    None => {
                        let added = ADDED_FIELDS.iter().find(|(name, _)| name == key);
                        let default = added.map(|(_, v)| serde_json::from_str::<Value>(v).unwrap());
                        assert_eq!(Some(value), default.as_ref(), "{at}: not in the fixture");
                    }
                }
            }
            for key in expected
                .keys()
                .filter(|key| !HIDDEN_FIELDS.contains(&key.as_str()))
            {
                assert!(served.contains_key(key), "{at}.{key} was lost");
            }
        }
        (Value::Array(served), Value::Array(expected)) => {
            assert_eq!(served.len(), expected.len(), "{at}: length");
            for (i, (s, e)) in served.iter().zip(expected).enumerate() {
                assert_same(s, e, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(served, expected, "{at}"),
    }
}

/// Waits until the leader has raised the one-node fleet to this build's level, as it does
/// soon after it starts.
async fn at_this_builds_level(cluster: &Cluster) {
    wait_until(
        Duration::from_secs(10),
        "the fleet at this build's level",
        || {
            let level = cluster.node(0).fleet.read(|s| s.fleet_level);
            (level == shoal_protocol::levels::PROTOCOL_LEVEL).then_some(())
        },
    )
    .await
    .unwrap();
}

/// Writes `tests/fixtures/$SHOAL_FIXTURE` from a live one-node fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes a new golden fixture; run by hand when the stored format changes"]
async fn generate() {
    init_logs();
    let name = std::env::var("SHOAL_FIXTURE").expect("SHOAL_FIXTURE names the fixture");
    let out = fixtures().join(&name);
    assert!(
        !out.exists(),
        "{} exists: fixtures are never rewritten",
        out.display()
    );
    let mut cluster = Cluster::start(1).await.unwrap();
    let api = cluster.api(0);
    let id = cluster.node(0).id;
    let put = reqwest::Method::PUT;
    let post = reqwest::Method::POST;

    // Fleet settings need the fleet at this build's level, which the leader raises soon
    // after it starts.
    at_this_builds_level(&cluster).await;
    // Set, then back to the default: a setting kept would prune the fixture's old jobs.
    for retention in [json!(30 * 24 * 3600), Value::Null] {
        let settings = json!({"job_retention_seconds": retention});
        call(put.clone(), format!("{api}/v1/fleet/settings"), settings).await;
    }
    let labels = json!({"set": {"cost_per_hour": "36", "role": "fixture"}});
    call(
        put.clone(),
        format!("{api}/v1/machines/{id}/labels"),
        labels,
    )
    .await;
    let budget = json!({"daily_usd": 1000, "daily_runner_minutes": 100000});
    call(put.clone(), format!("{api}/v1/budgets/default"), budget).await;
    let key = json!({"scope": "operate", "org": "default", "name": "fixture-operate"});
    let operate = call(post.clone(), format!("{api}/v1/keys"), key).await;
    let tokens = json!({"count": 2, "ttl_seconds": 30 * 24 * 3600, "labels": {"gpu": "true"}});
    call(
        post.clone(),
        format!("{api}/v1/tokens/registration"),
        tokens,
    )
    .await;
    for command in [["sleep", "100"], ["sleep", "200"]] {
        let template = json!({"image": "busybox:local", "command": command, "memory_mb": 64});
        call(put.clone(), format!("{api}/v1/templates/fixture"), template).await;
    }
    // A template with a secret (protocol level 8: templates belong to orgs, secrets are
    // sealed in the log).
    let template =
        json!({"image": "busybox:local", "secret_env": {"DB_PASSWORD": "fixture-secret"}});
    call(put.clone(), format!("{api}/v1/templates/sealed"), template).await;
    let policy = json!({"selector": {"role": "fixture"}, "allowed_images": ["busybox:*"], "max_memory_mb": 2048,
        "cap_add": ["NET_RAW"], "cap_drop": ["SETUID"], "pids_limit": 256, "user": "1000:1000", "pull": "never"});
    call(put.clone(), format!("{api}/v1/policies/fixture"), policy).await;
    // Protocol level 9: a template asking for GPUs, and registry credentials (sealed).
    let template = json!({"image": "busybox:local", "gpus": 2});
    call(put.clone(), format!("{api}/v1/templates/gpus"), template).await;
    let login = json!({"username": "fixture", "password": "fixture-password"});
    call(
        put.clone(),
        format!("{api}/v1/registries/registry.lan:5000"),
        login,
    )
    .await;
    // A machine admitted before it shows up (protocol level 6).
    let approved = "00000000000000aa";
    call(
        post.clone(),
        format!("{api}/v1/machines/{approved}/approve"),
        json!({}),
    )
    .await;
    // The gossip key rotated twice (protocol level 7): the log holds both sealed
    // generations, and data_dir/gossip.keyring the keys this node seals and opens with.
    for generation in [1, 2] {
        let rotated = call(
            post.clone(),
            format!("{api}/v1/fleet/rotate-key"),
            Value::Null,
        )
        .await;
        assert_eq!(rotated["generation"], generation, "{rotated}");
        wait_until(Duration::from_secs(10), "the node sealing with it", || {
            (cluster.node(0).gossip_keys.sealing() == generation).then_some(())
        })
        .await
        .unwrap();
    }

    let nowhere = json!({"fixture": "nowhere"});
    let completed = cluster
        .submit(
            0,
            json!({"command": ["sh", "-c", "echo done"], "idempotency_key": "fixture-1"}),
        )
        .await;
    let with_secret = cluster
        .submit(
            0,
            json!({"command": ["sh", "-c", "test -n \"$TOKEN\""], "secret_env": {"TOKEN": "fixture-secret"}}),
        )
        .await;
    let failed = cluster
        .submit(
            0,
            json!({"command": ["sh", "-c", "exit 3"], "max_attempts": 1}),
        )
        .await;
    // A retry that says why it runs where it does (protocol level 9).
    let retried = cluster
        .submit(
            0,
            json!({"command": ["sh", "-c", "test \"$SHOAL_ATTEMPT\" = 2"], "max_attempts": 2}),
        )
        .await;
    let cancelled = cluster
        .submit(0, json!({"command": ["true"], "required_labels": nowhere}))
        .await;
    call(
        post.clone(),
        format!("{api}/v1/jobs/{cancelled}/cancel"),
        Value::Null,
    )
    .await;
    let timed_out = cluster
        .submit(
            0,
            json!({"command": ["true"], "required_labels": nowhere, "queue_timeout_seconds": 1}),
        )
        .await;
    for (job, state) in [
        (completed, JobState::Completed),
        (with_secret, JobState::Completed),
        (failed, JobState::Failed),
        (retried, JobState::Completed),
        (cancelled, JobState::Cancelled),
        (timed_out, JobState::TimedOut),
    ] {
        cluster
            .wait_job(0, job, "finished", |j| j.state == state)
            .await;
    }

    // A snapshot here: what follows lives only in the log after it.
    cluster.node(0).raft.trigger().snapshot().await.unwrap();
    let data = cluster.data_dir(0);
    wait_until(Duration::from_secs(10), "snapshot.bin", || {
        data.join("raft/snapshot.bin").exists().then_some(())
    })
    .await
    .unwrap();

    let queued = json!({"command": ["true"], "required_labels": nowhere, "queue_timeout_seconds": LONGEST_QUEUE_TIMEOUT_SECONDS});
    cluster.submit(0, queued).await;
    let session = json!({"template_id": "fixture", "required_labels": nowhere});
    call(post.clone(), format!("{api}/v1/sessions"), session).await;
    let running = cluster
        .submit(0, json!({"command": ["sleep", "30"], "max_attempts": 1}))
        .await;
    cluster
        .wait_job(0, running, "running", |j| j.state == JobState::Running)
        .await;

    let mut expected = answers(&api).await;
    expected["operate_key"] = operate["key"].clone();
    cluster.stop(0).await;
    copy_dir(&data, &out.join("data")).unwrap();
    // The fleet CA is the test process's own (`TEST_CA`): each check gets its process's.
    std::fs::remove_dir_all(out.join("data/tls")).unwrap();
    let text = serde_json::to_string_pretty(&expected).unwrap();
    std::fs::write(out.join("expected.json"), text + "\n").unwrap();
}

/// Every committed fixture opens with this build and serves what it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_opens_and_serves_what_it_held() {
    init_logs();
    let mut names: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").exists())
        .collect();
    names.sort();
    assert!(
        !names.is_empty(),
        "no fixtures under {}",
        fixtures().display()
    );
    for fixture in names {
        check_fixture(&fixture).await;
    }
}

async fn check_fixture(fixture: &Path) {
    let text = std::fs::read_to_string(fixture.join("expected.json")).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    let cluster = Cluster::start_from_data_dir(&fixture.join("data"), Timings::fast(), |config| {
        // The fixture's finished jobs are old: keep them for the test.
        config.job_retention = Duration::from_secs(FOREVER_SECONDS);
    })
    .await
    .unwrap_or_else(|err| panic!("{}: {err:#}", fixture.display()));
    let api = cluster.api(0);
    // The leader raises the fleet to this build's level soon after it starts: what an
    // older level kept in an older form (fleet-wide templates) has moved by then.
    at_this_builds_level(&cluster).await;
    let served = answers(&api).await;
    let name = fixture.display();

    for what in ["keys", "tokens"] {
        assert_eq!(served[what], expected[what], "{name}: {what}");
    }
    assert_same(
        &served["policies"],
        &expected["policies"],
        &format!("{name}: policies"),
    );
    // Templates from before they belonged to orgs (level 8) belong to their maker's org
    // now: the fixture's admin key is of the default org.
    assert_same(
        &served["templates"],
        &expected["templates"],
        &format!("{name}: templates"),
    );
    if !expected["settings"].is_null() {
        assert_eq!(
            served["settings"], expected["settings"],
            "{name}: fleet settings"
        );
    }
    // The gossip keyring: the log's generation, and the node seals with it from its
    // stored keyring at once (fixtures from before level 7 hold none).
    if !expected["cluster"].is_null() {
        for field in ["gossip_key_generation", "node_gossip_key_generation"] {
            assert_eq!(
                served["cluster"][field], expected["cluster"][field],
                "{name}: {field}"
            );
        }
    }
    // Budgets as set (today's figures move with the clock).
    let limits = |answer: &Value| {
        let mut budgets = answer["budgets"]["budgets"].as_array().unwrap().clone();
        for budget in &mut budgets {
            let budget = budget.as_object_mut().unwrap();
            budget.remove("today");
            budget.remove("resets_at_ms");
        }
        budgets
    };
    assert_eq!(limits(&served), limits(&expected), "{name}: budgets");
    // Jobs finished then are exactly as they were; open ones are all there (the one that
    // ran when the node stopped has failed since, as a process job lost in a restart does).
    let jobs = |answer: &Value| answer["jobs"]["jobs"].as_array().unwrap().clone();
    let (before, after) = (jobs(&expected), jobs(&served));
    assert_eq!(before.len(), after.len(), "{name}: job count");
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(old["id"], new["id"], "{name}");
        if ["completed", "failed", "cancelled", "timed_out"]
            .contains(&old["state"].as_str().unwrap())
        {
            assert_same(new, old, &format!("{name}: finished job {}", old["id"]));
        }
    }
    // Sessions as created (a queued one times out as the fixture ages).
    let sessions = |answer: &Value| -> Vec<Value> {
        let list = answer["sessions"]["sessions"].as_array().unwrap();
        let stable = ["id", "template", "image", "org", "created_at_ms"];
        list.iter()
            .map(|s| stable.iter().map(|k| s[*k].clone()).collect())
            .collect()
    };
    assert_eq!(sessions(&served), sessions(&expected), "{name}: sessions");
    // Spend of finished work is unchanged.
    let finished_ids: Vec<&Value> = before
        .iter()
        .filter(|j| j["state"] != "running")
        .map(|j| &j["id"])
        .collect();
    let rows = |answer: &Value| -> Vec<Value> {
        answer["costs_by_job"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|row| finished_ids.iter().any(|id| row["key"] == id.to_string()))
            .cloned()
            .collect()
    };
    assert_eq!(rows(&served), rows(&expected), "{name}: spend by job");
    // The audit log goes on from where it was.
    let entries = |answer: &Value| answer["audit"]["entries"].as_array().unwrap().clone();
    let (old, new) = (entries(&expected), entries(&served));
    assert!(
        new.len() >= old.len() && old.iter().all(|e| new.contains(e)),
        "{name}: audit"
    );
    // Both keys still work.
    let operate = expected["operate_key"].as_str().unwrap();
    for key in [TEST_KEY, operate] {
        let response = shoal_daemon::testsuite::http_client_builder()
            .build()
            .unwrap()
            .get(format!("{api}/v1/jobs"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}: a stored key");
    }
    cluster.shutdown().await;
}
