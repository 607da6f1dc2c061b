//! `shoal snapshot save` against a live node, and `shoal snapshot inspect` on the file it
//! wrote and on damaged, truncated and foreign files (no node needed).

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};
use shoal_daemon::testsuite::{Cluster, init_logs};
use shoal_protocol::JobState;

use crate::{shoal, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_writes_a_private_copy_and_inspect_tells_what_it_holds() {
    init_logs();
    let cluster = Cluster::start(1).await.unwrap();
    let job = cluster.submit(0, json!({"command": ["true"]})).await;
    cluster
        .wait_job(0, job, "completed", |j| j.state == JobState::Completed)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.snap");
    let path = file.to_str().unwrap().to_string();
    let addr = cluster.api(0);
    let saved = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || shoal(&addr, &["snapshot", "save", &path]))
            .await
            .unwrap()
    };
    let saved = stdout(&saved);
    cluster.shutdown().await;
    assert!(saved.starts_with(&format!("saved {path} (")), "{saved}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // No node from here on.
    let nowhere = "http://127.0.0.1:9";
    let shown = stdout(&shoal(nowhere, &["snapshot", "inspect", &path]));
    for line in [
        "machines:   1\n",
        "jobs:       1 (completed 1)\n",
        "api keys:   1 (1 active)\n",
    ] {
        assert!(shown.contains(line), "{line:?} missing from:\n{shown}");
    }
    let json: Value = serde_json::from_str(&stdout(&shoal(
        nowhere,
        &["--json", "snapshot", "inspect", &path],
    )))
    .unwrap();
    let sha256 = json["sha256"].as_str().unwrap();
    assert!(saved.contains(sha256), "{saved}");
    assert_eq!(json["jobs"]["completed"], 1);

    let bytes = std::fs::read(&file).unwrap();
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x10;
    let cases: [(&str, &[u8], &str); 3] = [
        ("damaged.snap", &damaged, "checksum does not match"),
        ("truncated.snap", &bytes[..bytes.len() / 3], "truncated"),
        (
            "foreign.png",
            b"\x89PNG\r\n\x1a\n an image",
            "not a Shoal frame",
        ),
    ];
    for (name, content, why) in cases {
        let bad = dir.path().join(name);
        std::fs::write(&bad, content).unwrap();
        let output = shoal(nowhere, &["snapshot", "inspect", bad.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{name} is not a usable Shoal fleet snapshot")),
            "{stderr}"
        );
        assert!(stderr.contains(why), "{name}: {stderr}");
        assert!(output.stdout.is_empty(), "{name}");
    }
}
