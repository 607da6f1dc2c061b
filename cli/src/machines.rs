//! `shoal machines ls | show | label`: listing, filtering and resolving machines.

use std::collections::HashMap;

use shoal_protocol::api::{LabelRequest, MachineSort, MachineView, PendingMachine};
use shoal_protocol::{ApiError, Labels, MachineId, MachineStatus, UnixMillis};

use crate::client::{Client, ClientError};
use crate::output::{
    Table, age, duration, human_bytes, key_values, now_ms, percent, print, print_json,
};

/// What `shoal machines ls` asks for; the node filters and sorts.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LsFilter {
    pub status: Option<MachineStatus>,
    pub labels: Vec<(String, String)>,
    pub os: Option<String>,
    pub provider: Option<String>,
    pub sort: Option<MachineSort>,
    pub desc: bool,
}

impl LsFilter {
    /// The `GET /v1/machines` query: one `label` parameter per label.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(status) = self.status {
            query.push(("status", status.as_str().to_ascii_lowercase()));
        }
        for (key, value) in &self.labels {
            query.push(("label", format!("{key}={value}")));
        }
        if let Some(os) = &self.os {
            query.push(("os", os.clone()));
        }
        if let Some(provider) = &self.provider {
            query.push(("provider", provider.clone()));
        }
        if let Some(sort) = self.sort {
            query.push(("sort", sort.as_str().to_string()));
        }
        if self.desc {
            query.push(("order", "desc".to_string()));
        }
        query
    }
}

/// `shoal machines ls`: the machines that match every filter, in the asked order.
pub async fn ls(client: &Client, filter: &LsFilter, json: bool) -> Result<(), ClientError> {
    let list = client.machines_where(&filter.query()).await?;
    if json {
        print_json(&list);
    } else {
        print(&table(&list.machines, now_ms()));
        if !list.pending.is_empty() {
            print(&pending_table(&list.pending, now_ms()));
        }
    }
    Ok(())
}

/// The machines waiting for approval, under the `machines ls` table.
fn pending_table(pending: &[PendingMachine], now: UnixMillis) -> String {
    let mut table = Table::new(&["ID", "NAME", "STATUS", "HOSTNAME", "VERSION", "LAST SEEN"]);
    for m in pending {
        table.row(vec![
            m.id.to_string(),
            m.name.clone(),
            "PENDING".to_string(),
            m.hostname.clone(),
            m.version.clone(),
            age(now, m.last_heartbeat_ms),
        ]);
    }
    format!(
        "\nwaiting for approval (shoal machines approve ID), or for a registration token:\n{}",
        table.render()
    )
}

/// `shoal machines approve`: admits a machine that came with the cluster secret alone.
pub async fn approve(client: &Client, machine: &str, json: bool) -> Result<(), ClientError> {
    let id = match machine.parse::<MachineId>() {
        Ok(id) if machine.len() == 16 => id,
        _ => {
            let pending = client.machines().await?.pending;
            let found: Vec<_> = pending
                .iter()
                .filter(|m| m.name == machine || m.id.to_string().starts_with(machine))
                .collect();
            match found.as_slice() {
                [one] => one.id,
                [] => {
                    return Err(
                        ApiError::not_found(format!("no pending machine {machine:?}")).into(),
                    );
                }
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "{machine:?} names several pending machines: give the full id"
                    ))
                    .into());
                }
            }
        }
    };
    let approved = client.approve_machine(id).await?;
    if json {
        print_json(&approved);
    } else {
        print(&format!(
            "approved machine {id}; the leader records it once it is seen"
        ));
    }
    Ok(())
}

/// `shoal machines show`.
/// `shoal machines rm`.
pub async fn remove(client: &Client, machine: &str, json: bool) -> Result<(), ClientError> {
    let id = resolve(client, machine).await?;
    client.remove_machine(id).await?;
    if json {
        print_json(&serde_json::json!({ "removed": id }));
    } else {
        print(&format!(
            "removed machine {id}; it needs a new registration token to come back"
        ));
    }
    Ok(())
}

pub async fn show(client: &Client, machine: &str, json: bool) -> Result<(), ClientError> {
    let view = match machine.parse::<MachineId>() {
        Ok(id) if machine.len() == 16 => client.machine(id).await?,
        _ => pick(&client.machines().await?.machines, machine)?.clone(),
    };
    if json {
        print_json(&view);
    } else {
        print(&details(&view, now_ms()));
    }
    Ok(())
}

/// `shoal machines label`.
pub async fn label(
    client: &Client,
    machine: &str,
    request: &LabelRequest,
    json: bool,
) -> Result<(), ClientError> {
    let id = resolve(client, machine).await?;
    let view = client.set_labels(id, request).await?;
    if json {
        print_json(&view);
    } else {
        print(&key_values(&[
            ("machine", format!("{} ({})", view.name, view.id)),
            ("labels", labels_or_dash(&view.labels)),
            ("operator labels", labels_or_dash(&view.operator_labels)),
        ]));
    }
    Ok(())
}

