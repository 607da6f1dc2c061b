//! `shoal fleet summary`: health, counts, capacity and jobs of the whole fleet; `shoal
//! fleet rotate-key`: a new gossip key.

use std::fmt::Display;

use shoal_protocol::api::{FleetSummary, GossipKeyRotation};

use crate::client::{Client, ClientError};
use crate::output::{human_bytes, key_values, or_dash, percent, print, print_json};

/// `shoal fleet summary`.
pub async fn summary(client: &Client, json: bool) -> Result<(), ClientError> {
    let summary = client.fleet_summary().await?;
    if json {
        print_json(&summary);
    } else {
        print(&block(&summary));
    }
    Ok(())
}

/// `shoal fleet rotate-key`.
pub async fn rotate_key(client: &Client, json: bool) -> Result<(), ClientError> {
    let rotation = client.rotate_gossip_key().await?;
    if json {
        print_json(&rotation);
    } else {
        print(&rotation_line(&rotation));
    }
    Ok(())
}

/// What `fleet rotate-key` says.
pub fn rotation_line(rotation: &GossipKeyRotation) -> String {
    if rotation.committed {
        format!(
            "gossip key generation {} committed; every machine seals with it within moments\n",
            rotation.generation
        )
    } else {
        format!(
            "gossip key generation {} is due; the leader makes it once no removed machine is left in raft\n",
            rotation.generation
        )
    }
}

/// The `fleet summary` block.
pub fn block(s: &FleetSummary) -> String {
    let average = |ratio: Option<f32>| ratio.map_or_else(|| "-".to_string(), percent);
    key_values(&[
        ("health", s.health.to_string()),
        (
            "machines",
            format!(
                "{} ({} reachable, {} unreachable)",
                s.machines, s.reachable, s.unreachable
            ),
        ),
        (
            "by status",
            counts(s.by_status.iter().map(|(k, n)| (k, u64::from(*n)))),
        ),
        (
            "cpu",
            format!(
                "{} cores, {} average use",
                s.cpu_cores,
                average(s.avg_cpu_usage)
            ),
        ),
        (
            "memory",
            format!(
                "{} used of {}, {} average use",
                human_bytes(s.memory_used_bytes),
                human_bytes(s.memory_total_bytes),
                average(s.avg_memory_usage)
            ),
        ),
        (
            "disk",
            format!(
                "{} free of {}",
                human_bytes(s.disk_free_bytes),
                human_bytes(s.disk_total_bytes)
            ),
        ),
        ("jobs", counts(s.jobs.iter().map(|(k, n)| (k, *n)))),
        (
            "dispatch",
            match &s.kill_switch {
                Some(switch) => format!(
                    "STOPPED by the kill switch ({}: {})",
                    switch.actor, switch.reason
                ),
                None => "running".to_string(),
            },
        ),
        ("spend", spend(s)),
        ("leader", or_dash(s.leader)),
    ])
}

/// Today's spend and run time of the caller's org, against its budget if it has one.
fn spend(s: &FleetSummary) -> String {
    let used = &s.spend_today;
    let limit = |limit: Option<f64>, unit: &str| {
        limit.map_or_else(String::new, |l| format!(" of {unit}{l}"))
    };
    let (usd_limit, minutes_limit) = s
        .budget
        .as_ref()
        .map_or((None, None), |b| (b.daily_usd, b.daily_runner_minutes));
    format!(
        "${:.4}{} today, {:.1}{} runner minutes",
        used.usd,
        limit(usd_limit, "$"),
        used.runner_minutes,
        limit(minutes_limit, ""),
    )
}

/// The non-zero counts, `ONLINE 2, STALE 1`; `none` when all are zero.
fn counts<K: Display>(counts: impl IntoIterator<Item = (K, u64)>) -> String {
    let parts: Vec<String> = counts
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::api::FleetHealth;
    use shoal_protocol::costs::Usage;
    use shoal_protocol::{JobState, MachineId, MachineStatus};

    #[test]
    fn block_is_readable() {
        let mut by_status: std::collections::BTreeMap<MachineStatus, u32> =
            MachineStatus::ALL.into_iter().map(|s| (s, 0)).collect();
        by_status.insert(MachineStatus::Online, 2);
        by_status.insert(MachineStatus::Offline, 1);
        let summary = FleetSummary {
            machine_id: MachineId(1),
            leader: Some(MachineId(0xab)),
            health: FleetHealth::Degraded,
            machines: 3,
            by_status,
            reachable: 2,
            unreachable: 1,
            cpu_cores: 12,
            memory_total_bytes: 48 << 30,
            memory_used_bytes: 12 << 30,
            disk_total_bytes: 3 << 40,
            disk_free_bytes: 1 << 40,
            avg_cpu_usage: Some(0.25),
            avg_memory_usage: None,
            jobs: JobState::ALL.into_iter().map(|s| (s, 0)).collect(),
            kill_switch: None,
            spend_today: Usage {
                usd: 0.125,
                runner_minutes: 12.0,
            },
            budget: None,
        };
        let mut busy = summary.clone();
        busy.jobs.insert(JobState::Running, 4);
        busy.jobs.insert(JobState::TimedOut, 1);
        assert!(
            block(&busy).contains("\njobs:       running 4, timed_out 1\n"),
            "{}",
            block(&busy)
        );
        assert_eq!(
            block(&summary),
            "health:     degraded\n\
             machines:   3 (2 reachable, 1 unreachable)\n\
             by status:  ONLINE 2, OFFLINE 1\n\
             cpu:        12 cores, 25% average use\n\
             memory:     12.0G used of 48.0G, - average use\n\
             disk:       1.0T free of 3.0T\n\
             jobs:       none\n\
             dispatch:   running\n\
             spend:      $0.1250 today, 12.0 runner minutes\n\
             leader:     00000000000000ab\n"
        );
    }
}
