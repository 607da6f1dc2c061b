//! `GET /v1/fleet/summary`: the whole fleet at a glance, computed by [`summarize`] from
//! the machines as `GET /v1/machines` shows them and the jobs counted by state.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use shoal_protocol::api::{FleetHealth, FleetSummary, MachineView};
use shoal_protocol::costs::{Usage, day_of};
use shoal_protocol::operate::KillSwitchView;
use shoal_protocol::params::ReadParams;
use shoal_protocol::{JobState, MachineId, MachineStatus};

use super::machine_query::memory_use;
use super::machines::views;
use super::{ApiQuery, ApiResult, barrier_if};
use crate::keys::Caller;
use crate::node::{Node, now_ms};

/// `GET /v1/fleet/summary` (`?consistent=true` for a linearizable read).
#[utoipa::path(get, path = "/v1/fleet/summary", tag = "fleet", params(ReadParams),
    responses((status = OK, body = FleetSummary, description = "Counts, capacity, use, jobs by state, health and the kill switch")))]
pub async fn summary(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<ReadParams>,
) -> ApiResult<FleetSummary> {
    barrier_if(&node, &params).await?;
    let machines = views(&node);
    let now = now_ms();
    let (jobs, kill_switch, spend_today, budget) = node.fleet.read(|state| {
        let jobs = count_jobs(state.jobs.values().map(|job| job.state));
        let used = shoal_raft::costs::usage(state, &caller.org, day_of(now), now);
        let budget = super::costs::budget_view(state, &caller.org, now);
        let kill_switch = state.kill_switch.as_ref().map(KillSwitchView::from);
        (jobs, kill_switch, Usage::new(&used), budget)
    });
    Ok(Json(FleetSummary {
        kill_switch,
        spend_today,
        budget,
        ..summarize(node.id, node.leader(), &machines, jobs)
    }))
}

/// Jobs by state, every state present.
pub fn count_jobs(states: impl IntoIterator<Item = JobState>) -> BTreeMap<JobState, u64> {
    let mut counts: BTreeMap<JobState, u64> = JobState::ALL.into_iter().map(|s| (s, 0)).collect();
    for state in states {
        *counts.entry(state).or_default() += 1;
    }
    counts
}

/// Whether a machine with this status counts as down: OFFLINE, STALE or DEAD.
fn is_down(status: MachineStatus) -> bool {
    matches!(
        status,
        MachineStatus::Offline | MachineStatus::Stale | MachineStatus::Dead
    )
}

/// The fleet's health from how many machines there are, how many are down, and
/// whether the answering node knows a leader.
///
/// Without a leader, committed statuses cannot change, so the counts may show machines
/// as up that are gone (a fleet that lost its quorum looks healthy by counts alone).
pub fn health(machines: u32, down: u32, has_leader: bool) -> FleetHealth {
    if !has_leader || down * 2 > machines {
        FleetHealth::Critical
    } else if down > 0 {
        FleetHealth::Degraded
    } else {
        FleetHealth::Healthy
    }
}

