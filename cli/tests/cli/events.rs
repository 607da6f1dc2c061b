//! `shoal events` end to end: a follow prints a job's life as it happens, and a read with
//! `--since --json` gives the same events as the node's JSON lines.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use shoal_daemon::testsuite::{Cluster, TEST_KEY, init_logs};
use shoal_protocol::events::{Event, kind};

use super::{shoal, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_printed_and_followed() {
    init_logs();
    let cluster = Cluster::start(1).await.unwrap();
    let addr = cluster.api(0);

    // Follow job events in the background, a line at a time, from what the node has
    // applied now (so however long the process takes to start, nothing is missed).
    let now = cluster
        .node(0)
        .fleet
        .applied()
        .borrow()
        .unwrap_or(0)
        .to_string();
    let mut follower = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .env("SHOAL_ADDR", &addr)
        .env("SHOAL_CACERT", shoal_daemon::testsuite::test_ca_file())
        .env("SHOAL_TOKEN", TEST_KEY)
        .args(["events", "-f", "--topic", "job", "--since", &now])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    let out = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let submit_addr = addr.clone();
    let submitted = tokio::task::spawn_blocking(move || {
        shoal(&submit_addr, &["--json", "job", "run", "--", "true"])
    })
    .await
    .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&stdout(&submitted)).unwrap();
    let id = answer["job"]["id"].as_u64().unwrap().to_string();
    let mut printed: Vec<String> = Vec::new();
    while !printed.iter().any(|l| l.contains(kind::JOB_FINISHED)) {
        let line = tokio::task::block_in_place(|| lines.recv_timeout(Duration::from_secs(20)))
            .unwrap_or_else(|_| panic!("no job_finished line; got {printed:#?}"));
        printed.push(line);
    }
    follower.kill().unwrap();
    let _ = follower.wait();
    let kinds: Vec<&str> = printed
        .iter()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!((fields[2], fields[4]), ("job", id.as_str()), "{line}");
            fields[3]
        })
        .collect();
    assert_eq!(
        kinds,
        [
            kind::JOB_SUBMITTED,
            kind::JOB_DISPATCHED,
            kind::JOB_RUNNING,
            kind::JOB_FINISHED
        ],
        "{printed:#?}"
    );
    assert!(printed[3].contains("state=completed"), "{}", printed[3]);

    // A read from before the job, as JSON lines: the same events, in full.
    let first: u64 = printed[0].split('.').next().unwrap().parse().unwrap();
    let since = (first - 1).to_string();
    let read = tokio::task::spawn_blocking(move || {
        shoal(
            &addr,
            &["events", "--since", &since, "--topic", "job", "--json"],
        )
    })
    .await
    .unwrap();
    let events: Vec<Event> = stdout(&read)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let read_kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(read_kinds, kinds);
    assert!(
        events
            .iter()
            .all(|e| e.subject.as_deref() == Some(id.as_str()))
    );
    cluster.shutdown().await;
}