/// The id of the machine called `text` (full id, unique id prefix or name); a full id is
/// taken as it is, without a request.
pub async fn resolve(client: &Client, text: &str) -> Result<MachineId, ClientError> {
    match text.parse::<MachineId>() {
        Ok(id) if text.len() == 16 => Ok(id),
        _ => Ok(pick(&client.machines().await?.machines, text)?.id),
    }
}

/// Every machine's name by id, to show names where the API gives ids.
pub async fn names(client: &Client) -> Result<HashMap<MachineId, String>, ClientError> {
    let list = client.machines().await?;
    Ok(list.machines.into_iter().map(|m| (m.id, m.name)).collect())
}

/// Finds the one machine called `text` by name, full id or id prefix.
///
/// An exact name wins over an id prefix, so a machine named `cafe` stays reachable.
pub fn pick<'a>(machines: &'a [MachineView], text: &str) -> Result<&'a MachineView, ApiError> {
    let by_name: Vec<_> = machines.iter().filter(|m| m.name == text).collect();
    let lower = text.to_ascii_lowercase();
    let candidates = if by_name.is_empty() && !text.is_empty() {
        machines
            .iter()
            .filter(|m| m.id.to_string().starts_with(&lower))
            .collect()
    } else {
        by_name
    };
    match candidates.as_slice() {
        [one] => Ok(one),
        [] => Err(ApiError::not_found(format!(
            "no machine has the name, id or id prefix {text:?}"
        ))),
        many => {
            let ids: Vec<String> = many
                .iter()
                .map(|m| format!("{} ({})", m.id, m.name))
                .collect();
            Err(ApiError::bad_request(format!(
                "{text:?} matches {} machines: {}; give more of the id",
                many.len(),
                ids.join(", ")
            )))
        }
    }
}

/// The `machines ls` table.
pub fn table(machines: &[MachineView], now: UnixMillis) -> String {
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "STATUS",
        "CPU",
        "MEM",
        "DISK FREE",
        "LOAD",
        "LABELS",
        "LAST SEEN",
    ]);
    for m in machines {
        let r = &m.resources;
        let id = m.id.to_string();
        table.row(vec![
            id[..8].to_string(),
            m.name.clone(),
            m.status.to_string(),
            format!("{}c {}", r.cpu_cores, percent(r.cpu_usage)),
            format!(
                "{}/{}",
                human_bytes(r.memory_used_bytes),
                human_bytes(r.memory_total_bytes)
            ),
            human_bytes(r.disk_free_bytes),
            format!("{:.2}", r.load),
            labels_or_dash(&m.labels),
            age(now, m.last_heartbeat_ms),
        ]);
    }
    table.render()
}

/// The `machines show` block.
pub fn details(m: &MachineView, now: UnixMillis) -> String {
    let r = &m.resources;
    key_values(&[
        ("id", m.id.to_string()),
        ("name", m.name.clone()),
        ("hostname", m.hostname.clone()),
        (
            "status",
            format!(
                "{} for {}",
                m.status,
                duration(now.saturating_sub(m.status_since_ms))
            ),
        ),
        ("raft role", m.raft_role.clone()),
        ("version", m.version.clone()),
        ("os/arch", format!("{}/{}", m.os, m.arch)),
        ("api addr", m.addr.api_addr.clone()),
        ("p2p addr", m.addr.p2p_addr.clone()),
        ("peer id", m.addr.peer_id.clone()),
        ("labels", labels_or_dash(&m.labels)),
        ("operator labels", labels_or_dash(&m.operator_labels)),
        (
            "cpu",
            format!("{} cores, {} used", r.cpu_cores, percent(r.cpu_usage)),
        ),
        ("load", format!("{:.2} per core", r.load)),
        (
            "memory",
            format!(
                "{} used of {}",
                human_bytes(r.memory_used_bytes),
                human_bytes(r.memory_total_bytes)
            ),
        ),
        (
            "disk",
            format!(
                "{} free of {}",
                human_bytes(r.disk_free_bytes),
                human_bytes(r.disk_total_bytes)
            ),
        ),
        ("running", format!("{} of {}", m.running, m.max_running)),
        ("draining", m.draining.to_string()),
        ("last heartbeat", age(now, m.last_heartbeat_ms)),
        ("started", age(now, m.started_at_ms)),
        ("registered", age(now, m.registered_at_ms)),
        ("checks", checks(&m.diagnosis)),
        ("gpus", gpus(&m.gpus)),
    ])
}

