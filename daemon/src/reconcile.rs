//! Fleet formation and the leader's reconcile loop.
//!
//! Every tick the leader (and only the leader) compares the verified gossip view with
//! the log and writes the difference: new machines are recorded and added as Raft
//! learners, changed machine facts are refreshed, status transitions are committed,
//! and the autopilot's membership change (if any) is proposed. First of all, the fleet's
//! protocol level is raised once every member speaks a higher one (`levels.rs`), and a
//! machine below the fleet's level is not taken in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use openraft::ChangeMembers;
use openraft::ServerState;
use shoal_gossip::{Observation, PeerView, StatusConfig, derive_status};
use shoal_protocol::{
    Command, FleetState, MachineId, MachineInfo, MachineRecord, MachineStatus, Resources, Response,
};
use shoal_raft::jobs;
use tokio::sync::watch;

use crate::admission::{Admission, admission, name_holder, name_taken};
use crate::autopilot::{self, Change, Health, Member};
use crate::levels;
use crate::node::{Node, members, now_ms};

/// How long the loop waits for a membership change to commit; past it the next pass
/// looks again, so a change openraft never answers cannot stop the loop.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(10);

/// How far behind the leader's log a learner may be and still be promoted.
const CAUGHT_UP_ENTRIES: u64 = 1_000;

/// Forms the fleet if this node should: alone with `bootstrap_expect = 1`, no `join` and no mDNS,
/// or, with `bootstrap_expect = N`, once N machines have met (the lowest id proposes).
pub async fn bootstrap(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    let expect = node.config.bootstrap_expect;
    if expect == 1 && (!node.config.join.is_empty() || node.config.mdns) {
        tracing::info!("waiting to be added to the fleet by its leader");
        return;
    }
    let mut peers = node.peers.clone();
    loop {
        match node.raft.is_initialized().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(err) => {
                tracing::error!(%err, "raft stopped before bootstrap");
                return;
            }
        }
        let met: BTreeMap<MachineId, _> = peers
            .borrow_and_update()
            .iter()
            .filter(|peer| peer.live)
            .map(|peer| (peer.info.id, peer.info.addr.clone()))
            .collect();
        if met.len() >= expect && met.keys().next() == Some(&node.id) {
            tracing::info!(members = met.len(), "bootstrapping the fleet");
            match tokio::time::timeout(MEMBERSHIP_TIMEOUT, node.raft.initialize(met)).await {
                Ok(Ok(())) => return crate::keys::record_bootstrap_key(&node).await,
                Ok(Err(err)) => tracing::warn!(%err, "bootstrap failed, retrying"),
                Err(_) => tracing::warn!("bootstrap not answered in time, retrying"),
            }
        } else if expect > 1 {
            tracing::debug!(met = met.len(), expect, "waiting for machines to meet");
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = peers.changed() => {}
            _ = tokio::time::sleep(node.config.timings.heartbeat_interval) => {}
        }
    }
}

/// Runs the leader's reconcile pass every tick while this node leads.
pub async fn leader_loop(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(node.config.timings.reconcile_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading_since: Option<u64> = None;
    let mut warned_below_level = BTreeSet::new();
    let mut warned_name = BTreeSet::new();
    let mut pruned_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tick.tick() => {}
        }
        let leads = node.raft.metrics().borrow().state == ServerState::Leader;
        if !leads {
            leading_since = None;
            warned_below_level.clear();
            continue;
        }
        let since = *leading_since.get_or_insert_with(now_ms);
        if let Err(err) = reconcile(&node, since, &mut warned_below_level, &mut warned_name).await {
            tracing::debug!(error = %err.message, "reconcile pass stopped early");
        }
        if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            pruned_at = Some(tokio::time::Instant::now());
            prune_jobs(&node).await;
        }
    }
}

/// How often the leader looks for finished jobs past their retention.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Forgets finished jobs older than the retention (the fleet's setting, else this node's
/// config), if there are any.
async fn prune_jobs(node: &Node) {
    let retention = node
        .fleet
        .read(|state| state.settings.job_retention(node.config.job_retention));
    let before = now_ms().saturating_sub(retention.as_millis() as u64);
    if node
        .fleet
        .read(|state| jobs::prunable(state, before).is_empty())
    {
        return;
    }
    match node
        .write(Command::PruneJobs {
            finished_before_ms: before,
        })
        .await
    {
        Ok(outcome) => {
            if let Response::Jobs(removed) = outcome.response {
                tracing::info!(
                    jobs = removed.len(),
                    "forgot finished jobs past their retention"
                );
            }
        }
        Err(err) => tracing::debug!(error = %err.message, "pruning jobs failed"),
    }
}

