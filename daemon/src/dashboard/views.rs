//! What the templates show, made from the API's own types: a machine's card, the summary
//! bar, and the small formatting the page needs (sizes, percents, times).

use shoal_protocol::api::{FleetHealth, FleetSummary, MachineView};
use shoal_protocol::{MachineId, MachineStatus};

/// Bytes as a short size: `512 MiB`, `15.6 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A fraction (0.0 to 1.0) as a whole percent, clamped.
pub fn percent(fraction: f32) -> u32 {
    (fraction.clamp(0.0, 1.0) * 100.0).round() as u32
}

/// The status as the page's CSS class and filter value: `online`, `draining`, ...
pub fn status_class(status: MachineStatus) -> String {
    status.as_str().to_ascii_lowercase()
}

/// One machine's card in the grid (and, as JSON, its figures on the live socket).
#[derive(Clone, Default, PartialEq, serde::Serialize)]
pub struct Card {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub status: String,
    pub status_label: String,
    pub os: String,
    pub provider: String,
    pub cpu: u32,
    pub memory: u32,
    pub disk: u32,
    pub cores: u32,
    pub memory_total: String,
    pub disk_total: String,
    pub load: String,
    pub running: u32,
    pub max_running: u32,
    pub labels: Vec<String>,
    pub last_heartbeat_ms: u64,
    pub role: String,
}

impl Card {
    pub fn of(machine: &MachineView) -> Card {
        let r = &machine.resources;
        let memory = if r.memory_total_bytes > 0 {
            r.memory_used_bytes as f32 / r.memory_total_bytes as f32
        } else {
            0.0
        };
        let disk = if r.disk_total_bytes > 0 {
            r.disk_total_bytes.saturating_sub(r.disk_free_bytes) as f32 / r.disk_total_bytes as f32
        } else {
            0.0
        };
        Card {
            id: machine.id.to_string(),
            name: machine.name.clone(),
            hostname: machine.hostname.clone(),
            status: status_class(machine.status),
            status_label: machine.status.as_str().to_string(),
            os: format!("{} {}", machine.os, machine.arch),
            provider: machine
                .labels
                .get("provider")
                .unwrap_or("own hardware")
                .to_string(),
            cpu: percent(r.cpu_usage),
            memory: percent(memory),
            disk: percent(disk),
            cores: r.cpu_cores,
            memory_total: bytes(r.memory_total_bytes),
            disk_total: bytes(r.disk_total_bytes),
            load: format!("{:.2}", r.load),
            running: machine.running,
            max_running: machine.max_running,
            labels: machine
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            last_heartbeat_ms: machine.last_heartbeat_ms,
            role: machine.raft_role.clone(),
        }
    }

    /// Whether free text matches the card: any of its name, hostname, id, OS, provider or
    /// labels contains it (any case).
    pub fn matches_text(&self, text: &str) -> bool {
        let text = text.to_lowercase();
        [
            &self.name,
            &self.hostname,
            &self.id,
            &self.os,
            &self.provider,
        ]
        .into_iter()
        .chain(&self.labels)
        .any(|field| field.to_lowercase().contains(&text))
    }
}

/// One status and how many machines have it, for the summary bar.
#[derive(PartialEq, serde::Serialize)]
pub struct Count {
    pub class: String,
    pub label: String,
    pub count: u32,
}

/// The summary bar (and, as JSON, its update on the live socket).
#[derive(PartialEq, serde::Serialize)]
pub struct Summary {
    pub machines: u32,
    pub counts: Vec<Count>,
    pub cores: u64,
    pub memory_total: String,
    pub disk_total: String,
    pub avg_cpu: String,
    pub avg_memory: String,
    pub health: String,
    pub health_reason: String,
    pub leader: String,
    pub kill_switch: Option<String>,
    pub spend: String,
}

/// The statuses the summary counts, in the order.
pub const COUNTED: [MachineStatus; 6] = [
    MachineStatus::Online,
    MachineStatus::Busy,
    MachineStatus::Draining,
    MachineStatus::Offline,
    MachineStatus::Stale,
    MachineStatus::Dead,
];

