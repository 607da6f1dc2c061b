//! Mixed-version fleets: a rolling upgrade of a 3-node fleet from protocol level 1 keeps
//! it working and gossiping; fleet settings (level 2) are refused, naming the machine to
//! upgrade, until the last machine is upgraded and the leader raises the fleet's level,
//! which seals its gossip (level 5); a machine still on level 1 that comes after that is
//! not even heard.

use std::time::Duration;

use serde_json::{Value, json};
use shoal_daemon::config::Timings;
use shoal_daemon::node::{VERSION, members};
use shoal_daemon::testsuite::{Cluster, init_logs, wait_until};
use shoal_gossip::{DropReason, GossipMode};
use shoal_protocol::api::ClusterStatus;
use shoal_protocol::{JobId, JobState, MachineId, PROTOCOL_LEVEL, ProtocolLevel};

use crate::gossip::wait_gossiping;
use crate::http::{get, send};

const ONE: ProtocolLevel = ProtocolLevel(1);
/// What an upgraded machine (this build) speaks.
const NEW: ProtocolLevel = PROTOCOL_LEVEL;

/// Waits until every running node's log records `machine` at `level`.
async fn wait_recorded_level(cluster: &Cluster, machine: MachineId, level: ProtocolLevel) {
    let what = format!("machine {machine} recorded at level {level} on every node");
    cluster
        .wait_every_replica(Duration::from_secs(20), &what, |state| {
            state
                .machines
                .get(&machine)
                .is_some_and(|m| m.info.protocol_level == level)
        })
        .await
        .unwrap();
}

fn level_of(status: &ClusterStatus, machine: MachineId) -> Option<ProtocolLevel> {
    status
        .voters
        .iter()
        .chain(&status.learners)
        .find(|m| m.id == machine)
        .map(|m| m.protocol_level)
}

