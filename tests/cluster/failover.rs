//! Losing nodes: leader failover, status transitions, restarts, voter replacement.

use std::time::Duration;

use shoal_daemon::node::members;
use shoal_daemon::testsuite::{Cluster, init_logs, wait_until};
use shoal_protocol::MachineStatus;

use crate::http::{machines, put_labels};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_another_and_writes_continue() {
    init_logs();
    let mut cluster = Cluster::start(3).await.unwrap();
    let old = cluster.wait_leader(Duration::from_secs(5)).await.unwrap();
    let old_id = cluster.node(old).id;
    cluster.stop(old).await;

    let new = cluster.wait_leader(Duration::from_secs(10)).await.unwrap();
    assert_ne!(new, old);
    let survivor = cluster.running().into_iter().find(|i| *i != new).unwrap();
    // A write through a follower is forwarded to the new leader.
    let target = cluster.node(survivor).id;
    let (status, body) = put_labels(&cluster.api(survivor), target, &["after=failover"]).await;
    assert_eq!(status, 200, "{body}");
    for i in cluster.running() {
        let node = cluster.node(i);
        wait_until(
            Duration::from_secs(5),
            "the write on every survivor",
            || {
                node.fleet.read(|s| {
                    (s.machines.get(&target)?.labels().get("after") == Some("failover"))
                        .then_some(())
                })
            },
        )
        .await
        .unwrap();
        // The old leader is seen as down.
        wait_until(Duration::from_secs(10), "old leader OFFLINE", || {
            cluster.status_seen(i, old_id).filter(|s| !s.is_reachable())
        })
        .await
        .unwrap();
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_what_it_committed() {
    init_logs();
    let mut cluster = Cluster::start(3).await.unwrap();
    let target = cluster.node(1).id;
    for n in 0..20 {
        let (status, body) =
            put_labels(&cluster.api(n % 3), target, &[&format!("k{n}=v{n}")]).await;
        assert_eq!(status, 200, "{body}");
    }
    let node = cluster.node(1);
    wait_until(Duration::from_secs(5), "all 20 labels on node 1", || {
        node.fleet
            .read(|s| (s.machines.get(&target)?.operator_labels.len() == 20).then_some(()))
    })
    .await
    .unwrap();

    // Stop every node, then bring back node 1 alone: with no quorum, all it shows
    // comes from its own disk.
    for i in 0..3 {
        cluster.stop(i).await;
    }
    cluster.restart(1).await.unwrap();
    let node = cluster.node(1);
    let labels = node
        .fleet
        .read(|s| s.machines.get(&target).map(|m| m.operator_labels.clone()));
    let labels = match labels {
        Some(labels) if labels.len() == 20 => labels,
        _ => wait_until(Duration::from_secs(5), "node 1 to replay its log", || {
            node.fleet.read(|s| {
                s.machines
                    .get(&target)
                    .map(|m| m.operator_labels.clone())
                    .filter(|l| l.len() == 20)
            })
        })
        .await
        .unwrap(),
    };
    assert_eq!(labels.get("k19"), Some("v19"));
    assert_eq!(node.fleet.read(|s| s.machines.len()), 3);

    // The others come back and the fleet carries on.
    cluster.restart(0).await.unwrap();
    cluster.restart(2).await.unwrap();
    cluster
        .wait_all_online(3, Duration::from_secs(20))
        .await
        .unwrap();
    let (status, body) = put_labels(&cluster.api(2), target, &["after=restart"]).await;
    assert_eq!(status, 200, "{body}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_follower_goes_offline_stale_dead_and_comes_back_online() {
    init_logs();
    let mut cluster = Cluster::start(3).await.unwrap();
    let leader = cluster.wait_leader(Duration::from_secs(5)).await.unwrap();
    let lost = (0..3).find(|i| *i != leader).unwrap();
    let lost_id = cluster.node(lost).id;
    cluster.stop(lost).await;

    let observers = cluster.running();
    for status in [
        MachineStatus::Offline,
        MachineStatus::Stale,
        MachineStatus::Dead,
    ] {
        for i in &observers {
            wait_until(
                Duration::from_secs(10),
                &format!("{status} on node {i}"),
                || (cluster.status_seen(*i, lost_id) == Some(status)).then_some(()),
            )
            .await
            .unwrap();
        }
    }
    // The API reports the same.
    let list = machines(&cluster.api(observers[0])).await;
    assert_eq!(
        list.iter().find(|m| m.id == lost_id).unwrap().status,
        MachineStatus::Dead
    );
    // A DEAD machine leaves the Raft group.
    wait_until(Duration::from_secs(5), "dead machine out of raft", || {
        (!members(&cluster.node(leader).raft).contains_key(&lost_id)).then_some(())
    })
    .await
    .unwrap();

    cluster.restart(lost).await.unwrap();
    cluster
        .wait_all_online(3, Duration::from_secs(20))
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        "returning machine back in raft",
        || {
            members(&cluster.node(leader).raft)
                .contains_key(&lost_id)
                .then_some(())
        },
    )
    .await
    .unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_voter_is_replaced_by_a_learner() {
    init_logs();
    let cluster = Cluster::start(4).await.unwrap();
    let mut cluster = cluster;
    let leader = cluster.wait_leader(Duration::from_secs(5)).await.unwrap();
    let m = members(&cluster.node(leader).raft);
    assert_eq!(m.len(), 4, "3 voters and 1 learner: {m:?}");
    let learner = *m.iter().find(|(_, (_, voter))| !voter).unwrap().0;
    let voter = (0..4)
        .find(|i| *i != leader && m[&cluster.node(*i).id].1)
        .unwrap();
    let voter_id = cluster.node(voter).id;
    cluster.stop(voter).await;

    wait_until(
        Duration::from_secs(15),
        "the learner promoted in place of the lost voter",
        || {
            let m = members(&cluster.node(leader).raft);
            let voting = m.get(&learner).is_some_and(|(_, v)| *v);
            let demoted = m.get(&voter_id).is_none_or(|(_, v)| !*v);
            (voting && demoted).then_some(())
        },
    )
    .await
    .unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_machine_catches_up_from_a_snapshot_after_logs_are_purged() {
    init_logs();
    let mut cluster = Cluster::start(3).await.unwrap();
    let leader = cluster.wait_leader(Duration::from_secs(5)).await.unwrap();
    let node = cluster.node(leader).clone();
    let target = node.id;
    // One write at a time, so each is its own log entry: three snapshot intervals (200
    // with test timings) and more, of which at most one interval is kept after a snapshot.
    for n in 0..600u32 {
        let set =
            shoal_protocol::Labels::from_pairs([format!("w{}=n{n}", n % 32).as_str()]).unwrap();
        let cmd = shoal_protocol::Command::LabelMachine {
            id: target,
            set,
            remove: vec![],
        };
        node.write(cmd).await.unwrap();
    }
    wait_until(
        Duration::from_secs(10),
        "a snapshot and purged logs on the leader",
        || {
            let metrics = node.raft.metrics().borrow().clone();
            (metrics.snapshot.is_some() && metrics.purged.is_some()).then_some(())
        },
    )
    .await
    .unwrap();

    let newcomer = cluster.add_node(vec!["late=true".into()]).await.unwrap();
    cluster
        .wait_all_online(4, Duration::from_secs(20))
        .await
        .unwrap();
    let late = cluster.node(newcomer);
    wait_until(
        Duration::from_secs(10),
        "the newcomer to hold every write",
        || {
            late.fleet.read(|s| {
                (s.machines.get(&target)?.operator_labels.get("w23") == Some("n599")).then_some(())
            })
        },
    )
    .await
    .unwrap();
    assert!(
        late.raft.metrics().borrow().snapshot.is_some(),
        "the newcomer installed no snapshot"
    );
    cluster.shutdown().await;
}
