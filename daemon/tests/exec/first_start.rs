//! A fleet's first start as a service starts it: the `shoald` binary with its output
//! going to a journal (a file here, not a terminal), the secret in a file, no key given.
//! Everything it writes is the daemon's alone (directories 0700, files 0600), the first
//! admin key it makes is in `admin.key` and works over HTTPS with the CA it made, and the
//! key is nowhere else: not in its output, not in its log, not in the Raft store; nor is the
//! secret on its command line, where `ps` shows it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use shoal_daemon::testsuite::{TEST_SECRET, wait_until};

use crate::support::{free_ports, free_tcp_port};

/// Every path under `dir` with its mode bits, directories first.
fn modes(dir: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                pending.push(entry.unwrap().path());
            }
        }
        if meta.is_dir() || meta.is_file() {
            found.push((path, meta.is_dir(), meta.permissions().mode() & 0o777));
        }
    }
    found
}

/// `shoald` as a service starts it, on loopback ports of its own: data in `dir/data`, the
/// test secret in `dir/cluster.secret`, `config` as its config file, stdout nowhere and
/// stderr (its log) in `dir/stderr`. The caller adds what its test needs, then spawns.
/// Also gives the API's port.
fn shoald_on_loopback(dir: &Path, config: &str) -> (Command, String) {
    let secret = dir.join("cluster.secret");
    std::fs::write(&secret, TEST_SECRET).unwrap();
    let config_file = dir.join("shoald.toml");
    std::fs::write(&config_file, config).unwrap();
    let [api_port, gossip_port, p2p_port] = free_ports().map(|port| port.to_string());
    let mut shoald = Command::new(env!("CARGO_BIN_EXE_shoald"));
    shoald
        .args(["--config", config_file.to_str().unwrap()])
        .args(["--data-dir", dir.join("data").to_str().unwrap()])
        .args(["--bind", "127.0.0.1", "--api-port", &api_port])
        .args(["--gossip-port", &gossip_port, "--p2p-port", &p2p_port])
        .args(["--cluster-secret-file", secret.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap());
    (shoald, api_port)
}

/// What `shoald_on_loopback` in `dir` has logged so far.
fn log_in(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_keeps_its_key_private_and_the_data_dir_the_daemons_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let stdout = dir.path().join("stdout");
    let (mut shoald, api_port) = shoald_on_loopback(dir.path(), "load_threshold = 1000.0\n");
    let mut shoald = shoald
        .stdout(std::fs::File::create(&stdout).unwrap())
        .spawn()
        .expect("starting shoald");
    let log = || log_in(dir.path());

    // The key the node made, used over HTTPS with the CA the node made.
    let api = format!("https://127.0.0.1:{api_port}");
    let answered = wait_until(
        Duration::from_secs(30),
        "the kept key to be accepted",
        || {
            let key = std::fs::read_to_string(data.join("admin.key")).ok()?;
            let ca = std::fs::read_to_string(data.join("tls/ca.pem")).ok()?;
            Some((key, ca))
        },
    )
    .await;
    let (key, ca) = answered.unwrap_or_else(|err| panic!("{err}; shoald's log:\n{}", log()));
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(shoal_daemon::tls::client_config(&ca).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut status = None;
    for _ in 0..150 {
        let sent = client
            .get(format!("{api}/v1/machines"))
            .bearer_auth(key.trim())
            .send()
            .await;
        status = sent.ok().map(|response| response.status());
        if status == Some(reqwest::StatusCode::OK) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen_log = log();
    // What `ps` shows of it: the README's command names the secret's file, not the secret.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", shoald.id())).unwrap();
    let shown = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(shown.contains("--cluster-secret-file"), "{shown}");
    assert!(
        !shown.contains(TEST_SECRET) && !shown.contains(key.trim()),
        "{shown}"
    );
    let _ = shoald.kill();
    let _ = shoald.wait();
    assert_eq!(
        status,
        Some(reqwest::StatusCode::OK),
        "the key in admin.key: {status:?}; shoald's log:\n{seen_log}"
    );

    // A journal gets plain lines: no terminal colour codes.
    assert!(
        !seen_log.contains('\x1b'),
        "the log holds escape codes:\n{seen_log}"
    );

    // Said where the key is, and nothing more.
    let printed = std::fs::read_to_string(&stdout).unwrap();
    assert!(
        !printed.contains(key.trim()),
        "stdout shows the key:\n{printed}"
    );
    assert!(
        !seen_log.contains(key.trim()),
        "the log shows the key:\n{seen_log}"
    );
    assert!(
        seen_log.contains(&data.join("admin.key").display().to_string()),
        "the log does not say where the key is:\n{seen_log}"
    );

    // The daemon's alone, and the key is in admin.key only.
    let found = modes(&data);
    assert!(found.len() > 5, "the data dir holds {found:?}");
    for (path, is_dir, mode) in &found {
        let private = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, private, "{} is {mode:o}", path.display());
        if !is_dir && path.file_name() != Some("admin.key".as_ref()) {
            let bytes = std::fs::read(path).unwrap();
            let holds = bytes
                .windows(key.trim().len())
                .any(|window| window == key.trim().as_bytes());
            assert!(!holds, "{} holds the admin key", path.display());
        }
    }
}

#[test]
fn plain_http_off_loopback_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("shoald.toml");
    std::fs::write(&config, "").unwrap();
    let mut shoald = Command::new(env!("CARGO_BIN_EXE_shoald"))
        .args(["--config", config.to_str().unwrap()])
        .args(["--data-dir", data.to_str().unwrap()])
        .args(["--bind", "0.0.0.0", "--advertise", "127.0.0.1"])
        .args([
            "--api-port",
            &free_tcp_port().to_string(),
            "--insecure-http",
        ])
        .args(["--cluster-secret", TEST_SECRET])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting shoald");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = shoald.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = shoald.kill();
            panic!("shoald still runs with --insecure-http on 0.0.0.0");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut said = String::new();
    std::io::Read::read_to_string(&mut shoald.stderr.take().unwrap(), &mut said).unwrap();
    assert!(!status.success(), "shoald exited with {status}: {said}");
    assert!(
        said.contains("--insecure-http-any-address") && said.contains("in clear"),
        "the refusal does not say why or how: {said}"
    );
    assert!(!data.exists(), "a refused start wrote {}", data.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_shoal_log_format_json_every_log_line_is_a_json_object() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut shoald, _) = shoald_on_loopback(dir.path(), "");
    let mut shoald = shoald
        .env("SHOAL_LOG_FORMAT", "json")
        .spawn()
        .expect("starting shoald");
    let log = || log_in(dir.path());
    // Logged enough: it made the key and says where.
    let said = wait_until(Duration::from_secs(30), "the key's path in the log", || {
        log().contains("admin.key").then_some(())
    })
    .await;
    let _ = shoald.kill();
    let _ = shoald.wait();
    let text = log();
    said.unwrap_or_else(|err| panic!("{err}; shoald's log:\n{text}"));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    for line in lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
        assert!(
            event["level"].is_string() && event["fields"].is_object(),
            "{line}"
        );
    }

    // Another format is refused before anything starts, saying which ones there are.
    let refused = Command::new(env!("CARGO_BIN_EXE_shoald"))
        .args(["diagnose", "--data-dir", data.to_str().unwrap()])
        .env("SHOAL_LOG_FORMAT", "yaml")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("SHOAL_LOG_FORMAT=\"yaml\": use text (the default) or json"),
        "{said}"
    );
}