/// What the log keeps of a machine's info: its facts, not its moment-to-moment use (nor
/// more GPUs than a machine publishes, nor the images its engine holds now).
fn durable_facts(info: &MachineInfo) -> MachineInfo {
    MachineInfo {
        resources: Resources {
            cpu_usage: 0.0,
            load: 0.0,
            memory_used_bytes: 0,
            disk_free_bytes: 0,
            ..info.resources.clone()
        },
        running: 0,
        draining: false,
        gpus: info
            .gpus
            .iter()
            .take(shoal_protocol::gpus::MAX_GPUS)
            .map(shoal_protocol::Gpu::fact)
            .collect(),
        images: Vec::new(),
        ..info.clone()
    }
}

/// The leader's view of one machine's liveness, for status derivation.
fn observe(
    record: &MachineRecord,
    peer: Option<&PeerView>,
    now: u64,
    leading_since: u64,
) -> (Observation, u64) {
    let (mut observation, heartbeat) = match peer {
        Some(peer) => (peer.observation(), peer.last_heartbeat_ms),
        None => {
            // Never seen since this node started leading: count from whichever is later,
            // the last committed heartbeat or the start of this term.
            let from = record.last_heartbeat_ms.max(leading_since);
            (
                Observation::absent(Duration::from_millis(now.saturating_sub(from))),
                record.last_heartbeat_ms,
            )
        }
    };
    // An operator's drain is in the log; the machine's own flag comes by gossip.
    observation.draining |= record.drain.is_some();
    (observation, heartbeat)
}

/// Whether `peer` is new to the log and a running machine has its name: it is not recorded
/// (names are unique among running machines), and the leader says so once.
fn name_clash(state: &FleetState, peer: &PeerView, warned: &mut BTreeSet<MachineId>) -> bool {
    let id = peer.info.id;
    if state.machines.contains_key(&id) {
        return false;
    }
    let Some(holder) = name_holder(state, &peer.info.name, id) else {
        warned.remove(&id);
        return false;
    };
    if warned.insert(id) {
        let why = name_taken(&peer.info.name, holder);
        tracing::warn!(machine_id = %id, "not recording a machine: {why}");
    }
    true
}