/// `0 NVIDIA A100 (3.0 GiB of 40.0 GiB, 12%), 1 ...`: each GPU with its use now.
fn gpus(gpus: &[shoal_protocol::Gpu]) -> String {
    if gpus.is_empty() {
        return "-".to_string();
    }
    gpus.iter()
        .map(|g| {
            format!(
                "{} {} ({} of {}, {}%)",
                g.index,
                g.model,
                human_bytes(g.memory_used_mb.saturating_mul(1 << 20)),
                human_bytes(g.memory_mb.saturating_mul(1 << 20)),
                g.utilization_percent
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `docker ok, disk FAIL (…)`: the failing checks say why.
fn checks(diagnosis: &[shoal_protocol::Check]) -> String {
    if diagnosis.is_empty() {
        return "-".to_string();
    }
    diagnosis
        .iter()
        .map(|c| match c.ok {
            true => format!("{} ok", c.name),
            false => format!("{} FAIL ({})", c.name, c.detail),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn labels_or_dash(labels: &Labels) -> String {
    if labels.is_empty() {
        "-".to_string()
    } else {
        labels.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::{MachineInfo, MachineRecord, Resources};

    const NOW: UnixMillis = 1_700_000_000_000;

    fn machine(id: u64, name: &str, status: MachineStatus, labels: &[&str]) -> MachineView {
        let record = MachineRecord {
            info: MachineInfo {
                id: MachineId(id),
                name: name.into(),
                labels: Labels::from_pairs(labels.iter().copied()).unwrap(),
                resources: Resources {
                    cpu_cores: 8,
                    cpu_usage: 0.25,
                    load: 0.5,
                    memory_total_bytes: 16_750_372_454,
                    memory_used_bytes: 3_328_599_654,
                    disk_total_bytes: 500 << 30,
                    disk_free_bytes: 120 << 30,
                },
                ..MachineInfo::default()
            },
            operator_labels: Labels::new(),
            status,
            status_since_ms: NOW - 60_000,
            last_heartbeat_ms: NOW - 2_000,
            registered_at_ms: NOW - 86_400_000,
            drain: None,
        };
        MachineView::from_record(&record, "voter")
    }

    fn fleet() -> Vec<MachineView> {
        vec![
            machine(
                0xabcd_0000_0000_0001,
                "attic",
                MachineStatus::Online,
                &["gpu", "zone=a"],
            ),
            machine(
                0xabcd_0000_0000_0002,
                "cafe",
                MachineStatus::Stale,
                &["zone=b"],
            ),
            machine(0xcafe_0000_0000_0003, "pi", MachineStatus::Online, &[]),
        ]
    }

    #[test]
    fn filters_become_the_list_query() {
        assert!(LsFilter::default().query().is_empty());
        let filter = LsFilter {
            status: Some(MachineStatus::Online),
            labels: vec![
                Labels::parse_pair("zone=a").unwrap(),
                Labels::parse_pair("gpu").unwrap(),
            ],
            os: Some("linux".into()),
            provider: Some("vps".into()),
            sort: Some(MachineSort::LastHeartbeat),
            desc: true,
        };
        let expected = [
            ("status", "online"),
            ("label", "zone=a"),
            ("label", "gpu=true"),
            ("os", "linux"),
            ("provider", "vps"),
            ("sort", "last_heartbeat"),
            ("order", "desc"),
        ]
        .map(|(k, v)| (k, v.to_string()));
        assert_eq!(filter.query(), expected);
    }

    #[test]
    fn picks_by_name_id_or_unique_prefix() {
        let fleet = fleet();
        assert_eq!(pick(&fleet, "pi").unwrap().name, "pi");
        assert_eq!(pick(&fleet, "abcd000000000002").unwrap().name, "cafe");
        assert_eq!(
            pick(&fleet, "ABCD0000000000").unwrap_err().code,
            shoal_protocol::ErrorCode::BadRequest
        );
        // An exact name wins over the id prefix "cafe".
        assert_eq!(pick(&fleet, "cafe").unwrap().name, "cafe");
        assert_eq!(pick(&fleet, "cafe0").unwrap().name, "pi");
        let err = pick(&fleet, "nope").unwrap_err();
        assert_eq!(err.code, shoal_protocol::ErrorCode::NotFound);
        assert!(pick(&fleet, "").is_err());
    }

    #[test]
    fn table_shows_short_ids_and_human_units() {
        let text = table(&fleet()[..1], NOW);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("ID        NAME   STATUS  CPU     MEM"),
            "{text}"
        );
        assert_eq!(
            lines[1],
            "abcd0000  attic  ONLINE  8c 25%  3.1G/15.6G  120.0G     0.50  gpu=true,zone=a  2s ago"
        );
    }

    #[test]
    fn details_are_readable() {
        let text = details(&fleet()[0], NOW);
        assert!(
            text.contains("id:               abcd000000000001\n"),
            "{text}"
        );
        assert!(text.contains("status:           ONLINE for 1m\n"), "{text}");
        assert!(
            text.contains("memory:           3.1G used of 15.6G\n"),
            "{text}"
        );
        assert!(text.contains("last heartbeat:   2s ago\n"), "{text}");
        assert!(text.contains("operator labels:  -\n"), "{text}");
        assert!(text.contains("gpus:             -"), "{text}");
        let mut with_gpus = fleet()[0].clone();
        with_gpus.gpus = vec![shoal_protocol::Gpu {
            index: 0,
            uuid: "GPU-1".into(),
            model: "NVIDIA T4".into(),
            memory_mb: 15360,
            memory_used_mb: 1024,
            utilization_percent: 37,
        }];
        let text = details(&with_gpus, NOW);
        assert!(
            text.contains("gpus:             0 NVIDIA T4 (1.0G of 15.0G, 37%)"),
            "{text}"
        );
    }
}