#[test]
fn init_makes_the_cluster_secret_file_the_readme_starts_with() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let secret = dir.path().join("etc/shoal/cluster.secret");
    let init = Command::new(env!("CARGO_BIN_EXE_shoald"))
        .args(["init", "--data-dir", data.to_str().unwrap()])
        .args(["--cluster-secret-file", secret.to_str().unwrap()])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&init.stdout);
    assert!(
        init.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let made = std::fs::read_to_string(&secret).unwrap();
    assert_eq!(made.trim().len(), 48, "{made}");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        printed.contains(&format!(
            "the cluster secret: {} (made, 0600)",
            secret.display()
        )),
        "{printed}"
    );
    assert!(
        !printed.contains(made.trim()),
        "the secret is printed:\n{printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_whose_seeds_never_answer_says_so_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    // A seed nobody listens on.
    let seed = format!("127.0.0.1:{}", free_tcp_port());
    let (mut shoald, _) = shoald_on_loopback(dir.path(), "[timings]\nseed_warning = \"1s\"\n");
    let mut shoald = shoald
        .args(["--join", &seed])
        .spawn()
        .expect("starting shoald");
    let log = || log_in(dir.path());
    let warned = wait_until(Duration::from_secs(20), "the seed warning", || {
        let text = log();
        (text.matches("no machine of a fleet answers").count() >= 2).then_some(())
    })
    .await;
    let _ = shoald.kill();
    let _ = shoald.wait();
    let text = log();
    warned.unwrap_or_else(|err| panic!("{err}; shoald's log:\n{text}"));
    assert!(text.contains(&format!("seeds={seed}")), "{text}");
}
