//! `shoal` over HTTPS: it trusts the fleet CA given with `--cacert` (or `SHOAL_CACERT`,
//! or `SHOAL_CACERT_PEM`), and a node whose certificate another CA issued is refused
//! with an error that says so and how to give the right one.

use std::process::{Command, Output};

use shoal_daemon::testsuite::{Cluster, TEST_CA, TEST_KEY, init_logs, test_ca_file};

/// `shoal` with no CA in its environment but what `env` sets, from an empty directory
/// (so no dev fleet's data directory is found).
fn shoal_with(addr: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let empty = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
    command
        .current_dir(empty.path())
        .env_remove("SHOAL_CACERT")
        .env_remove("SHOAL_CACERT_PEM")
        .env("SHOAL_ADDR", addr)
        .env("SHOAL_TOKEN", TEST_KEY);
    for (name, value) in env {
        command.env(name, value);
    }
    command.args(args).output().expect("running shoal")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_trusts_the_fleet_ca_it_is_given_and_refuses_another() {
    init_logs();
    let cluster = Cluster::start(1).await.unwrap();
    let addr = cluster.api(0);
    assert!(addr.starts_with("https://"), "{addr}");
    let ca = test_ca_file().to_string_lossy().to_string();
    let run = |env: Vec<(&'static str, String)>, args: &'static [&'static str]| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
            shoal_with(&addr, &env, args)
        })
    };

    // --cacert, SHOAL_CACERT and SHOAL_CACERT_PEM (what a job gets) each work.
    for env in [
        vec![("SHOAL_CACERT", ca.clone())],
        vec![("SHOAL_CACERT_PEM", TEST_CA.cert_pem.clone())],
    ] {
        let output = run(env, &["machines", "ls"]).await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("node-0"),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let addr2 = addr.clone();
    let ca2 = ca.clone();
    let output =
        tokio::task::spawn_blocking(move || shoal_with(&addr2, &[], &["--cacert", &ca2, "health"]))
            .await
            .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Another fleet's CA: refused, exit 3, and the error says the certificate is not
    // from the CA it was given.
    let other = tempfile::NamedTempFile::new().unwrap();
    let stranger = shoal_daemon::tls::FleetCa::generate().unwrap();
    std::fs::write(other.path(), &stranger.cert_pem).unwrap();
    let path = other.path().to_string_lossy().to_string();
    let output = run(vec![("SHOAL_CACERT", path.clone())], &["machines", "ls"])
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("certificate")
            && stderr.contains("not from the fleet CA in")
            && stderr.contains(&path),
        "{stderr}"
    );

    // No CA at all: the error says how to give one.
    let output = run(vec![], &["machines", "ls"]).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("--cacert") && stderr.contains("SHOAL_CACERT"),
        "{stderr}"
    );

    // A file that is no certificate: a clear error naming it.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "not a certificate").unwrap();
    let path = bad.path().to_string_lossy().to_string();
    let output = run(vec![("SHOAL_CACERT", path.clone())], &["machines", "ls"])
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&path) && stderr.contains("fleet CA"),
        "{stderr}"
    );
    cluster.shutdown().await;
}
