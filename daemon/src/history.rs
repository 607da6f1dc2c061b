//! Resource history: each machine keeps its own last hour of samples in memory, and any
//! node reads any machine's from the machine itself, over peer RPC.
//!
//! ```text
//!  sample_loop ── record() ──▶ Ring (at most 1 h old and 3,600 samples, oldest first)
//!  API on node A ── read(machine, since) ──▶ machine is A? ── local()
//!                                          └─ B: PeerRequest::History ──▶ B: local()
//! ```
//!
//! Nothing is persisted: a restarted machine starts a fresh history.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use shoal_protocol::api::{MachineHistory, ResourceSample};
use shoal_protocol::{ApiError, ErrorCode, MachineId, Resources, UnixMillis};

use crate::node::{Node, now_ms};
use crate::p2p::{PeerRequest, PeerResponse};

/// How long a sample is kept.
pub const KEEP_FOR: Duration = Duration::from_secs(3600);

/// Most samples kept, whatever the sample interval: an hour at one per second.
pub const MAX_SAMPLES: usize = 3600;

/// How long a node waits for another machine's history.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// Samples in the order they were taken, trimmed by age and by count. It reads no clock:
/// every time comes from the caller.
#[derive(Debug)]
pub struct Ring {
    samples: VecDeque<ResourceSample>,
    keep_ms: u64,
    max: usize,
}

impl Ring {
    /// A ring that keeps samples for `keep` and at most `max` of them.
    pub fn new(keep: Duration, max: usize) -> Self {
        Ring {
            samples: VecDeque::new(),
            keep_ms: keep.as_millis() as u64,
            max,
        }
    }

    /// Adds the newest sample and drops those older than `keep` before it, then the
    /// oldest beyond `max`.
    pub fn push(&mut self, sample: ResourceSample) {
        let oldest = sample.at_ms.saturating_sub(self.keep_ms);
        self.samples.push_back(sample);
        while self.samples.front().is_some_and(|s| s.at_ms < oldest) {
            self.samples.pop_front();
        }
        while self.samples.len() > self.max {
            self.samples.pop_front();
        }
    }

