//! Membership by identity: a machine that comes with the cluster secret alone waits as
//! PENDING (not recorded, not in Raft, sent no log entry) until an admin approves it; a
//! machine an admin removed stays out, with its old key or a new one, until it uses a new
//! registration token. The removal rotates the gossip key, so after it neither the removed
//! machine nor one with the secret alone is heard at all; a token brings the keyring.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};
use shoal_daemon::RunningNode;
use shoal_daemon::testsuite::{Cluster, TEST_SECRET, http_client, init_logs, wait_until};
use shoal_protocol::{MachineId, MachineStatus};

const WAIT: Duration = Duration::from_secs(30);
/// A stranger's data directory index, away from the cluster's own nodes.
const STRANGER: usize = 50;

async fn call(method: reqwest::Method, url: String) -> (u16, Value) {
    let response = http_client().request(method, &url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The ids `GET /v1/machines` lists as members and as pending, through node 0.
async fn listed(cluster: &Cluster) -> (Vec<MachineId>, Vec<MachineId>) {
    let (status, list) = call(
        reqwest::Method::GET,
        format!("{}/v1/machines", cluster.api(0)),
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let ids = |key: &str| -> Vec<MachineId> {
        list[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| serde_json::from_value(m["id"].clone()).unwrap())
            .collect()
    };
    (ids("machines"), ids("pending"))
}

/// Waits until node 0's gossip view shows `id` alive: the fleet can see the machine, so
/// what it does not do with it is a decision, not slowness.
async fn seen(cluster: &Cluster, id: MachineId) {
    wait_until(WAIT, "the machine seen in gossip", || {
        cluster.node(0).peer(id).filter(|p| p.live).map(|_| ())
    })
    .await
    .unwrap();
}

/// Waits until node 0 drops datagrams of an unknown key generation (the machine's) and
/// does not count `id` alive (an entry from before the rotation ages out), then holds for
/// a while: `id` stays unheard.
async fn unheard(cluster: &Cluster, id: MachineId) {
    let dropped = || {
        let drops = cluster.node(0).gossip.dropped_datagrams();
        drops.get(shoal_gossip::DropReason::UnknownGeneration)
    };
    let before = dropped();
    let live = || cluster.node(0).peer(id).is_some_and(|p| p.live);
    wait_until(
        WAIT,
        "the machine's datagrams dropped, and it not alive",
        || (dropped() > before && !live()).then_some(()),
    )
    .await
    .unwrap();
    for _ in 0..10 {
        let peer = cluster.node(0).peer(id);
        assert!(peer.is_none_or(|p| !p.live), "the machine is heard");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The log index the stranger's own replica has applied.
fn applied(stranger: &RunningNode) -> u64 {
    stranger.node.fleet.applied().borrow().unwrap_or(0)
}

/// Holds for a few reconcile passes: `id` is neither recorded nor a Raft member on any node.
async fn stays_out(cluster: &Cluster, id: MachineId) {
    for _ in 0..10 {
        for i in cluster.running() {
            let node = cluster.node(i);
            assert!(
                node.fleet.read(|s| !s.machines.contains_key(&id)),
                "recorded on node {i}"
            );
            let members = shoal_daemon::node::members(&node.raft);
            assert!(!members.contains_key(&id), "a Raft member on node {i}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_alone_admits_no_one_and_a_removed_machine_stays_out() {
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    let api = cluster.api(0);

    // With the secret alone: PENDING, not recorded, no log.
    let stranger = cluster.start_stranger(STRANGER, TEST_SECRET).await.unwrap();
    let id = stranger.node.id;
    seen(&cluster, id).await;
    stays_out(&cluster, id).await;
    let (members, pending) = listed(&cluster).await;
    assert!(
        !members.contains(&id) && pending == [id],
        "{members:?} {pending:?}"
    );
    assert_eq!(
        applied(&stranger),
        0,
        "a pending machine is sent no log entry"
    );

    // An admin approves it: it is recorded, ONLINE, and replicates the log.
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{api}/v1/machines/{id}/approve"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_until(WAIT, "the approved machine ONLINE", || {
        let status = cluster
            .node(0)
            .fleet
            .read(|s| s.machines.get(&id).map(|m| m.status));
        (status == Some(MachineStatus::Online) && applied(&stranger) > 0).then_some(())
    })
    .await
    .unwrap();

    // Removed: it leaves, and comes back neither with its key nor with a new one.
    let (status, body) = call(reqwest::Method::DELETE, format!("{api}/v1/machines/{id}")).await;
    assert_eq!(status, 200, "{body}");
    wait_until(WAIT, "the removed machine out of Raft", || {
        let members = shoal_daemon::node::members(&cluster.node(0).raft);
        (!members.contains_key(&id)).then_some(())
    })
    .await
    .unwrap();
    stranger.shutdown().await;
    // The removal rotated the gossip key (protocol level 7): once the grace is over, the
    // key the removed machine holds, and the one the secret gives, open nothing.
    crate::keyring::every_node_seals_with(&cluster, 1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let back = cluster.start_stranger(STRANGER, TEST_SECRET).await.unwrap();
    assert_eq!(back.node.id, id, "the same identity");
    let applied_before = applied(&back);
    unheard(&cluster, id).await;
    stays_out(&cluster, id).await;
    let (_, pending) = listed(&cluster).await;
    assert!(
        !pending.contains(&id),
        "a removed machine is banned, not pending: {pending:?}"
    );
    assert_eq!(
        applied(&back),
        applied_before,
        "no log entry after its removal"
    );
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{api}/v1/machines/{id}/approve"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    back.shutdown().await;

    // After a rotation, a machine with the secret alone is not heard at all (no longer
    // PENDING): the secret gives only generation 0.
    let fresh = cluster
        .start_stranger(STRANGER + 1, TEST_SECRET)
        .await
        .unwrap();
    let new_id = fresh.node.id;
    unheard(&cluster, new_id).await;
    stays_out(&cluster, new_id).await;
    assert_eq!(listed(&cluster).await.1, []);
    fresh.shutdown().await;

    // A new registration token brings the removed identity back.
    let (status, made) = {
        let url = format!("{api}/v1/tokens/registration");
        let response = http_client()
            .post(&url)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    assert_eq!(status, 201, "{made}");
    let token = made["tokens"][0].as_str().unwrap();
    let peer = cluster.node(0).info.borrow().addr.p2p_addr.clone();
    let dir = cluster.data_dir(STRANGER);
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let name = format!("node-{STRANGER}");
    shoal_daemon::join::request(&dir, loopback, &peer, token, &name)
        .await
        .unwrap();
    let rejoined = cluster.start_stranger(STRANGER, TEST_SECRET).await.unwrap();
    wait_until(WAIT, "the machine back with a token, ONLINE", || {
        let status = cluster
            .node(0)
            .fleet
            .read(|s| s.machines.get(&id).map(|m| m.status));
        (status == Some(MachineStatus::Online)).then_some(())
    })
    .await
    .unwrap();
    rejoined.shutdown().await;
    cluster.shutdown().await;
}

/// A machine that shows up under a running machine's name is not let in: approving it is
/// refused, naming the machine that has the name, and it stays pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_named_as_a_running_one_is_refused_saying_so() {
    init_logs();
    let twin = format!("node-{STRANGER}");
    let cluster = Cluster::start_configured(2, shoal_daemon::config::Timings::fast(), move |c| {
        if c.node_name == twin {
            c.node_name = "node-0".into();
        }
    })
    .await
    .unwrap();
    let api = cluster.api(0);
    let stranger = cluster.start_stranger(STRANGER, TEST_SECRET).await.unwrap();
    let id = stranger.node.id;
    seen(&cluster, id).await;
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{api}/v1/machines/{id}/approve"),
    )
    .await;
    let holder = cluster.node(0).id;
    assert_eq!(
        (status, body["message"].as_str().unwrap_or_default()),
        (
            409,
            format!(
                "machine name node-0 is taken by machine {holder}: start this machine with another --node-name"
            )
            .as_str()
        ),
        "{body}"
    );
    let (members, pending) = listed(&cluster).await;
    assert!(
        !members.contains(&id) && pending == [id],
        "{members:?} {pending:?}"
    );
}
