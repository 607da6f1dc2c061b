//! `GET /v1/openapi.json`: the document lists exactly what the router serves, and a
//! schema-driven fuzzer (schemathesis, from PyPI) finds no 500, no crash and no answer
//! that breaks the document.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use shoal_daemon::config::Timings;
use shoal_daemon::testsuite::{Cluster, TEST_KEY, init_logs};

/// Every operation of the document as (method, path).
fn operations(document: &Value) -> Vec<(String, String)> {
    let paths = document["paths"]
        .as_object()
        .expect("the document has paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "put", "post", "delete"].contains(&m.as_str()))
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_every_route_and_each_needs_the_key_it_says() {
    init_logs();
    let cluster = Cluster::start(1).await.unwrap();
    let api = cluster.api(0);
    // No key: the document is public, like /health.
    let anonymous = shoal_daemon::testsuite::http_client_builder()
        .build()
        .unwrap();
    let response = anonymous
        .get(format!("{api}/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");

    let operations = operations(&document);
    for expected in [
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs/{id}/logs"),
        ("DELETE", "/v1/machines/{id}"),
        ("PUT", "/v1/killswitch"),
        ("GET", "/v1/events"),
        ("POST", "/v1/tokens/registration"),
        ("POST", "/v1/fleet/rotate-key"),
    ] {
        let expected = (expected.0.to_string(), expected.1.to_string());
        assert!(operations.contains(&expected), "{expected:?} missing");
    }
    for (method, path) in &operations {
        let operation = &document["paths"][path][method.to_lowercase()];
        let url = format!("{api}{}", path.replace("{id}", "1"));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let status = anonymous
            .request(method.clone(), &url)
            .send()
            .await
            .unwrap()
            .status();
        if path.starts_with("/v1/") {
            // Served (not the fallback's 404) and behind the key the document names.
            assert_eq!(status, 401, "{method} {path} without a key");
            if operation["security"][0]["job_token"].is_array() {
                continue; // running work's token, not a key
            }
            let scope = &operation["security"][0]["bearer"][0];
            assert!(
                ["read", "operate", "admin"].contains(&scope.as_str().unwrap_or_default()),
                "{method} {path} names no scope: {operation}"
            );
            assert!(operation["responses"]["401"].is_object(), "{method} {path}");
        } else {
            assert_eq!(status, 200, "{method} {path} is public");
        }
    }
    // The scope the document names is the one the node enforces: a read key may read
    // jobs but not submit one.
    let jobs = &document["paths"]["/v1/jobs"];
    assert_eq!(jobs["get"]["security"][0]["bearer"][0], "read");
    assert_eq!(jobs["post"]["security"][0]["bearer"][0], "operate");
    assert_eq!(
        document["paths"]["/v1/keys"]["post"]["security"][0]["bearer"][0],
        "admin"
    );
    assert_eq!(
        document["paths"]["/v1/fleet/rotate-key"]["post"]["security"][0]["bearer"][0],
        "admin"
    );
    // Answers are views: no stored record is part of the API, so the log's format can
    // change without changing it.
    let schemas = document["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("JobView") && schemas.contains_key("ApiKeyView"));
    for stored in [
        "JobRecord",
        "JobSpec",
        "Attempt",
        "Template",
        "TemplateSpec",
        "Policy",
        "PolicySpec",
        "ApiKeyRecord",
        "RegistrationToken",
        "AuditEntry",
        "FleetSettings",
        "KillSwitch",
    ] {
        assert!(!schemas.contains_key(stored), "{stored} is in the API");
    }
    cluster.shutdown().await;
}

/// Runs schemathesis against one node with an admin key, with two seeds: every check but
/// `positive_data_acceptance` (some rules span fields, e.g. a job needs a command or an
/// image, which the document does not spell out). Jobs are accepted but never run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    init_logs();
    let cluster = Cluster::start_configured(1, Timings::fast(), |config| {
        config.run_jobs = false;
    })
    .await
    .unwrap();
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    // Two fixed seeds: each run repeats, and together they reach further than one.
    for seed in ["20261122", "20261206"] {
        // schemathesis keeps a cache in its working directory: keep it out of the tree.
        let workdir = tempfile::tempdir().unwrap();
        let run = tokio::process::Command::new("schemathesis")
            .args(["run", &format!("{}/v1/openapi.json", cluster.api(0))])
            .args(["--header", &format!("Authorization: Bearer {TEST_KEY}")])
            .arg("--tls-verify")
            .arg(shoal_daemon::testsuite::test_ca_file())
            .args([
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
            ])
            .args(["--max-examples", "25", "--request-timeout", "10"])
            .args(["--seed", seed, "--no-color"])
            .env("PYTHONPATH", &hooks)
            .env("SCHEMATHESIS_HOOKS", "shoal_fuzz_hooks")
            .current_dir(workdir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(600), run)
            .await
            .expect("schemathesis finished within 10 minutes")
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run schemathesis ({err}): this test fuzzes the API with it; \
                     install it with `pip install schemathesis`, as .ci/run does"
                )
            });
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "schemathesis, seed {seed}: {}\n{report}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(report.contains("passed"), "seed {seed}: {report}");
    }
    cluster.shutdown().await;
}