async fn reconcile(
    node: &Node,
    leading_since: u64,
    warned_below_level: &mut BTreeSet<MachineId>,
    warned_name: &mut BTreeSet<MachineId>,
) -> Result<(), shoal_protocol::ApiError> {
    // 0. The fleet's protocol level, raised before anyone new is taken in.
    if let Err(err) = levels::raise_when_ready(node).await {
        tracing::debug!(error = %err.message, "raising the fleet level deferred");
    }
    // 0b. A gossip key rotation, once due (an admin asked, or a removed machine left Raft).
    if let Err(err) = crate::gossip_keys::rotation::rotate_when_due(node).await {
        tracing::debug!(error = %err.message, "gossip key rotation deferred");
    }
    let now = now_ms();
    let peers: HashMap<MachineId, PeerView> = node
        .peers
        .borrow()
        .iter()
        .map(|p| (p.info.id, p.clone()))
        .collect();
    let raft_members: BTreeSet<MachineId> = members(&node.raft).into_keys().collect();
    let (records, retired, admitted, fleet_level) = node.fleet.read(|state| {
        let admitted: BTreeSet<MachineId> = peers
            .values()
            .filter(|peer| admission(state, &raft_members, peer.info.id) == Admission::Member)
            .filter(|peer| !name_clash(state, peer, warned_name))
            .map(|peer| peer.info.id)
            .collect();
        let retired = state.retired.clone();
        (state.machines.clone(), retired, admitted, state.fleet_level)
    });
    let listed: Vec<PeerView> = peers.values().cloned().collect();
    levels::warn_below(&listed, &raft_members, fleet_level, warned_below_level);

    // 1. Record new machines and refresh changed facts: only machines the log admits (see
    // `admission`). One that speaks less than the fleet's level is not taken in: it could
    // not read the log it would replay.
    let welcome = |peer: &&PeerView| {
        peer.live
            && admitted.contains(&peer.info.id)
            && (raft_members.contains(&peer.info.id)
                || levels::admits(fleet_level, peer.info.protocol_level))
    };
    for peer in peers.values().filter(welcome) {
        let facts = durable_facts(&peer.info);
        if records.get(&peer.info.id).map(|r| &r.info) != Some(&facts) {
            node.write(Command::UpsertMachine {
                info: Box::new(facts),
                at_ms: now,
            })
            .await?;
        }
    }

    // 2. Commit status transitions.
    let cfg = StatusConfig {
        offline_after: node.config.timings.offline_after,
        stale_after: node.config.timings.stale_after,
        dead_after: node.config.timings.dead_after,
        load_threshold: node.config.load_threshold,
    };
    let settling = Duration::from_millis(now.saturating_sub(leading_since)) < cfg.offline_after;
    for (id, record) in &records {
        if settling && !peers.get(id).is_some_and(|peer| peer.live) {
            // A new leader's gossip view is young: give machines one offline_after to show up
            // before calling them down, so a fleet restart does not flap.
            continue;
        }
        let (obs, last_heartbeat_ms) = observe(record, peers.get(id), now, leading_since);
        let status = derive_status(record.status, &obs, &cfg);
        if status != record.status {
            tracing::info!(machine_id = %id, name = %record.info.name, from = %record.status, to = %status, "machine status changed");
            node.write(Command::SetStatus {
                id: *id,
                status,
                last_heartbeat_ms,
                at_ms: now,
            })
            .await?;
        }
    }

    // 3. Raft membership: add live machines as learners, then let the autopilot plan.
    let (voters, learners, last_log, matched) = {
        let metrics = node.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let matched: HashMap<MachineId, u64> = metrics
            .replication
            .iter()
            .flatten()
            .map(|(id, log)| (*id, log.map(|l| l.index).unwrap_or(0)))
            .collect();
        (
            membership.voter_ids().collect::<BTreeSet<_>>(),
            membership.learner_ids().collect::<BTreeSet<_>>(),
            metrics.last_log_index.unwrap_or(0),
            matched,
        )
    };
    for peer in peers.values().filter(welcome) {
        let id = peer.info.id;
        let known_dead = records
            .get(&id)
            .is_some_and(|r| r.status == MachineStatus::Dead);
        if !voters.contains(&id) && !learners.contains(&id) && !known_dead {
            tracing::info!(machine_id = %id, name = %peer.info.name, "adding machine as a raft learner");
            let adding = node.raft.add_learner(id, peer.info.addr.clone(), false);
            match tokio::time::timeout(MEMBERSHIP_TIMEOUT, adding).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => tracing::debug!(%err, "add learner deferred"),
                Err(_) => tracing::debug!("add learner not committed in time; deferred"),
            }
            return Ok(());
        }
    }
    let records = node.fleet.read(|state| state.machines.clone());
    let members: Vec<Member> = voters
        .iter()
        .map(|id| (*id, true))
        .chain(learners.iter().map(|id| (*id, false)))
        .map(|(id, voter)| {
            let health = match records.get(&id).map(|r| (r.status, r.status_since_ms)) {
                _ if id == node.id => Health::Healthy { caught_up: true },
                _ if retired.contains(&id) => Health::Dead,
                Some((MachineStatus::Dead, _)) => Health::Dead,
                Some((status, _)) if status.is_reachable() => Health::Healthy {
                    caught_up: matched
                        .get(&id)
                        .is_some_and(|m| last_log.saturating_sub(*m) <= CAUGHT_UP_ENTRIES),
                },
                Some((_, since)) => Health::Unhealthy { since_ms: since },
                None => Health::Healthy { caught_up: false },
            };
            Member { id, voter, health }
        })
        .collect();
    let grace = node.config.timings.voter_grace.as_millis() as u64;
    let change = autopilot::plan(node.id, &members, now, grace);
    let result = match change {
        None => return Ok(()),
        Some(Change::Remove(ids)) => {
            tracing::info!(machines = ?ids, "removing dead machines from raft");
            // A voter leaves the voter set (not kept as a learner); learners go at once.
            let dead_voters: BTreeSet<MachineId> = ids.intersection(&voters).copied().collect();
            let change = if dead_voters.is_empty() {
                ChangeMembers::RemoveNodes(ids)
            } else {
                ChangeMembers::RemoveVoters(dead_voters)
            };
            let changing = node.raft.change_membership(change, false);
            tokio::time::timeout(MEMBERSHIP_TIMEOUT, changing).await
        }
        Some(Change::SetVoters(ids)) => {
            tracing::info!(voters = ?ids, "changing raft voters");
            let changing = node
                .raft
                .change_membership(ChangeMembers::ReplaceAllVoters(ids), true);
            tokio::time::timeout(MEMBERSHIP_TIMEOUT, changing).await
        }
    };
    match result {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => tracing::debug!(%err, "membership change deferred"),
        Err(_) => tracing::debug!("membership change not committed in time; deferred"),
    }
    Ok(())
}
