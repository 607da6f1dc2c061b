//! Fleet operations over HTTP: the machine list filtered by provider and sorted, a bad
//! sort refused, and the fleet summary before and after a machine goes away.

use std::time::Duration;

use shoal_daemon::testsuite::{Cluster, init_logs};
use shoal_protocol::api::{FleetHealth, FleetSummary, MachineList};
use shoal_protocol::{JobState, MachineStatus};

use crate::http::{get, put_labels};

async fn names(url: String) -> Vec<String> {
    let list: MachineList = get(url).await;
    list.machines.into_iter().map(|m| m.name).collect()
}

/// Polls node `api`'s summary until `done` holds, or fails with the last one seen.
async fn wait_summary(api: &str, what: &str, done: impl Fn(&FleetSummary) -> bool) -> FleetSummary {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let summary: FleetSummary = get(format!("{api}/v1/fleet/summary")).await;
        if done(&summary) {
            return summary;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last summary: {summary:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_filter_and_sort_and_the_summary_follows_a_lost_machine() {
    init_logs();
    let mut cluster = Cluster::start(3).await.unwrap();
    let leader = cluster.wait_leader(Duration::from_secs(10)).await.unwrap();
    // The machine that goes away is not the leader, so no election muddies the counts.
    let vps = (0..3).find(|i| *i != leader).unwrap();
    let observer = leader;
    let api = cluster.api(observer);

    // provider is the machine's `provider` label.
    let (status, body) = put_labels(&api, cluster.node(vps).id, &["provider=vps"]).await;
    assert_eq!(status, 200, "{body}");
    let vps_name = format!("node-{vps}");
    assert_eq!(
        names(format!("{api}/v1/machines?provider=vps")).await,
        std::slice::from_ref(&vps_name)
    );
    assert!(
        names(format!("{api}/v1/machines?provider=home"))
            .await
            .is_empty()
    );
    assert_eq!(
        names(format!(
            "{api}/v1/machines?provider=vps&status=online&os={}&consistent=true",
            std::env::consts::OS
        ))
        .await,
        std::slice::from_ref(&vps_name)
    );
    assert_eq!(
        names(format!("{api}/v1/machines?sort=name&order=desc")).await,
        ["node-2", "node-1", "node-0"]
    );
    let list: MachineList = get(format!("{api}/v1/machines?sort=cpu&order=desc")).await;
    let cpu: Vec<f32> = list
        .machines
        .iter()
        .map(|m| m.resources.cpu_usage)
        .collect();
    assert!(cpu.windows(2).all(|w| w[0] >= w[1]), "{cpu:?}");

    // A bad sort is a 400 that names the parameter and what it takes.
    let response = shoal_daemon::testsuite::http_client()
        .get(format!("{api}/v1/machines?sort=load"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "bad_request");
    assert_eq!(
        body["message"],
        "invalid sort: unknown sort \"load\": use one of hostname, name, status, uptime, cpu, memory, last_heartbeat",
    );

    // Every node answers the summary alike.
    for i in 0..3 {
        let summary: FleetSummary = get(format!("{}/v1/fleet/summary", cluster.api(i))).await;
        assert_eq!(summary.machine_id, cluster.node(i).id);
        assert_eq!(summary.health, FleetHealth::Healthy, "{summary:?}");
        assert_eq!((summary.machines, summary.reachable), (3, 3));
        assert_eq!(summary.by_status[&MachineStatus::Online], 3);
        assert_eq!(summary.by_status.len(), MachineStatus::ALL.len());
        assert_eq!(summary.jobs.len(), JobState::ALL.len());
        assert!(summary.cpu_cores >= 3, "{summary:?}");
        assert!(summary.memory_total_bytes > 0 && summary.disk_total_bytes > 0);
        let cpu = summary.avg_cpu_usage.expect("an average over 3 machines");
        assert!((0.0..=1.0).contains(&cpu), "{summary:?}");
        assert!(summary.leader.is_some());
    }

    // One machine stops: the leader marks it OFFLINE and the fleet is degraded.
    cluster.stop(vps).await;
    let summary = wait_summary(&api, "a degraded fleet with one machine down", |s| {
        s.health == FleetHealth::Degraded
    })
    .await;
    assert_eq!(summary.machines, 3);
    assert_eq!(
        (summary.reachable, summary.unreachable),
        (2, 1),
        "{summary:?}"
    );
    assert_eq!(summary.by_status[&MachineStatus::Online], 2, "{summary:?}");
    assert_eq!(
        names(format!("{api}/v1/machines?status=online&provider=vps")).await,
        Vec::<String>::new()
    );
    let down = names(format!("{api}/v1/machines?provider=vps&sort=status")).await;
    assert_eq!(down, [vps_name]);
    cluster.shutdown().await;
}
