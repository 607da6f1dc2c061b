//! Forming a fleet and agreeing on it.

use std::time::Duration;

use shoal_daemon::testsuite::{Cluster, wait_until};
use shoal_protocol::MachineStatus;
use shoal_protocol::api::{ClusterStatus, MachineList};

async fn get<T: serde::de::DeserializeOwned>(url: String) -> T {
    let response = reqwest::get(&url)
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_on_the_machine_list() {
    shoal_daemon::testsuite::init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    let mut lists = Vec::new();
    for i in 0..3 {
        let list: MachineList = get(format!("{}/v1/machines", cluster.api(i))).await;
        assert_eq!(list.machines.len(), 3, "node {i} lists {:?}", list.machines);
        for machine in &list.machines {
            assert_eq!(machine.status, MachineStatus::Online);
            assert!(machine.resources.cpu_cores >= 1);
            assert!(machine.resources.memory_total_bytes > 0);
            assert!(!machine.hostname.is_empty());
            assert_eq!(machine.os, std::env::consts::OS);
            assert!(machine.last_heartbeat_ms > 0);
        }
        let mut names: Vec<_> = list.machines.iter().map(|m| m.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["node-0", "node-1", "node-2"]);
        lists.push(
            list.machines
                .iter()
                .map(|m| (m.id, m.name.clone()))
                .collect::<Vec<_>>(),
        );
    }
    assert!(
        lists.windows(2).all(|w| w[0] == w[1]),
        "nodes disagree: {lists:?}"
    );

    let status: ClusterStatus = get(format!("{}/v1/cluster", cluster.api(1))).await;
    wait_until(Duration::from_secs(10), "3 voters", || {
        (shoal_daemon::node::members(&cluster.node(0).raft)
            .values()
            .filter(|(_, voter)| *voter)
            .count()
            == 3)
            .then_some(())
    })
    .await
    .unwrap();
    assert!(status.leader.is_some());
    cluster.shutdown().await;
}
