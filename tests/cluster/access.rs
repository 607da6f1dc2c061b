//! API keys on a live cluster: no key is 401, a key without the scope is 403, another
//! org's job is 404, and a revoked key is refused by every node.

use std::time::Duration;

use serde_json::{Value, json};
use shoal_daemon::testsuite::{Cluster, http_client, init_logs};

/// A client that sends `key` (none when empty).
fn client_with(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if !key.is_empty() {
        headers.insert("x-shoal-key", key.parse().unwrap());
    }
    shoal_daemon::testsuite::http_client_builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, &url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn create_key(api: &str, body: Value) -> (String, String) {
    let (status, created) = call(
        &http_client(),
        reqwest::Method::POST,
        format!("{api}/v1/keys"),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    assert!(
        created["record"].get("secret_sha256").is_none(),
        "the hash stays in the fleet"
    );
    (key, created["record"]["id"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_decide_who_sees_and_does_what() {
    use reqwest::Method;
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    let api = cluster.api(0);
    let admin = http_client();

    // /health is open; /v1 needs a key that the fleet knows.
    let (status, _) = call(&client_with(""), Method::GET, format!("{api}/health"), None).await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &client_with(""),
        Method::GET,
        format!("{api}/v1/machines"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let made_up = format!("shoal_{}_{}", "ab".repeat(8), "cd".repeat(32));
    let (status, _) = call(
        &client_with(&made_up),
        Method::GET,
        format!("{api}/v1/machines"),
        None,
    )
    .await;
    assert_eq!(status, 401);

    // A read key reads, and is refused changes with 403 naming the scope needed.
    let (reader, _) = create_key(&api, json!({"scope": "read", "name": "dashboard"})).await;
    let reader = client_with(&reader);
    let (status, _) = call(&reader, Method::GET, format!("{api}/v1/jobs"), None).await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &reader,
        Method::POST,
        format!("{api}/v1/jobs"),
        Some(json!({"command": ["true"]})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("operate"),
        "{body}"
    );
    let (status, _) = call(&reader, Method::GET, format!("{api}/v1/keys"), None).await;
    assert_eq!(status, 403, "keys are for admins");

    // A read key sees which variables a job or template sets, never their values.
    let (status, body) = call(
        &admin,
        Method::POST,
        format!("{api}/v1/jobs"),
        Some(json!({"command": ["true"], "env": {"API_TOKEN": "s3cret-value"}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let with_env = body["job"]["id"].as_u64().unwrap();
    let template = json!({"image": "busybox:local", "env": {"DB_PASSWORD": "s3cret-value"}});
    let (status, body) = call(
        &admin,
        Method::PUT,
        format!("{api}/v1/templates/with-env"),
        Some(template),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for path in [
        format!("/v1/jobs/{with_env}"),
        "/v1/jobs".to_string(),
        "/v1/templates/with-env".to_string(),
        "/v1/templates".to_string(),
    ] {
        let (status, seen) = call(&reader, Method::GET, format!("{api}{path}"), None).await;
        assert_eq!(status, 200, "{path}: {seen}");
        let text = seen.to_string();
        assert!(
            !text.contains("s3cret-value") && text.contains("hidden: needs an operate key"),
            "{path} as a read key: {seen}"
        );
    }
    let (_, seen) = call(
        &admin,
        Method::GET,
        format!("{api}/v1/jobs/{with_env}"),
        None,
    )
    .await;
    assert_eq!(seen["spec"]["env"]["API_TOKEN"], "s3cret-value", "{seen}");

    // A key of org homelab runs its own jobs; each org's jobs are invisible to the other.
    let (lab, lab_id) = create_key(&api, json!({"scope": "operate", "org": "homelab"})).await;
    let lab = client_with(&lab);
    let (status, body) = call(
        &lab,
        Method::POST,
        format!("{api}/v1/jobs"),
        Some(json!({"command": ["true"]})),
    )
    .await;
    assert_eq!(
        (status, &body["job"]["spec"]["org"]),
        (201, &json!("homelab")),
        "{body}"
    );
    let theirs = body["job"]["id"].as_u64().unwrap();
    let (status, body) = call(
        &admin,
        Method::POST,
        format!("{api}/v1/jobs"),
        Some(json!({"command": ["true"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let ours = body["job"]["id"].as_u64().unwrap();
    let (status, _) = call(&admin, Method::GET, format!("{api}/v1/jobs/{theirs}"), None).await;
    assert_eq!(status, 404, "another org's job is not there");
    let (status, _) = call(
        &lab,
        Method::POST,
        format!("{api}/v1/jobs/{ours}/cancel"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, listed) = call(&lab, Method::GET, format!("{api}/v1/jobs"), None).await;
    let ids: Vec<u64> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [theirs]);
    let (status, _) = call(
        &lab,
        Method::POST,
        format!("{api}/v1/jobs"),
        Some(json!({"command": ["true"], "org": "lab2"})),
    )
    .await;
    assert_eq!(status, 403, "a key submits for its own org only");

    // Templates belong to their org: the other org neither sees nor rewrites one; its put
    // of the same name makes its own, and the first org's sessions still get theirs.
    let ours_spec = json!({"image": "busybox:local", "command": ["echo", "ours"]});
    let (status, body) = call(
        &admin,
        Method::PUT,
        format!("{api}/v1/templates/shared"),
        Some(ours_spec),
    )
    .await;
    assert_eq!((status, &body["org"]), (200, &json!("default")), "{body}");
    let (status, _) = call(
        &lab,
        Method::GET,
        format!("{api}/v1/templates/shared"),
        None,
    )
    .await;
    assert_eq!(status, 404, "another org's template is not there");
    let rollback = Some(json!({"version": 1}));
    let url = format!("{api}/v1/templates/shared/rollback");
    let (status, _) = call(&lab, Method::POST, url, rollback).await;
    assert_eq!(status, 404);
    let theirs_spec = json!({"image": "busybox:local", "command": ["echo", "theirs"]});
    let (status, body) = call(
        &lab,
        Method::PUT,
        format!("{api}/v1/templates/shared"),
        Some(theirs_spec),
    )
    .await;
    assert_eq!(
        (status, &body["org"], &body["current"]),
        (200, &json!("homelab"), &json!(1)),
        "{body}"
    );
    for (client, org, word) in [(&admin, "default", "ours"), (&lab, "homelab", "theirs")] {
        let (_, listed) = call(client, Method::GET, format!("{api}/v1/templates"), None).await;
        let templates = listed["templates"].as_array().unwrap();
        assert!(
            templates.iter().all(|t| t["org"] == org),
            "{org} sees its own only: {listed}"
        );
        let shared = templates.iter().find(|t| t["name"] == "shared").unwrap();
        assert_eq!(
            shared["versions"][0]["spec"]["command"][1], word,
            "{listed}"
        );
    }

    // What acts on machines is for admins: an operate key may not set a machine's labels
    // (its cost, what policies select), drain it or run batches on it; nor may a read key
    // open a shell in a session. Each 403 names the scope, and nothing changed.
    let machine = cluster.node(1).id;
    let refused = [
        (
            &lab,
            Method::PUT,
            format!("/v1/machines/{machine}/labels"),
            Some(json!({"set": {"cost_per_hour": "1000000"}})),
            "admin",
        ),
        (
            &lab,
            Method::POST,
            "/v1/drain".to_string(),
            Some(json!({"machines": [machine.to_string()]})),
            "admin",
        ),
        (
            &lab,
            Method::POST,
            "/v1/undrain".to_string(),
            Some(json!({"machines": [machine.to_string()]})),
            "admin",
        ),
        (
            &lab,
            Method::POST,
            "/v1/batch/restart".to_string(),
            Some(json!({"all": true})),
            "admin",
        ),
        (
            &reader,
            Method::GET,
            format!("/v1/sessions/{theirs}/attach"),
            None,
            "operate",
        ),
    ];
    for (client, method, path, body, scope) in refused {
        let (status, answer) = call(client, method.clone(), format!("{api}{path}"), body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (403, Some("forbidden")),
            "{method} {path}: {answer}"
        );
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(scope), "{method} {path}: {answer}");
    }
    let (status, seen) = call(
        &admin,
        Method::GET,
        format!("{api}/v1/machines/{machine}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    assert!(seen["labels"].get("cost_per_hour").is_none(), "{seen}");
    assert_ne!(seen["status"], "DRAINING", "{seen}");
    let (status, body) = call(
        &admin,
        Method::PUT,
        format!("{api}/v1/machines/{machine}/labels"),
        Some(json!({"set": {"rack": "2"}})),
    )
    .await;
    assert_eq!(status, 200, "an admin key labels the machine: {body}");

    // Each machine's own health checks reach every node (read scope is enough).
    let other = cluster.node(2).id;
    let (status, machine) = call(
        &reader,
        Method::GET,
        format!("{api}/v1/machines/{other}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = machine["diagnosis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["docker", "disk", "memory", "data_dir"], "{machine}");
    assert_eq!(machine["diagnosis"][3]["ok"], json!(true), "{machine}");

    // Revoked: every node refuses the key within a second.
    let (status, body) = call(
        &admin,
        Method::DELETE,
        format!("{api}/v1/keys/{lab_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["keys"][0]["revoked_at_ms"].is_u64(), "{body}");
    for i in 0..3 {
        let url = format!("{}/v1/jobs", cluster.api(i));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            let status = lab.get(&url).send().await.unwrap().status().as_u16();
            if status == 401 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {i} still takes the revoked key"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_from_init_is_the_fleets_first_key() {
    use std::sync::{Arc, Mutex};
    init_logs();
    let made: Arc<Mutex<Option<(String, std::path::PathBuf)>>> = Arc::default();
    let keep = made.clone();
    let cluster = Cluster::start_configured(1, shoal_daemon::Timings::fast(), move |config| {
        // `shoald init` on the data directory, and no key in the config.
        config.bootstrap_key = None;
        let key = shoal_daemon::identity::init_bootstrap_key(&config.data_dir).unwrap();
        *keep.lock().unwrap() = Some((key, config.data_dir.clone()));
    })
    .await
    .unwrap();
    let (key, dir) = made.lock().unwrap().clone().unwrap();
    let api = cluster.api(0);
    let (status, _) = call(
        &client_with(&key),
        reqwest::Method::GET,
        format!("{api}/v1/keys"),
        None,
    )
    .await;
    assert_eq!(status, 200, "the init key is the fleet's admin key");
    let (status, _) = call(
        &http_client(),
        reqwest::Method::GET,
        format!("{api}/v1/keys"),
        None,
    )
    .await;
    assert_eq!(status, 401, "no other key was made");
    let waiting = dir.join(shoal_daemon::identity::BOOTSTRAP_KEY_FILE);
    assert!(!waiting.exists(), "the plaintext key is gone once recorded");
    assert!(
        shoal_daemon::identity::init_bootstrap_key(&dir).is_err(),
        "init runs once"
    );
    cluster.shutdown().await;
}
