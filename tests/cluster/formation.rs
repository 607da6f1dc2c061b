//! Forming a fleet and agreeing on it: machine lists, voters, labels, the secret.

use std::time::Duration;

use shoal_daemon::testsuite::{Cluster, init_logs, wait_until};
use shoal_protocol::MachineStatus;
use shoal_protocol::api::ClusterStatus;

use crate::http::{get, machines, put_labels};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_on_the_machine_list_with_three_voters() {
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    let mut lists = Vec::new();
    for i in 0..3 {
        let list = machines(&cluster.api(i)).await;
        assert_eq!(list.len(), 3, "node {i} lists {list:?}");
        for machine in &list {
            assert_eq!(machine.status, MachineStatus::Online);
            assert!(machine.resources.cpu_cores >= 1);
            assert!(machine.resources.memory_total_bytes > 0);
            assert!(!machine.hostname.is_empty());
            assert_eq!(machine.os, std::env::consts::OS);
            assert!(machine.last_heartbeat_ms > 0);
        }
        let mut names: Vec<_> = list.iter().map(|m| m.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["node-0", "node-1", "node-2"]);
        lists.push(
            list.iter()
                .map(|m| (m.id, m.name.clone()))
                .collect::<Vec<_>>(),
        );
    }
    assert!(
        lists.windows(2).all(|w| w[0] == w[1]),
        "nodes disagree: {lists:?}"
    );
    let status: ClusterStatus = get(format!("{}/v1/cluster", cluster.api(1))).await;
    assert_eq!(status.voters.len(), 3, "{status:?}");
    assert_eq!(status.learners.len(), 0);
    assert!(status.leader.is_some());
    assert!(
        status.commit_index.is_some() && status.commit_index >= status.last_applied,
        "{status:?}"
    );
    assert!(status.last_log_index >= status.commit_index, "{status:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_get_five_voters() {
    init_logs();
    let cluster = Cluster::start(5).await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_changes_reach_every_node() {
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    let target = cluster.node(2).id;

    // An operator label set through one node's API.
    let (status, body) = put_labels(&cluster.api(1), target, &["zone=attic"]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["labels"]["zone"], "attic");
    // A machine's own label, changed on the machine and carried by gossip.
    cluster
        .node(2)
        .info
        .send_modify(|info| info.labels.insert("gpu", "rtx3090").unwrap());

    for i in 0..3 {
        let node = cluster.node(i);
        wait_until(Duration::from_secs(5), "both labels on every node", || {
            node.fleet.read(|state| {
                let labels = state.machines.get(&target)?.labels();
                (labels.get("zone") == Some("attic") && labels.get("gpu") == Some("rtx3090"))
                    .then_some(())
            })
        })
        .await
        .unwrap();
    }

    // Bad input is refused with a clear message and changes nothing.
    let response = shoal_daemon::testsuite::http_client()
        .put(format!("{}/v1/machines/{target}/labels", cluster.api(0)))
        .json(&serde_json::json!({"set": {"Bad Key": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "bad_request");
    assert!(
        body["message"].as_str().unwrap().contains("Bad Key"),
        "{body}"
    );
    let response = shoal_daemon::testsuite::http_client()
        .put(format!("{}/v1/machines/{target}/labels", cluster.api(0)))
        .json(&serde_json::json!({"remove": ["zone", "No Such Key"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("No Such Key"),
        "{body}"
    );
    let zone = cluster
        .node(0)
        .fleet
        .read(|s| s.machines[&target].labels().get("zone").map(String::from));
    assert_eq!(
        zone.as_deref(),
        Some("attic"),
        "a refused request changed nothing"
    );
    let (status, body) = put_labels(&cluster.api(0), shoal_protocol::MachineId(1), &["a=b"]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_secret_is_not_listed() {
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    let outsider = cluster
        .start_outsider("not-the-cluster-secret")
        .await
        .unwrap();
    // Give gossip ample rounds to spread the outsider if it were accepted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..3 {
        let list = machines(&cluster.api(i)).await;
        assert_eq!(list.len(), 3, "node {i} lists the outsider: {list:?}");
        assert!(list.iter().all(|m| m.id != outsider.node.id));
        assert!(cluster.node(i).peer(outsider.node.id).is_none());
    }
    assert!(
        outsider
            .node
            .peers
            .borrow()
            .iter()
            .all(|p| p.info.id == outsider.node.id),
        "outsider sees the fleet"
    );
    outsider.shutdown().await;
    cluster.shutdown().await;
}
