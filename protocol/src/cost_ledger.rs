//! The cost ledger: spend by UTC day, org, machine and kind of work, so it grows with the
//! days and the fleet, not with the jobs run. Each org's daily totals are kept beside the
//! rows, so a budget check reads one entry.

use std::ops::RangeInclusive;

use std::fmt;

use imbl::OrdMap;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::costs::{CostKey, CostTotals, Day};

/// The ledger rows, and derived from them each org's total per day.
///
/// Only the rows are serialized, as a map. Reading one adds each row in, so rows an older
/// build kept apart (it also keyed them by job) add up into one, and the totals come back
/// with them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct CostLedger {
    rows: OrdMap<CostKey, CostTotals>,
    /// day -> org -> that org's rows of the day added up.
    #[serde(skip)]
    org_days: OrdMap<Day, OrdMap<String, CostTotals>>,
}

impl CostLedger {
    /// Adds `totals` to the row `key`, and to its org's total for the day.
    pub fn add(&mut self, key: CostKey, totals: &CostTotals) {
        self.org_days
            .entry(key.day)
            .or_default()
            .entry(key.org.clone())
            .or_default()
            .add(totals);
        self.rows.entry(key).or_default().add(totals);
    }

    /// What `org` spent on `day`, over every machine and kind, running work not included.
    pub fn org_day(&self, org: &str, day: Day) -> CostTotals {
        self.org_days
            .get(&day)
            .and_then(|orgs| orgs.get(org))
            .copied()
            .unwrap_or_default()
    }

    /// Every row, in key order (day first).
    pub fn rows(&self) -> impl Iterator<Item = (&CostKey, &CostTotals)> {
        self.rows.iter()
    }

    /// The rows of the days in `days`, in key order.
    pub fn rows_of(
        &self,
        days: RangeInclusive<Day>,
    ) -> impl Iterator<Item = (&CostKey, &CostTotals)> {
        let (first, last) = (*days.start(), *days.end());
        let range = CostKey::first_of(first)..;
        self.rows
            .range(range)
            .take_while(move |(key, _)| key.day <= last)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Forgets the rows, and the totals, of days before `oldest`.
    pub fn forget_before(&mut self, oldest: Day) {
        let old: Vec<CostKey> = self
            .rows
            .range(..CostKey::first_of(oldest))
            .map(|(key, _)| key.clone())
            .collect();
        for key in old {
            self.rows.remove(&key);
        }
        let old_days: Vec<Day> = self.org_days.range(..oldest).map(|(day, _)| *day).collect();
        for day in old_days {
            self.org_days.remove(&day);
        }
    }

    /// Recomputes the daily totals per org from the rows.
    pub fn rebuild_totals(&mut self) {
        let rows = std::mem::take(&mut self.rows);
        self.org_days = OrdMap::new();
        for (key, totals) in rows.iter() {
            self.add(key.clone(), totals);
        }
        debug_assert_eq!(self.rows, rows);
    }
}

impl<'de> Deserialize<'de> for CostLedger {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Rows;
        impl<'de> Visitor<'de> for Rows {
            type Value = CostLedger;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of cost ledger rows")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut rows: A) -> Result<CostLedger, A::Error> {
                let mut ledger = CostLedger::default();
                while let Some((key, totals)) = rows.next_entry::<CostKey, CostTotals>()? {
                    ledger.add(key, &totals);
                }
                Ok(ledger)
            }
        }
        deserializer.deserialize_map(Rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobKind, MachineId};

    fn key(day: Day, org: &str, machine: u64, kind: JobKind) -> CostKey {
        CostKey {
            day,
            org: org.to_string(),
            machine: MachineId(machine),
            kind,
        }
    }

    fn spent(micro_usd: u64, runner_ms: u64) -> CostTotals {
        CostTotals {
            runtime_micro_usd: micro_usd,
            reported_micro_usd: 0,
            runner_ms,
        }
    }

    #[test]
    fn rows_add_up_per_machine_and_kind_and_per_org_and_day() {
        let mut ledger = CostLedger::default();
        for _ in 0..1_000 {
            ledger.add(key(10, "lab", 1, JobKind::Job), &spent(2, 10));
        }
        ledger.add(key(10, "lab", 2, JobKind::Session), &spent(5, 50));
        ledger.add(key(10, "ops", 1, JobKind::Job), &spent(7, 70));
        ledger.add(key(11, "lab", 1, JobKind::Job), &spent(1, 1));
        // A thousand runs are one row: the ledger grows with days and machines, not jobs.
        assert_eq!(ledger.len(), 4);
        assert_eq!(ledger.org_day("lab", 10), spent(2_005, 10_050));
        assert_eq!(ledger.org_day("ops", 10), spent(7, 70));
        assert_eq!(ledger.org_day("lab", 11), spent(1, 1));
        assert_eq!(ledger.org_day("lab", 12), CostTotals::default());
        let day_10: Vec<&CostKey> = ledger.rows_of(10..=10).map(|(k, _)| k).collect();
        assert_eq!(day_10.len(), 3);
        assert!(day_10.iter().all(|k| k.day == 10));
    }

    #[test]
    fn rows_an_older_build_kept_per_job_add_up_when_read() {
        /// The key as builds before this one wrote it: one row per job.
        #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
        struct PerJobKey {
            day: Day,
            org: String,
            machine: MachineId,
            job: crate::JobId,
            kind: JobKind,
        }
        let old_key = |job| PerJobKey {
            day: 10,
            org: "lab".into(),
            machine: MachineId(1),
            job: crate::JobId(job),
            kind: JobKind::Job,
        };
        let old: std::collections::BTreeMap<PerJobKey, CostTotals> =
            (1..=3).map(|job| (old_key(job), spent(job, 100))).collect();
        let read: CostLedger = crate::frame::decode(&crate::frame::encode(&old).unwrap()).unwrap();
        let rows: Vec<(&CostKey, &CostTotals)> = read.rows().collect();
        assert_eq!(rows, [(&key(10, "lab", 1, JobKind::Job), &spent(6, 300))]);
        assert_eq!(read.org_day("lab", 10), spent(6, 300));
    }

    #[test]
    fn old_days_are_forgotten_and_totals_rebuild_from_the_rows() {
        let mut ledger = CostLedger::default();
        for day in 1..=5 {
            ledger.add(key(day, "lab", 1, JobKind::Job), &spent(u64::from(day), 1));
        }
        ledger.forget_before(4);
        assert_eq!(
            ledger.rows().map(|(k, _)| k.day).collect::<Vec<_>>(),
            [4, 5]
        );
        assert_eq!(ledger.org_day("lab", 3), CostTotals::default());
        let bytes = crate::frame::encode(&ledger).unwrap();
        let read: CostLedger = crate::frame::decode(&bytes).unwrap();
        assert_eq!(read, ledger, "the totals come back with the rows");
        let mut rebuilt = read.clone();
        rebuilt.rebuild_totals();
        assert_eq!(rebuilt, ledger);
    }
}