    /// Samples taken after `since_ms` (all of them without it) and no older than `keep`
    /// at `now`, oldest first.
    pub fn since(&self, since_ms: Option<UnixMillis>, now: UnixMillis) -> Vec<ResourceSample> {
        let oldest = now.saturating_sub(self.keep_ms);
        self.samples
            .iter()
            .filter(|s| s.at_ms >= oldest && since_ms.is_none_or(|since| s.at_ms > since))
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// This machine's history, shared by the sample loop and the readers.
#[derive(Debug)]
pub struct History {
    ring: Mutex<Ring>,
}

impl Default for History {
    fn default() -> Self {
        History {
            ring: Mutex::new(Ring::new(KEEP_FOR, MAX_SAMPLES)),
        }
    }
}

impl History {
    fn ring(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps one sample taken at `at_ms`.
    pub fn record(&self, at_ms: UnixMillis, resources: &Resources) {
        self.ring().push(ResourceSample::new(at_ms, resources));
    }

    /// What [`Ring::since`] gives at `now`.
    pub fn since(&self, since_ms: Option<UnixMillis>, now: UnixMillis) -> Vec<ResourceSample> {
        self.ring().since(since_ms, now)
    }
}

/// This machine's own history after `since_ms`.
pub fn local(node: &Node, since_ms: Option<UnixMillis>) -> MachineHistory {
    MachineHistory {
        machine: node.id,
        interval_ms: node.config.timings.sample_interval.as_millis() as u64,
        samples: node.history.since(since_ms, now_ms()),
    }
}

/// The history of `machine` after `since_ms`, from this node or over peer RPC from the
/// machine itself: 404 for a machine the fleet does not know, 503 when it cannot be asked.
pub async fn read(
    node: &Node,
    machine: MachineId,
    since_ms: Option<UnixMillis>,
) -> Result<MachineHistory, ApiError> {
    if machine == node.id {
        return Ok(local(node, since_ms));
    }
    let name = node
        .fleet
        .read(|state| state.machines.get(&machine).map(|r| r.info.name.clone()))
        .ok_or_else(|| ApiError::not_found(format!("no machine with id {machine}")))?;
    let unavailable = |why: String| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("cannot read the history of machine {name} ({machine}): {why}"),
        )
    };
    let addr = node
        .member_addr(machine)
        .ok_or_else(|| unavailable("no address is known for it".to_string()))?;
    let request = PeerRequest::History { since_ms };
    match node
        .p2p
        .request(&addr.peer_id, &addr.p2p_addr, request, PEER_TIMEOUT)
        .await
    {
        Ok(PeerResponse::History(result)) => result,
        Ok(PeerResponse::Refused(why)) => Err(unavailable(format!("it refused: {why}"))),
        Ok(_) => Err(ApiError::new(
            ErrorCode::Internal,
            format!("machine {name} ({machine}) answered a history request with something else"),
        )),
        Err(err) => Err(unavailable(format!("it is unreachable: {err}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: UnixMillis = 1_700_000_000_000;

    fn sample(at_ms: UnixMillis) -> ResourceSample {
        ResourceSample {
            at_ms,
            cpu_usage: 0.5,
            load: 0.25,
            memory_used_bytes: 1 << 30,
            memory_total_bytes: 4 << 30,
            disk_free_bytes: 10 << 30,
        }
    }

    fn times(samples: &[ResourceSample]) -> Vec<UnixMillis> {
        samples.iter().map(|s| s.at_ms - T0).collect()
    }

    #[test]
    fn keeps_the_last_hour_by_age() {
        let mut ring = Ring::new(KEEP_FOR, MAX_SAMPLES);
        // One sample a minute for two hours.
        for minute in 0..=120 {
            ring.push(sample(T0 + minute * 60_000));
        }
        // 60:00 to 120:00, both ends included: a sample exactly an hour old stays.
        assert_eq!(ring.len(), 61);
        let now = T0 + 120 * 60_000;
        let kept = ring.since(None, now);
        assert_eq!(kept.first().unwrap().at_ms, T0 + 60 * 60_000);
        assert_eq!(kept.last().unwrap().at_ms, now);

        // Read later without new samples (the loop stalled): old ones are not shown.
        let later = ring.since(None, now + 30 * 60_000);
        assert_eq!(later.len(), 31);
        assert_eq!(later.first().unwrap().at_ms, T0 + 90 * 60_000);
        assert!(ring.since(None, now + 61 * 60_000).is_empty());
    }

    #[test]
    fn a_short_interval_is_capped_by_count() {
        let mut ring = Ring::new(KEEP_FOR, MAX_SAMPLES);
        // Every 10 ms for a minute: 6,000 samples, all within the hour.
        for i in 0..6_000 {
            ring.push(sample(T0 + i * 10));
        }
        assert_eq!(ring.len(), MAX_SAMPLES);
        let kept = ring.since(None, T0 + 60_000);
        assert_eq!(kept.len(), MAX_SAMPLES);
        // The newest are kept, in order.
        assert_eq!(kept.first().unwrap().at_ms, T0 + 2_400 * 10);
        assert_eq!(kept.last().unwrap().at_ms, T0 + 5_999 * 10);
        assert!(kept.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
    }

    #[test]
    fn since_gives_only_later_samples() {
        let mut ring = Ring::new(Duration::from_secs(60), 100);
        assert!(ring.is_empty());
        for second in 0..5 {
            ring.push(sample(T0 + second * 1_000));
        }
        let now = T0 + 5_000;
        assert_eq!(
            times(&ring.since(None, now)),
            [0, 1_000, 2_000, 3_000, 4_000]
        );
        // Strictly after: the last timestamp seen asks for only what is new.
        assert_eq!(times(&ring.since(Some(T0 + 2_000), now)), [3_000, 4_000]);
        assert_eq!(times(&ring.since(Some(T0 + 2_500), now)), [3_000, 4_000]);
        assert!(ring.since(Some(T0 + 4_000), now).is_empty());
        assert_eq!(ring.since(Some(0), now).len(), 5);
        // A since older than the kept hour changes nothing.
        assert_eq!(ring.since(Some(T0 - 3_600_000), now).len(), 5);
    }

    #[test]
    fn history_records_the_chartable_resources() {
        let history = History::default();
        let resources = Resources {
            cpu_cores: 4,
            cpu_usage: 0.75,
            load: 1.5,
            memory_total_bytes: 8 << 30,
            memory_used_bytes: 2 << 30,
            disk_total_bytes: 100 << 30,
            disk_free_bytes: 40 << 30,
        };
        history.record(T0, &resources);
        history.record(T0 + 500, &resources);
        let samples = history.since(None, T0 + 1_000);
        assert_eq!(samples.len(), 2);
        assert_eq!(
            samples[1],
            ResourceSample {
                at_ms: T0 + 500,
                cpu_usage: 0.75,
                load: 1.5,
                memory_used_bytes: 2 << 30,
                memory_total_bytes: 8 << 30,
                disk_free_bytes: 40 << 30,
            }
        );
    }
}