impl Summary {
    /// The bar for `summary`; `name_of` names the leader.
    pub fn of(summary: &FleetSummary, name_of: impl Fn(MachineId) -> String) -> Summary {
        let counts = COUNTED
            .into_iter()
            .map(|status| Count {
                class: status_class(status),
                label: status.as_str().to_string(),
                count: summary.by_status.get(&status).copied().unwrap_or(0),
            })
            .collect();
        let avg =
            |value: Option<f32>| value.map_or("n/a".to_string(), |v| format!("{}%", percent(v)));
        let spend = match &summary.budget {
            Some(budget) => match budget.daily_usd {
                Some(limit) => format!("${:.2} of ${limit:.2} today", summary.spend_today.usd),
                None => format!("${:.2} today (no currency budget)", summary.spend_today.usd),
            },
            None => format!("${:.2} today (no budget)", summary.spend_today.usd),
        };
        Summary {
            machines: summary.machines,
            counts,
            cores: summary.cpu_cores,
            memory_total: bytes(summary.memory_total_bytes),
            disk_total: bytes(summary.disk_total_bytes),
            avg_cpu: avg(summary.avg_cpu_usage),
            avg_memory: avg(summary.avg_memory_usage),
            health: summary.health.as_str().to_string(),
            health_reason: health_reason(summary),
            leader: summary.leader.map_or("none known".to_string(), name_of),
            kill_switch: summary
                .kill_switch
                .as_ref()
                .map(|k| format!("ON: {} (by {})", k.reason, k.actor)),
            spend,
        }
    }
}

/// Why the fleet's health is what it is, in words.
pub fn health_reason(summary: &FleetSummary) -> String {
    match summary.health {
        FleetHealth::Healthy => "every machine is up and a leader is known".to_string(),
        _ if summary.leader.is_none() => {
            "no leader known: the fleet cannot commit changes".to_string()
        }
        _ => format!(
            "{} of {} machines are offline, stale or dead",
            summary.unreachable, summary.machines
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_percents_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(16 * 1024 * 1024 * 1024), "16.0 GiB");
        assert_eq!(bytes(300 * 1024 * 1024), "300 MiB");
        assert_eq!(percent(0.426), 43);
        assert_eq!(percent(1.7), 100);
        assert_eq!(percent(f32::NAN.max(0.0)), 0);
    }

    #[test]
    fn a_card_shows_its_machines_figures_and_matches_free_text() {
        let mut machine: MachineView = serde_json::from_value(serde_json::json!({
            "id": "00000000000000ab", "name": "attic-nuc", "hostname": "nuc",
            "os": "linux", "arch": "x86_64", "version": "0.1.0", "status": "DRAINING",
            "status_since_ms": 0, "labels": {"provider": "vps", "tier": "web"},
            "operator_labels": {}, "resources": {"cpu_cores": 4, "cpu_usage": 0.5,
            "load": 0.25, "memory_total_bytes": 1000, "memory_used_bytes": 250,
            "disk_total_bytes": 100, "disk_free_bytes": 10},
            "running": 1, "max_running": 8, "draining": true, "last_heartbeat_ms": 5,
            "registered_at_ms": 0, "started_at_ms": 0,
            "addr": {"peer_id": "", "p2p_addr": "", "api_addr": "", "gossip_addr": ""},
            "raft_role": "voter"
        }))
        .expect("a machine view");
        let card = Card::of(&machine);
        assert_eq!((card.cpu, card.memory, card.disk), (50, 25, 90));
        assert_eq!(
            (card.status.as_str(), card.provider.as_str()),
            ("draining", "vps")
        );
        assert_eq!(card.labels, ["provider=vps", "tier=web"]);
        for text in ["ATTIC", "nuc", "tier=web", "vps", "x86", "ab"] {
            assert!(card.matches_text(text), "{text}");
        }
        assert!(!card.matches_text("db"));
        machine.resources.memory_total_bytes = 0;
        assert_eq!(
            Card::of(&machine).memory,
            0,
            "no memory reported: 0, not NaN"
        );
    }
}