/// The summary of `machines` (as the API shows them: committed status, live resources)
/// and of the job counts, as seen by node `machine_id` that knows `leader`.
pub fn summarize(
    machine_id: MachineId,
    leader: Option<MachineId>,
    machines: &[MachineView],
    jobs: BTreeMap<JobState, u64>,
) -> FleetSummary {
    let mut by_status: BTreeMap<MachineStatus, u32> =
        MachineStatus::ALL.into_iter().map(|s| (s, 0)).collect();
    let (mut cpu_cores, mut memory_total_bytes, mut memory_used_bytes) = (0u64, 0u64, 0u64);
    let (mut disk_total_bytes, mut disk_free_bytes) = (0u64, 0u64);
    let (mut cpu_sum, mut memory_sum, mut memory_n) = (0f64, 0f64, 0u32);
    let (mut reachable, mut unreachable) = (0u32, 0u32);
    for m in machines {
        *by_status.entry(m.status).or_default() += 1;
        let r = &m.resources;
        cpu_cores += u64::from(r.cpu_cores);
        memory_total_bytes += r.memory_total_bytes;
        memory_used_bytes += r.memory_used_bytes;
        disk_total_bytes += r.disk_total_bytes;
        disk_free_bytes += r.disk_free_bytes;
        if m.status.is_reachable() {
            reachable += 1;
            cpu_sum += f64::from(r.cpu_usage);
            // A machine that reports no memory says nothing about memory use.
            if r.memory_total_bytes > 0 {
                memory_sum += f64::from(memory_use(m));
                memory_n += 1;
            }
        } else if is_down(m.status) {
            unreachable += 1;
        }
    }
    let mean = |sum: f64, n: u32| (n > 0).then(|| (sum / f64::from(n)) as f32);
    let total = machines.len() as u32;
    FleetSummary {
        machine_id,
        leader,
        health: health(total, unreachable, leader.is_some()),
        machines: total,
        by_status,
        reachable,
        unreachable,
        cpu_cores,
        memory_total_bytes,
        memory_used_bytes,
        disk_total_bytes,
        disk_free_bytes,
        avg_cpu_usage: mean(cpu_sum, reachable),
        avg_memory_usage: mean(memory_sum, memory_n),
        jobs,
        kill_switch: None,
        spend_today: Default::default(),
        budget: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::machine_query::tests::machine;
    use MachineStatus::*;

    const ME: MachineId = MachineId(1);

    fn summary(statuses: &[MachineStatus]) -> FleetSummary {
        let machines: Vec<MachineView> = statuses
            .iter()
            .enumerate()
            .map(|(i, s)| machine(i as u64 + 1, &format!("m{i}"), *s, &[], 0.5, 0.5))
            .collect();
        summarize(ME, Some(ME), &machines, count_jobs([]))
    }

    #[test]
    fn health_follows_how_many_are_down() {
        assert_eq!(health(3, 0, true), FleetHealth::Healthy);
        assert_eq!(health(3, 1, true), FleetHealth::Degraded);
        assert_eq!(
            health(4, 2, true),
            FleetHealth::Degraded,
            "half is no majority"
        );
        assert_eq!(health(3, 2, true), FleetHealth::Critical);
        assert_eq!(health(1, 1, true), FleetHealth::Critical);
        assert_eq!(health(3, 0, false), FleetHealth::Critical, "no leader");
        assert_eq!(health(0, 0, true), FleetHealth::Healthy);

        assert_eq!(
            summary(&[Online, Busy, Online]).health,
            FleetHealth::Healthy
        );
        // Draining or just registered machines are not down.
        assert_eq!(
            summary(&[Online, Draining, Registering]).health,
            FleetHealth::Healthy
        );
        assert_eq!(
            summary(&[Online, Offline, Busy]).health,
            FleetHealth::Degraded
        );
        assert_eq!(
            summary(&[Online, Stale, Dead, Busy]).health,
            FleetHealth::Degraded
        );
        assert_eq!(
            summary(&[Online, Stale, Dead]).health,
            FleetHealth::Critical
        );
    }

    #[test]
    fn counts_every_status_and_job_state_with_zeros() {
        let s = summary(&[Online, Online, Stale, Registering, Draining]);
        assert_eq!(s.machines, 5);
        assert_eq!(s.by_status.len(), MachineStatus::ALL.len());
        assert_eq!(s.by_status[&Online], 2);
        assert_eq!(s.by_status[&Stale], 1);
        assert_eq!(s.by_status[&Dead], 0);
        assert_eq!((s.reachable, s.unreachable), (3, 1));

        let jobs = count_jobs([JobState::Running, JobState::Queued, JobState::Running]);
        assert_eq!(jobs.len(), JobState::ALL.len());
        assert_eq!(jobs[&JobState::Running], 2);
        assert_eq!(jobs[&JobState::Queued], 1);
        assert_eq!(jobs[&JobState::Cancelled], 0);
    }

    #[test]
    fn sums_capacity_and_averages_use_over_reachable_machines() {
        let machines = vec![
            machine(1, "a", Online, &[], 0.2, 0.25),
            machine(2, "b", Busy, &[], 0.8, 0.75),
            // Not reachable: its last figures count in capacity, not in the averages.
            machine(3, "c", Offline, &[], 1.0, 1.0),
        ];
        let s = summarize(ME, None, &machines, count_jobs([]));
        assert_eq!(s.cpu_cores, 12);
        assert_eq!(s.memory_total_bytes, 3 * (16 << 30));
        assert_eq!(s.memory_used_bytes, (16u64 << 30) * 2);
        assert_eq!(s.disk_total_bytes, 300 << 30);
        assert_eq!(s.disk_free_bytes, 120 << 30);
        assert!((s.avg_cpu_usage.unwrap() - 0.5).abs() < 1e-6, "{s:?}");
        assert!((s.avg_memory_usage.unwrap() - 0.5).abs() < 1e-6, "{s:?}");
        assert_eq!(s.leader, None);
        assert_eq!(s.health, FleetHealth::Critical);

        let none = summary(&[Offline, Dead]);
        assert_eq!((none.avg_cpu_usage, none.avg_memory_usage), (None, None));
        let empty = summary(&[]);
        assert_eq!((empty.machines, empty.cpu_cores), (0, 0));
        assert_eq!(empty.avg_cpu_usage, None);
    }
}
