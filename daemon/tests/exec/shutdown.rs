//! `systemctl stop` / `docker stop`: the `shoald` binary ends within 5 s of SIGTERM with a
//! process job running, stops that process, and after the restart the log counts the
//! attempt lost and the job runs again.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use shoal_daemon::testsuite::{TEST_KEY, TEST_SECRET, http_client, wait_until};

use crate::support::free_ports;

/// Starts `shoald` in `dir`, its log in `dir/shoald.log`. The test host's load says
/// nothing about this machine's capacity (builds run beside it): it never goes BUSY.
fn start(dir: &Path, ports: [u16; 3]) -> Child {
    let [api, gossip, p2p] = ports.map(|p| p.to_string());
    let config = dir.join("shoald.toml");
    std::fs::write(&config, "load_threshold = 1000.0\n").unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("shoald.log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_shoald"))
        .args(["--config", config.to_str().unwrap()])
        .args(["--data-dir", dir.join("data").to_str().unwrap()])
        .args(["--bind", "127.0.0.1"])
        .args([
            "--api-port",
            &api,
            "--gossip-port",
            &gossip,
            "--p2p-port",
            &p2p,
        ])
        .args(["--cluster-secret", TEST_SECRET, "--bootstrap-key", TEST_KEY])
        .arg("--allow-process-jobs")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting shoald")
}

async fn job(api: &str, id: u64) -> Option<serde_json::Value> {
    let response = http_client()
        .get(format!("{api}/v1/jobs/{id}"))
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

/// Whether process `pid` is alive (a zombie counts as gone: it has exited).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.split(") ").nth(1).unwrap_or("").starts_with('Z'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_shoald_within_five_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let log = || std::fs::read_to_string(dir.path().join("shoald.log")).unwrap_or_default();
    let ports = free_ports();
    let api = format!("https://127.0.0.1:{}", ports[0]);
    // The fleet CA the client trusts, where shoald looks for it.
    shoal_daemon::testsuite::TEST_CA
        .store(&dir.path().join("data"))
        .unwrap();
    let mut shoald = start(dir.path(), ports);

    // A process job that records its pid, then runs for a minute.
    let jobs_dir = shoal_daemon::testsuite::dir_for_process_jobs();
    let pids = jobs_dir.path().join("pids");
    let record = format!("echo $$ >> {}; exec sleep 60", pids.display());
    let body = json!({ "command": ["sh", "-c", record], "max_attempts": 2 });
    let mut submitted = None;
    for _ in 0..100 {
        if let Ok(response) = http_client()
            .post(format!("{api}/v1/jobs"))
            .json(&body)
            .send()
            .await
            && response.status() == 201
        {
            submitted = Some(response.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = submitted.expect("shoald took the job")["job"]["id"]
        .as_u64()
        .unwrap();
    let first: i32 = wait_until(Duration::from_secs(15), "the job's process", || {
        std::fs::read_to_string(&pids).ok()?.trim().parse().ok()
    })
    .await
    .unwrap_or_else(|err| panic!("{err}; shoald's log:\n{}", log()));

    let asked = Instant::now();
    kill(Pid::from_raw(shoald.id() as i32), Signal::SIGTERM).unwrap();
    let status = loop {
        if let Some(status) = shoald.try_wait().unwrap() {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "shoald still runs 5 s after SIGTERM; its log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "shoald exited with {status}");
    assert!(!alive(first), "the job's process outlived its daemon");

    // Back: the log counts the first attempt lost, and the job runs again.
    let mut shoald = start(dir.path(), ports);
    let record = wait_until(Duration::from_secs(20), "a second attempt", || {
        let lines = std::fs::read_to_string(&pids).ok()?;
        (lines.lines().count() >= 2).then_some(())
    })
    .await;
    let seen = job(&api, id).await;
    let _ = shoald.kill();
    let _ = shoald.wait();
    record.unwrap_or_else(|err| panic!("{err}; the job is {seen:#?}; shoald's log:\n{}", log()));
    let seen = seen.expect("the job over the API");
    let attempts = seen["attempts"].as_array().expect("attempts");
    assert_eq!(
        attempts[0]["error"], "shoald restarted and lost the run",
        "{seen:#}"
    );
}
