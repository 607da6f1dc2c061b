//! Secrets kept secret. Secret environment values (`secret_env`): the job that carries one
//! gets it, the API never shows it, and no file in any node's data directory holds it, log
//! and snapshot included. A process job runs as `nobody` in a scratch directory of its
//! own, and reads neither the node's key nor its log.

use std::path::Path;

use serde_json::{Value, json};
use shoal_daemon::testsuite::{Cluster, init_logs};
use shoal_protocol::JobState;

use crate::http::{get, job_output, post, send};

const SECRET: &str = "s3cret-1d5f0a";

/// Every file under `dir` whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_reaches_its_job_and_nothing_else() {
    init_logs();
    let cluster = Cluster::start(2).await.unwrap();
    let api = cluster.api(1);

    // The job prints the value it got in capitals (so its saved output does not hold it).
    let shout = "echo \"$API_TOKEN\" | tr a-z A-Z";
    let body = json!({"command": ["sh", "-c", shout], "secret_env": {"API_TOKEN": SECRET}});
    let (status, answer) = post(format!("{api}/v1/jobs"), body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["job"]["spec"]["secret_env"]["API_TOKEN"], "(secret)");
    let id = answer["job"]["id"].as_u64().unwrap();
    cluster
        .wait_job(0, shoal_protocol::JobId(id), "completed", |j| {
            j.state == JobState::Completed
        })
        .await;
    let shouted = format!("{}\n", SECRET.to_uppercase());
    assert_eq!(job_output(&api, id).await, shouted);

    // A template's secret is sealed the same way.
    let template = json!({"image": "busybox:local", "secret_env": {"DB_PASSWORD": SECRET}});
    let url = format!("{api}/v1/templates/with-secret");
    let (status, answer) = send(reqwest::Method::PUT, url.clone(), template).await;
    assert_eq!(status, 200, "{answer}");

    // No answer of the API holds it.
    for url in [
        format!("{api}/v1/jobs/{id}"),
        format!("{api}/v1/jobs"),
        url.clone(),
        format!("{api}/v1/templates"),
    ] {
        let answer: Value = get(url.clone()).await;
        let text = answer.to_string();
        assert!(
            text.contains("(secret)") && !text.contains(SECRET),
            "{url}: {text}"
        );
    }

    // Bad secrets are refused, naming what is wrong, and nothing is written.
    for (bad, says) in [
        (
            json!({"A": "x\u{0}y"}),
            "secret_env value of A contains a NUL byte",
        ),
        (json!({"1A": "x"}), "secret_env name \"1A\""),
        (
            json!({"A": "x".repeat(16 * 1024 + 1)}),
            "secret_env value of A is",
        ),
    ] {
        let body = json!({"command": ["true"], "secret_env": bad});
        let (status, answer) = post(format!("{api}/v1/jobs"), body).await;
        assert_eq!(status, 400, "{answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    let both = json!({"command": ["true"], "env": {"A": "1"}, "secret_env": {"A": "2"}});
    let (status, answer) = post(format!("{api}/v1/jobs"), both).await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (400, Some("A is in both env and secret_env")),
        "{answer}"
    );
    let listed: Value = get(format!("{api}/v1/jobs")).await;
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 1, "{listed}");

    // At rest: the log and a snapshot on every node hold it sealed.
    for i in 0..2 {
        cluster.node(i).raft.trigger().snapshot().await.unwrap();
    }
    for i in 0..2 {
        let data = cluster.data_dir(i);
        shoal_daemon::testsuite::wait_until(
            std::time::Duration::from_secs(10),
            "a snapshot",
            || data.join("raft/snapshot.bin").exists().then_some(()),
        )
        .await
        .unwrap();
        let holding = files_holding(&data, SECRET.as_bytes());
        assert!(
            holding.is_empty(),
            "node {i} holds the secret in {holding:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_job_reads_neither_the_nodes_key_nor_its_log() {
    init_logs();
    assert!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0,
        "process jobs switch user only under a root shoald: run the tests as root, as CI does"
    );
    let cluster = Cluster::start(1).await.unwrap();
    let api = cluster.api(0);
    let data = cluster.data_dir(0);
    let probe = "id -u; pwd; \
        cat \"$DATA/node.key\" >/dev/null 2>&1 && echo read-key || echo no-key; \
        cat \"$DATA/raft/raft.redb\" >/dev/null 2>&1 && echo read-log || echo no-log; \
        touch \"$DATA/planted\" 2>/dev/null && echo wrote || echo no-write; \
        echo scratch > here && cat here";
    let env = json!({"DATA": data.display().to_string()});
    let body = json!({"command": ["sh", "-c", probe], "env": env});
    let id = cluster.submit(0, body).await;
    cluster
        .wait_job(0, id, "completed", |j| j.state == JobState::Completed)
        .await;
    let output = job_output(&api, id).await;
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), 6, "{output}");
    assert_eq!(lines[0], "65534", "runs as nobody: {output}");
    let scratch = Path::new(lines[1]);
    assert!(
        scratch.starts_with(std::env::temp_dir().join("shoal-runs")),
        "{output}"
    );
    assert_eq!(
        &lines[2..],
        ["no-key", "no-log", "no-write", "scratch"],
        "{output}"
    );
    assert!(!data.join("planted").exists());
    // The scratch directory goes with the run.
    assert!(!scratch.exists(), "{} is left behind", scratch.display());
}
