//! What a snapshot file holds, in a few numbers: `shoal snapshot inspect` prints it, and
//! `shoald restore` before it writes anything.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use shoal_protocol::{JobState, MachineId};

use crate::snapshot_format::Opened;

/// A snapshot summarized; `--json` prints it as it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotSummary {
    pub schema: u16,
    /// The last log entry the state includes.
    pub last_index: u64,
    pub last_term: u64,
    /// When the copy was encoded (ms since the epoch), if the file says.
    pub taken_at_ms: Option<u64>,
    /// The Raft voters as of the copy.
    pub voters: Vec<MachineId>,
    pub machines: usize,
    /// Jobs by state (`queued`, `running`, ...), every state listed.
    pub jobs: BTreeMap<String, usize>,
    pub api_keys: usize,
    pub api_keys_active: usize,
    pub tokens: usize,
    pub budgets: usize,
    pub templates: usize,
    pub policies: usize,
    /// Everything the cost ledger holds, run time and reported, in micro-dollars.
    pub spend_micro_usd: u64,
    pub sha256: String,
}

/// Sums up an opened snapshot.
pub fn summarize(opened: &Opened) -> SnapshotSummary {
    let meta = &opened.snapshot.meta;
    let state = &opened.snapshot.state;
    let mut jobs: BTreeMap<String, usize> = JobState::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for job in state.jobs.values() {
        *jobs.entry(job.state.as_str().to_string()).or_default() += 1;
    }
    let spend_micro_usd = state.costs.rows().fold(0u64, |sum, (_, totals)| {
        sum.saturating_add(totals.runtime_micro_usd)
            .saturating_add(totals.reported_micro_usd)
    });
    SnapshotSummary {
        schema: opened.schema,
        last_index: meta.last_log_id.map_or(0, |id| id.index),
        last_term: meta.last_log_id.map_or(0, |id| id.leader_id.term),
        taken_at_ms: opened.taken_at_ms,
        voters: meta.last_membership.membership().voter_ids().collect(),
        machines: state.machines.len(),
        jobs,
        api_keys: state.api_keys.len(),
        api_keys_active: state
            .api_keys
            .values()
            .filter(|k| k.revoked_at_ms.is_none())
            .count(),
        tokens: state.tokens.len(),
        budgets: state.budgets.len(),
        templates: state.all_templates().count(),
        policies: state.policies.len(),
        spend_micro_usd,
        sha256: opened.sha256.clone(),
    }
}

impl fmt::Display for SnapshotSummary {
    /// One `name: value` line per fact, values aligned.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let taken_at = self
            .taken_at_ms
            .map_or_else(|| "not recorded".to_string(), utc);
        let voters: Vec<String> = self.voters.iter().map(ToString::to_string).collect();
        let jobs: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(state, n)| format!("{state} {n}"))
            .collect();
        let total: usize = self.jobs.values().sum();
        let jobs = if jobs.is_empty() {
            "0".to_string()
        } else {
            format!("{total} ({})", jobs.join(", "))
        };
        let lines = [
            ("schema", self.schema.to_string()),
            ("last index", self.last_index.to_string()),
            ("last term", self.last_term.to_string()),
            ("taken at", taken_at),
            ("voters", voters.join(", ")),
            ("machines", self.machines.to_string()),
            ("jobs", jobs),
            (
                "api keys",
                format!("{} ({} active)", self.api_keys, self.api_keys_active),
            ),
            ("tokens", self.tokens.to_string()),
            ("budgets", self.budgets.to_string()),
            ("templates", self.templates.to_string()),
            ("policies", self.policies.to_string()),
            ("spend", usd(self.spend_micro_usd)),
            ("sha256", self.sha256.clone()),
        ];
        for (name, value) in lines {
            writeln!(f, "{:<12}{value}", format!("{name}:"))?;
        }
        Ok(())
    }
}

fn usd(micro: u64) -> String {
    format!("${}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

/// `2024-05-01 12:00:00 UTC` from milliseconds since the epoch.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId, SnapshotMeta};
    use shoal_protocol::costs::{CostKey, CostTotals};
    use shoal_protocol::{FleetState, JobId, JobKind, JobRecord, JobSpec, JobTarget};

    use super::*;
    use crate::StoredSnapshot;
    use crate::snapshot_format::{encode_taken_at, open};

    #[test]
    fn counts_what_the_state_holds_and_prints_it() {
        let mut state = FleetState::default();
        for id in [3, 4, 5] {
            let job = JobRecord::queued(JobId(id), JobSpec::default(), JobTarget::Any, 1, id);
            state.jobs.insert(job.id, job);
        }
        state.jobs.get_mut(&JobId(5)).unwrap().state = JobState::Completed;
        let key = CostKey {
            day: 19_000,
            org: "default".into(),
            machine: MachineId(1),
            kind: JobKind::default(),
        };
        let totals = CostTotals {
            runtime_micro_usd: 1_500_000,
            reported_micro_usd: 250_000,
            runner_ms: 10,
        };
        state.costs.add(key, &totals);
        let snapshot: StoredSnapshot = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(3, MachineId(1)), 77)),
                last_membership: Default::default(),
                snapshot_id: "x".into(),
            },
            state,
        };
        let bytes = encode_taken_at(&snapshot, 1_714_564_800_000).unwrap();
        let summary = summarize(&open(&bytes).unwrap());
        assert_eq!((summary.last_index, summary.last_term), (77, 3));
        assert_eq!(summary.jobs["queued"], 2);
        assert_eq!(summary.jobs["completed"], 1);
        assert_eq!(summary.jobs["failed"], 0);
        assert_eq!(summary.spend_micro_usd, 1_750_000);
        let text = summary.to_string();
        assert!(
            text.contains("taken at:   2024-05-01 12:00:00 UTC"),
            "{text}"
        );
        assert!(
            text.contains("jobs:       3 (completed 1, queued 2)"),
            "{text}"
        );
        assert!(text.contains("spend:      $1.750000"), "{text}");
        assert!(
            text.contains(&format!("sha256:     {}", summary.sha256)),
            "{text}"
        );
    }

    #[test]
    fn dates_convert() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(4_102_444_799_000), "2099-12-31 23:59:59 UTC");
    }
}
