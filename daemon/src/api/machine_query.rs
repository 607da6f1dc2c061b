//! The query of `GET /v1/machines`: its filters, its sort, and their parsing.

use std::cmp::Ordering;

use shoal_protocol::api::{MachineSort, MachineView, SortOrder};
use shoal_protocol::{ApiError, Labels, MachineStatus, UnixMillis};

/// The query of `GET /v1/machines`. Every filter given must match:
///
/// - `status=S`: one status, any case (`online`, `stale`, ...);
/// - `provider=P`: the machine carries the label `provider=P` (operators set it, e.g.
///   `provider=vps`; a machine without that label has no provider);
/// - `os=O`: the machine's OS as it reports it (`linux`, `macos`), any case;
/// - `label=k=v`: the machine carries the label (a bare `k` means `k=true`); repeat the
///   parameter for several, all of which must match. Not comma-separated: label values
///   may contain commas.
///
/// `sort` is one of [`MachineSort`] (`state` is taken for `status`; without it, the list
/// is by id), `order` is `asc` (the default) or `desc`, and `consistent=true` asks for a
/// linearizable read. Each parameter but `label` may be given once.
#[derive(Debug, Default, PartialEq)]
pub(super) struct ListQuery {
    status: Option<MachineStatus>,
    provider: Option<String>,
    os: Option<String>,
    labels: Vec<(String, String)>,
    sort: Option<MachineSort>,
    order: SortOrder,
    pub(super) consistent: bool,
}

const LIST_PARAMS: &str = "status, provider, os, label, sort, order or consistent";

impl ListQuery {
    /// Parses the query's `(name, value)` pairs; a 400 names the parameter at fault and
    /// the values it takes.
    pub(super) fn parse(pairs: Vec<(String, String)>) -> Result<ListQuery, ApiError> {
        let mut query = ListQuery::default();
        let mut seen = Vec::new();
        for (name, value) in pairs {
            if name != "label" {
                if seen.contains(&name) {
                    return Err(ApiError::bad_request(format!(
                        "query parameter {name:?} is given twice: give it once"
                    )));
                }
                seen.push(name.clone());
            }
            match name.as_str() {
                "status" => {
                    query.status = Some(value.parse().map_err(|_| {
                        let names: Vec<String> = MachineStatus::ALL
                            .iter()
                            .map(|s| s.as_str().to_ascii_lowercase())
                            .collect();
                        ApiError::bad_request(format!(
                            "invalid status {value:?}: use one of {}",
                            names.join(", ")
                        ))
                    })?)
                }
                "provider" => query.provider = Some(not_empty("provider", value)?),
                "os" => query.os = Some(not_empty("os", value)?),
                "label" => query.labels.push(Labels::parse_pair(&value).map_err(|err| {
                    ApiError::bad_request(format!("invalid label {value:?}: {err}"))
                })?),
                "sort" => {
                    query.sort = Some(value.parse().map_err(|err: String| {
                        ApiError::bad_request(format!("invalid sort: {err}"))
                    })?)
                }
                "order" => {
                    query.order = value.parse().map_err(|err: String| {
                        ApiError::bad_request(format!("invalid order: {err}"))
                    })?
                }
                "consistent" => {
                    query.consistent = value.parse().map_err(|_| {
                        ApiError::bad_request(format!(
                            "invalid consistent {value:?}: use true or false"
                        ))
                    })?
                }
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter {name:?}: use {LIST_PARAMS}"
                    )));
                }
            }
        }
        Ok(query)
    }

    /// Whether the machine passes every filter.
    pub(super) fn matches(&self, machine: &MachineView) -> bool {
        self.status.is_none_or(|s| machine.status == s)
            && self
                .provider
                .as_ref()
                .is_none_or(|p| machine.labels.get("provider") == Some(p.as_str()))
            && self
                .os
                .as_ref()
                .is_none_or(|os| machine.os.eq_ignore_ascii_case(os))
            && self
                .labels
                .iter()
                .all(|(k, v)| machine.labels.get(k) == Some(v.as_str()))
    }

    /// Orders the machines by the sort key in the asked order, ties by name, then id.
    pub(super) fn sort(&self, machines: &mut [MachineView], now: UnixMillis) {
        let sort = self.sort;
        let key = |a: &MachineView, b: &MachineView| match sort {
            None => a.id.cmp(&b.id),
            Some(MachineSort::Hostname) => a.hostname.cmp(&b.hostname),
            Some(MachineSort::Name) => a.name.cmp(&b.name),
            Some(MachineSort::Status) => a.status.cmp(&b.status),
            Some(MachineSort::Uptime) => uptime_ms(a, now).cmp(&uptime_ms(b, now)),
            Some(MachineSort::Cpu) => a.resources.cpu_usage.total_cmp(&b.resources.cpu_usage),
            Some(MachineSort::Memory) => memory_use(a).total_cmp(&memory_use(b)),
            Some(MachineSort::LastHeartbeat) => a.last_heartbeat_ms.cmp(&b.last_heartbeat_ms),
        };
        let desc = self.order == SortOrder::Desc;
        machines.sort_by(|a, b| {
            let primary: Ordering = key(a, b);
            let primary = if desc { primary.reverse() } else { primary };
            primary
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.id.cmp(&b.id))
        });
    }
}