async fn put_settings(api: &str, body: Value) -> (u16, Value) {
    send(
        reqwest::Method::PUT,
        format!("{api}/v1/fleet/settings"),
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_keeps_the_fleet_working_and_raises_its_level_at_the_end() {
    init_logs();
    let mut cluster = Cluster::start_at_level(3, ONE).await.unwrap();
    let ids: Vec<MachineId> = (0..3).map(|i| cluster.node(i).id).collect();

    // Upgrade two of the three machines; node-2 stays on the older build.
    for i in [0, 1] {
        cluster.upgrade(i).await.unwrap();
        wait_recorded_level(&cluster, ids[i], NEW).await;
        wait_gossiping(&cluster).await;
    }
    // The new build reads plain and sealed gossip and speaks plain to the old one.
    let modes: Vec<GossipMode> = (0..3).map(|i| cluster.node(i).gossip.mode()).collect();
    assert_eq!(
        modes,
        [GossipMode::Open, GossipMode::Open, GossipMode::Plain]
    );
    cluster.wait_leader(Duration::from_secs(20)).await.unwrap();
    let status: ClusterStatus = get(format!("{}/v1/cluster", cluster.api(1))).await;
    assert_eq!(status.fleet_level, ONE, "{status:?}");
    assert_eq!(status.held_back_by, [ids[2]], "{status:?}");
    assert_eq!(level_of(&status, ids[0]), Some(NEW), "{status:?}");
    assert_eq!(level_of(&status, ids[2]), Some(ONE), "{status:?}");

    // The mixed fleet keeps working: jobs submitted through old and new machines complete.
    let mut jobs: Vec<JobId> = Vec::new();
    for via in [0, 2] {
        let job = cluster
            .submit(via, json!({"command": ["sh", "-c", "echo upgraded"]}))
            .await;
        cluster
            .wait_job(via, job, "completed", |j| j.state == JobState::Completed)
            .await;
        jobs.push(job);
    }

    // Fleet settings need level 2: refused on every node, naming the machine to upgrade,
    // and nothing changes.
    for via in [0, 2] {
        let (code, body) =
            put_settings(&cluster.api(via), json!({"job_retention_seconds": 172800})).await;
        assert_eq!(code, 409, "{body}");
        assert_eq!(body["code"], "conflict", "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("needs protocol level 2"), "{message}");
        let upgrade = format!("upgrade node-2 ({VERSION}, level 1)");
        assert!(message.contains(&upgrade), "{message}");
    }
    // A value out of range is a 400 naming the field, whatever the level.
    let (code, body) = put_settings(&cluster.api(1), json!({"job_retention_seconds": 5})).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("job_retention_seconds"),
        "{body}"
    );
    let settings: Value = get(format!(
        "{}/v1/fleet/settings?consistent=true",
        cluster.api(1)
    ))
    .await;
    assert_eq!(settings, json!({"job_retention_seconds": null}));

    // The last machine is upgraded: the leader raises the fleet's level, and the action works.
    cluster.upgrade(2).await.unwrap();
    wait_until(
        Duration::from_secs(20),
        "this build's fleet level on every node",
        || {
            cluster
                .running()
                .into_iter()
                .all(|i| cluster.node(i).fleet.read(|state| state.fleet_level == NEW))
                .then_some(())
        },
    )
    .await
    .unwrap();
    wait_until(
        Duration::from_secs(20),
        "sealed gossip on every node",
        || {
            cluster
                .running()
                .into_iter()
                .all(|i| cluster.node(i).gossip.mode() == GossipMode::Sealed)
                .then_some(())
        },
    )
    .await
    .unwrap();
    wait_gossiping(&cluster).await;
    let status: ClusterStatus = get(format!("{}/v1/cluster", cluster.api(2))).await;
    assert_eq!(status.fleet_level, NEW, "{status:?}");
    assert!(status.held_back_by.is_empty(), "{status:?}");
    assert_eq!(level_of(&status, ids[2]), Some(NEW), "{status:?}");

    let (code, body) =
        put_settings(&cluster.api(2), json!({"job_retention_seconds": 172800})).await;
    assert_eq!(code, 200, "{body}");
    let settings: Value = get(format!(
        "{}/v1/fleet/settings?consistent=true",
        cluster.api(0)
    ))
    .await;
    assert_eq!(settings, json!({"job_retention_seconds": 172800}));
    // Read where the write was taken: that node answered once its replica applied it.
    let audit: Value = get(format!("{}/v1/audit", cluster.api(2))).await;
    let changes: Vec<&Value> = audit["entries"]
        .as_array()
        .expect("audit entries")
        .iter()
        .filter(|e| e["action"] == "set_fleet_settings")
        .collect();
    assert_eq!(
        changes.len(),
        1,
        "only the change that went through: {audit}"
    );
    assert_eq!(changes[0]["outcome"], "ok", "{audit}");

    // Nothing was lost on the way: the jobs are still listed, completed.
    let listed: Value = get(format!("{}/v1/jobs?consistent=true", cluster.api(1))).await;
    for job in &jobs {
        let found = listed["jobs"]
            .as_array()
            .expect("a job list")
            .iter()
            .find(|j| j["id"] == job.0);
        assert_eq!(
            found.map(|j| &j["state"]),
            Some(&json!("completed")),
            "{listed}"
        );
    }

    // A machine still on level 1 that comes now cannot read sealed gossip, and the fleet
    // drops its plain datagrams: it is not heard (so not even listed as refused), never
    // recorded nor a member.
    let plain_before = cluster
        .node(0)
        .gossip
        .dropped_datagrams()
        .get(DropReason::Plain);
    let late = cluster.add_node_at_level(ONE).await.unwrap();
    let late_id = cluster.node(late).id;
    wait_until(
        Duration::from_secs(20),
        "node 0 dropping the late machine's plain gossip",
        || {
            let dropped = cluster.node(0).gossip.dropped_datagrams();
            (dropped.get(DropReason::Plain) > plain_before).then_some(())
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..3 {
        let peers = cluster.node(i).peers.borrow().clone();
        assert!(
            peers.iter().all(|p| p.info.id != late_id),
            "node {i} hears the late machine"
        );
    }
    let status: ClusterStatus = get(format!("{}/v1/cluster", cluster.api(0))).await;
    assert!(status.refused.is_empty(), "{status:?}");
    let (recorded, members) = (
        cluster
            .node(0)
            .fleet
            .read(|s| s.machines.contains_key(&late_id)),
        members(&cluster.node(0).raft),
    );
    assert!(
        !recorded,
        "a level-1 machine was recorded in a fleet above level 1"
    );
    assert!(
        !members.contains_key(&late_id),
        "a level-1 machine joined Raft"
    );

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_fleet_runs_at_this_builds_level() {
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    cluster
        .wait_every_replica(
            Duration::from_secs(20),
            "this build's level on every node",
            |s| s.fleet_level == PROTOCOL_LEVEL,
        )
        .await
        .unwrap();
    let status: ClusterStatus = get(format!("{}/v1/cluster", cluster.api(1))).await;
    assert_eq!(status.fleet_level, PROTOCOL_LEVEL, "{status:?}");
    assert!(
        status.held_back_by.is_empty() && status.refused.is_empty(),
        "{status:?}"
    );
    let (code, body) = put_settings(&cluster.api(1), json!({"job_retention_seconds": 3600})).await;
    assert_eq!(code, 200, "{body}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_from_before_levels_opens_and_is_raised_to_this_builds_level() {
    init_logs();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1/data");
    let cluster = Cluster::start_from_data_dir(&fixture, Timings::fast(), |_| {})
        .await
        .unwrap();
    let id = cluster.node(0).id;
    // What the old build wrote says nothing of levels: the machine's record and the fleet
    // read as level 1 until this build's leader raises them.
    wait_until(
        Duration::from_secs(20),
        "the fleet raised to this build's level",
        || {
            cluster.node(0).fleet.read(|s| {
                let recorded = s.machines.get(&id).map(|m| m.info.protocol_level);
                (s.fleet_level == PROTOCOL_LEVEL && recorded == Some(PROTOCOL_LEVEL)).then_some(())
            })
        },
    )
    .await
    .unwrap();
    let settings: Value = get(format!("{}/v1/fleet/settings", cluster.api(0))).await;
    assert_eq!(settings, json!({"job_retention_seconds": null}));
    cluster.shutdown().await;
}
