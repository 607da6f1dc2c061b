//! mDNS discovery, exercised only inside a Docker network this test creates: three
//! `shoald` containers with no `join` find each other by multicast, bootstrap together
//! (`--bootstrap-expect 3`) and agree on the machine list.
//!
//! The image is built here `FROM scratch` with this build's `shoald` and the libraries it
//! links.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use shoal_protocol::api::{ClusterStatus, MachineList};

use crate::support::{docker, require_docker};

/// Removes the containers, network and image, even when the test fails.
struct Cleanup {
    containers: Vec<String>,
    network: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", name]).output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

/// The shared libraries `binary` links, from `ldd`.
fn linked_libraries(binary: &Path) -> Vec<PathBuf> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .expect("running ldd");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find(|word| word.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect()
}

/// Builds a `FROM scratch` image holding `shoald` and its libraries.
fn build_image(tag: &str, context: &Path) {
    let shoald = Path::new(env!("CARGO_BIN_EXE_shoald"));
    let root = context.join("root");
    for file in linked_libraries(shoald)
        .iter()
        .chain([&shoald.to_path_buf()])
    {
        let target = if file == shoald {
            root.join("shoald")
        } else {
            root.join(file.strip_prefix("/").unwrap())
        };
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(file, &target)
            .unwrap_or_else(|err| panic!("copying {}: {err}", file.display()));
    }
    // Every machine starts with the test fleet CA, which the test's client trusts.
    shoal_daemon::testsuite::TEST_CA
        .store(&root.join("data"))
        .unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY root/ /\nENTRYPOINT [\"/shoald\"]\n",
    )
    .unwrap();
    docker(&["build", "-q", "-t", tag, context.to_str().unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_on_one_lan_find_each_other_with_mdns() {
    require_docker();
    let _alone = crate::support::one_container_fleet_at_a_time().await;
    let id = std::process::id();
    let cleanup = Cleanup {
        containers: (1..=3).map(|i| format!("shoal-mdns-{id}-{i}")).collect(),
        network: format!("shoal-mdns-{id}"),
        image: format!("shoal-mdns-test:{id}"),
    };
    let context = tempfile::tempdir().unwrap();
    build_image(&cleanup.image, context.path());
    // A bridge network of its own (not --internal: Docker's isolation rules drop multicast
    // on internal networks). The daemons talk only to each other and to this host.
    let subnet = format!("10.{}.{}.0/24", 200 + id % 50, id % 250);
    let prefix = subnet.trim_end_matches("0/24").to_string();
    docker(&["network", "create", "--subnet", &subnet, &cleanup.network]);
    for (i, name) in cleanup.containers.iter().enumerate() {
        let ip = format!("{prefix}{}", 10 + i);
        docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            &cleanup.network,
            "--ip",
            &ip,
            &cleanup.image,
            "--bind",
            &ip,
            "--data-dir",
            "/data",
            "--node-name",
            &format!("lan-{i}"),
            "--cluster-secret",
            "mdns-test-cluster-secret",
            "--bootstrap-expect",
            "3",
            "--bootstrap-key",
            shoal_daemon::testsuite::TEST_KEY,
            "--mdns",
        ]);
    }

    let api = format!("https://{prefix}10:7400/v1/machines");
    let client = shoal_daemon::testsuite::http_client_builder()
        .timeout(Duration::from_secs(2))
        .default_headers(shoal_daemon::testsuite::keyed_headers())
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        if let Ok(response) = client.get(&api).send().await
            && let Ok(list) = response.json::<MachineList>().await
        {
            // BUSY counts: the containers see this host's load, which a parallel build raises.
            let up = list
                .machines
                .iter()
                .filter(|m| m.status.is_reachable())
                .count();
            if list.machines.len() == 3 && up == 3 {
                break;
            }
            last = format!("{} machines, {up} up", list.machines.len());
        }
        if Instant::now() > deadline {
            let logs = docker(&["logs", "--tail", "30", &cleanup.containers[0]]);
            panic!(
                "the three machines did not find each other within 60s ({last}); logs of lan-0:\n{logs}"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // They formed one Raft group together, every node agreeing on the leader.
    let mut leaders = Vec::new();
    for i in 0..3 {
        let url = format!("https://{prefix}{}:7400/v1/cluster", 10 + i);
        let status: ClusterStatus = client.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(status.voters.len() + status.learners.len(), 3, "{status:?}");
        leaders.push(status.leader);
    }
    assert!(
        leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0]),
        "{leaders:?}"
    );
    drop(cleanup);
}