fn not_empty(name: &str, value: String) -> Result<String, ApiError> {
    if value.is_empty() {
        Err(ApiError::bad_request(format!("{name} must not be empty")))
    } else {
        Ok(value)
    }
}

/// How long the daemon has run; 0 for a machine that is not reachable (it is not up).
fn uptime_ms(machine: &MachineView, now: UnixMillis) -> u64 {
    if machine.status.is_reachable() && machine.started_at_ms > 0 {
        now.saturating_sub(machine.started_at_ms)
    } else {
        0
    }
}

/// The fraction of the machine's memory in use, 0.0 when it reports no memory.
pub(super) fn memory_use(machine: &MachineView) -> f32 {
    let r = &machine.resources;
    if r.memory_total_bytes == 0 {
        0.0
    } else {
        (r.memory_used_bytes as f64 / r.memory_total_bytes as f64) as f32
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use shoal_protocol::{ErrorCode, MachineId, MemberAddr, Resources};

    const NOW: UnixMillis = 1_700_000_000_000;

    /// A machine as the API shows it; `cpu` and `mem` are uses from 0.0 to 1.0.
    pub(crate) fn machine(
        id: u64,
        name: &str,
        status: MachineStatus,
        labels: &[&str],
        cpu: f32,
        mem: f32,
    ) -> MachineView {
        let memory_total_bytes = 16 << 30;
        MachineView {
            id: MachineId(id),
            name: name.into(),
            hostname: format!("host-{name}"),
            os: "linux".into(),
            arch: "x86_64".into(),
            version: "0.1.0".into(),
            status,
            status_since_ms: NOW - 60_000,
            labels: Labels::from_pairs(labels.iter().copied()).unwrap(),
            operator_labels: Labels::new(),
            resources: Resources {
                cpu_cores: 4,
                cpu_usage: cpu,
                load: cpu,
                memory_total_bytes,
                memory_used_bytes: (memory_total_bytes as f64 * mem as f64) as u64,
                disk_total_bytes: 100 << 30,
                disk_free_bytes: 40 << 30,
            },
            running: 0,
            max_running: 4,
            draining: false,
            last_heartbeat_ms: NOW - id * 1000,
            registered_at_ms: NOW - 86_400_000,
            started_at_ms: NOW - id * 60_000,
            addr: MemberAddr::default(),
            raft_role: "voter".into(),
            diagnosis: Vec::new(),
            gpus: Vec::new(),
        }
    }

    fn fleet() -> Vec<MachineView> {
        use MachineStatus::*;
        vec![
            machine(3, "pi", Online, &["provider=home", "zone=a"], 0.9, 0.2),
            machine(1, "attic", Online, &["gpu", "zone=a"], 0.1, 0.7),
            machine(2, "vps-1", Stale, &["provider=vps"], 0.5, 0.5),
            machine(4, "vps-2", Busy, &["provider=vps", "zone=b"], 0.3, 0.1),
        ]
    }

    /// The pairs of a query string as the extractor gives them (only `%20` is decoded).
    fn query(text: &str) -> Result<ListQuery, ApiError> {
        let pairs = text
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (name.to_string(), value.replace("%20", " "))
            })
            .collect();
        ListQuery::parse(pairs)
    }

    fn listed(text: &str) -> Vec<String> {
        let query = query(text).unwrap();
        let mut machines = fleet();
        machines.retain(|m| query.matches(m));
        query.sort(&mut machines, NOW);
        machines.into_iter().map(|m| m.name).collect()
    }

    #[test]
    fn parses_every_parameter() {
        let parsed =
            query("status=online&provider=vps&os=Linux&label=zone=a&label=gpu&sort=state&order=desc&consistent=true")
                .unwrap();
        assert_eq!(
            parsed,
            ListQuery {
                status: Some(MachineStatus::Online),
                provider: Some("vps".into()),
                os: Some("Linux".into()),
                labels: vec![("zone".into(), "a".into()), ("gpu".into(), "true".into())],
                sort: Some(MachineSort::Status),
                order: SortOrder::Desc,
                consistent: true,
            }
        );
        assert_eq!(query("").unwrap(), ListQuery::default());
    }

    #[test]
    fn bad_parameters_name_themselves_and_the_allowed_values() {
        let message = |text: &str| {
            let err = query(text).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest);
            err.message
        };
        assert_eq!(
            message("sort=load"),
            "invalid sort: unknown sort \"load\": use one of hostname, name, status, uptime, cpu, memory, last_heartbeat"
        );
        assert_eq!(
            message("order=up"),
            "invalid order: unknown order \"up\": use asc or desc"
        );
        assert_eq!(
            message("status=sleepy"),
            "invalid status \"sleepy\": use one of registering, online, busy, draining, offline, stale, dead"
        );
        assert!(
            message("label=Bad%20Key").starts_with("invalid label \"Bad Key\": label key"),
            "{}",
            message("label=Bad%20Key")
        );
        assert_eq!(
            message("colour=red"),
            "unknown query parameter \"colour\": use status, provider, os, label, sort, order or consistent"
        );
        assert_eq!(
            message("sort=cpu&sort=name"),
            "query parameter \"sort\" is given twice: give it once"
        );
        assert_eq!(message("provider="), "provider must not be empty");
        assert_eq!(
            message("consistent=yes"),
            "invalid consistent \"yes\": use true or false"
        );
    }

    #[test]
    fn filters_must_all_match() {
        assert_eq!(listed(""), ["attic", "vps-1", "pi", "vps-2"]);
        assert_eq!(listed("status=ONLINE"), ["attic", "pi"]);
        assert_eq!(listed("provider=vps"), ["vps-1", "vps-2"]);
        assert_eq!(listed("provider=vps&status=busy"), ["vps-2"]);
        assert_eq!(listed("label=zone=a&label=gpu"), ["attic"]);
        assert_eq!(listed("label=zone=a&provider=home"), ["pi"]);
        assert_eq!(listed("os=LINUX&label=zone=b"), ["vps-2"]);
        assert!(listed("os=macos").is_empty());
        assert!(listed("provider=VPS").is_empty(), "label values are exact");
    }

    #[test]
    fn sorts_by_every_key_either_way() {
        assert_eq!(listed("sort=name"), ["attic", "pi", "vps-1", "vps-2"]);
        assert_eq!(
            listed("sort=name&order=desc"),
            ["vps-2", "vps-1", "pi", "attic"]
        );
        assert_eq!(
            listed("sort=hostname&order=desc"),
            ["vps-2", "vps-1", "pi", "attic"]
        );
        // ONLINE < BUSY < STALE; ties by name.
        assert_eq!(listed("sort=status"), ["attic", "pi", "vps-2", "vps-1"]);
        assert_eq!(
            listed("sort=status&order=desc"),
            ["vps-1", "vps-2", "attic", "pi"]
        );
        assert_eq!(
            listed("sort=cpu&order=desc"),
            ["pi", "vps-1", "vps-2", "attic"]
        );
        assert_eq!(listed("sort=memory"), ["vps-2", "pi", "vps-1", "attic"]);
        // Started 1, 3 and 4 minutes ago; the STALE machine is not up at all.
        assert_eq!(
            listed("sort=uptime&order=desc"),
            ["vps-2", "pi", "attic", "vps-1"]
        );
        // Heard from 1 s (attic) to 4 s (vps-2) ago.
        assert_eq!(
            listed("sort=last_heartbeat&order=desc"),
            ["attic", "vps-1", "pi", "vps-2"]
        );
        assert_eq!(listed("order=desc"), ["vps-2", "pi", "vps-1", "attic"]);
    }
}
