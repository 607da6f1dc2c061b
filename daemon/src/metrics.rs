//! Prometheus metrics every node serves at `GET /metrics`, in the text exposition format
//! (0.0.4). Gauges are read from the local replica and Raft at scrape time ([`Scrape`]),
//! as are gossip's mode and drop counters (kept by the gossip crate); [`Metrics`] keeps what
//! happens between scrapes: API requests and dispatch latency.
//!
//! ```text
//!  api middleware ─▶ Metrics::request (route template, method, status, duration)
//!  dispatch pass  ─▶ QueueWaits::of(state, cmd) ─commit─▶ Metrics::dispatched
//!  GET /metrics   ─▶ Scrape::read(node) + Metrics ─▶ encode ─▶ text
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use shoal_gossip::{DroppedDatagrams, GossipMode};
use shoal_protocol::{Command, FleetState, JobId, JobState, MachineStatus, Response, UnixMillis};

use crate::node::Node;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the dispatch latency buckets: from a burst placed at once to
/// a job that waited out most of the default five-minute queue timeout.
const DISPATCH_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Upper bounds (seconds) of the API request duration buckets.
const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `route` label of a request no route matched (real routes start with `/`).
pub const UNMATCHED: &str = "unmatched";

/// Counters and histograms of one node, kept between scrapes. No globals: each node
/// (several share a process in tests) has its own.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<Requests>,
    dispatch: Mutex<Histogram>,
}

#[derive(Default)]
struct Requests {
    /// (route, method, status) -> requests answered.
    counts: BTreeMap<(String, &'static str, u16), u64>,
    /// (route, method) -> how long the answers took.
    durations: BTreeMap<(String, &'static str), Histogram>,
}

/// A histogram with fixed buckets: the count per bucket (not cumulative), sum and count.
#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.buckets.len() != bounds.len() {
            self.buckets = vec![0; bounds.len()];
        }
        if let Some(i) = bounds.iter().position(|le| value <= *le) {
            self.buckets[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in the daemon aborts it, so a poisoned lock is never seen by a live node.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Metrics {
    /// Counts one answered API request. `route` is the matched route template (or
    /// [`UNMATCHED`]), never the raw path, so the number of series stays bounded.
    pub fn request(&self, route: &str, method: &'static str, status: u16, took: Duration) {
        let mut requests = lock(&self.requests);
        *requests
            .counts
            .entry((route.to_string(), method, status))
            .or_insert(0) += 1;
        requests
            .durations
            .entry((route.to_string(), method))
            .or_default()
            .observe(REQUEST_BUCKETS, took.as_secs_f64());
    }

    /// Observes the queue wait of each placement a committed `Dispatch` applied
    /// (`response` names those that took effect; the others were stale and wait on).
    pub fn dispatched(&self, waits: QueueWaits, response: &Response) {
        let Response::Jobs(applied) = response else {
            return;
        };
        let applied: BTreeSet<JobId> = applied.iter().copied().collect();
        let mut histogram = lock(&self.dispatch);
        for (job, wait_ms) in waits.0 {
            if applied.contains(&job) {
                histogram.observe(DISPATCH_BUCKETS, wait_ms as f64 / 1000.0);
            }
        }
    }

    /// The whole exposition: the gauges of `scrape`, then the counters and histograms.
    pub fn encode(&self, scrape: &Scrape) -> String {
        let mut out = Exposition::default();
        out.family(
            "shoal_machines",
            "gauge",
            "Machines in the fleet state, by status.",
        );
        for (status, n) in &scrape.machines {
            out.sample("shoal_machines", &[("status", status.as_str())], *n);
        }
        out.family("shoal_jobs", "gauge", "Jobs in the fleet state, by state.");
        for (state, n) in &scrape.jobs {
            out.sample("shoal_jobs", &[("state", state.as_str())], *n);
        }
        out.family("shoal_raft_term", "gauge", "The Raft term this node is in.");
        out.sample("shoal_raft_term", &[], scrape.term);
        out.family(
            "shoal_raft_is_leader",
            "gauge",
            "1 if this node is the Raft leader, else 0.",
        );
        out.sample("shoal_raft_is_leader", &[], u64::from(scrape.leader));
        out.family(
            "shoal_raft_commit_index",
            "gauge",
            "The highest log index this node knows committed (absent before the first).",
        );
        if let Some(index) = scrape.commit_index {
            out.sample("shoal_raft_commit_index", &[], index);
        }
        out.family(
            "shoal_raft_last_applied_index",
            "gauge",
            "The last log index applied to this node's replica (absent before the first).",
        );
        if let Some(index) = scrape.last_applied {
            out.sample("shoal_raft_last_applied_index", &[], index);
        }
        out.family(
            "shoal_raft_apply_lag_entries",
            "gauge",
            "Log entries committed but not yet applied on this node.",
        );
        out.sample("shoal_raft_apply_lag_entries", &[], scrape.apply_lag());
        out.family(
            "shoal_gossip_mode",
            "gauge",
            "1 for the mode gossip runs in: plain (an older build), open (reads plain and \
             sealed datagrams while the fleet upgrades) or sealed.",
        );
        if let Some(current) = scrape.gossip_mode {
            for mode in GossipMode::ALL {
                let on = u64::from(mode == current);
                out.sample("shoal_gossip_mode", &[("mode", mode.name())], on);
            }
        }
        out.family(
            "shoal_gossip_datagrams_dropped_total",
            "counter",
            "Gossip datagrams dropped unread since the node started, by reason (plain: an \
             unsealed datagram at a node that seals; bad_tag: another key; out_of_bounds: opened \
             but asking more of chitchat than a node allows; too_large_to_seal counts outgoing \
             ones).",
        );
        for (reason, n) in scrape.gossip_dropped.iter() {
            let labels = [("reason", reason.name())];
            out.sample("shoal_gossip_datagrams_dropped_total", &labels, n);
        }
        out.family(
            "shoal_gossip_key_generation",
            "gauge",
            "The gossip key generation this node seals with (0: the key the cluster secret \
             gives; each rotation adds one).",
        );
        if let Some(generation) = scrape.gossip_key_generation {
            out.sample("shoal_gossip_key_generation", &[], generation);
        }

        let requests = lock(&self.requests);
        out.family(
            "shoal_api_requests_total",
            "counter",
            "Admin API requests answered, by route template, method and status code.",
        );
        for ((route, method, status), n) in &requests.counts {
            let status = status.to_string();
            let labels = [
                ("route", route.as_str()),
                ("method", method),
                ("status", &status),
            ];
            out.sample("shoal_api_requests_total", &labels, *n);
        }
        out.family(
            "shoal_api_request_duration_seconds",
            "histogram",
            "Time to answer an admin API request, by route template and method.",
        );
        for ((route, method), histogram) in &requests.durations {
            let labels = [("route", route.as_str()), ("method", method)];
            out.histogram(
                "shoal_api_request_duration_seconds",
                &labels,
                REQUEST_BUCKETS,
                histogram,
            );
        }
        drop(requests);

        out.family(
            "shoal_job_dispatch_latency_seconds",
            "histogram",
            "Time a job waited in the queue (from submit, requeue or the end of its retry \
             backoff) until its dispatch; observed on the leader once the dispatch commits.",
        );
        let dispatch = lock(&self.dispatch).clone();
        out.histogram(
            "shoal_job_dispatch_latency_seconds",
            &[],
            DISPATCH_BUCKETS,
            &dispatch,
        );
        out.text
    }
}

/// How long each job a `Dispatch` places has waited, in milliseconds, taken from the
/// state the plan was made from (a dispatch overwrites the time the job entered the queue).
#[derive(Debug, Default, PartialEq)]
pub struct QueueWaits(Vec<(JobId, UnixMillis)>);

impl QueueWaits {
    /// The waits of the placements `cmd` makes: those of a `Dispatch`'s jobs, none for any
    /// other command. Observed once it commits.
    pub fn of(state: &FleetState, cmd: &Command) -> QueueWaits {
        let Command::Dispatch { placements, at_ms } = cmd else {
            return QueueWaits::default();
        };
        let waits = placements
            .iter()
            .filter_map(|placement| state.jobs.get(&placement.job))
            .map(|job| {
                let queued_since = job.updated_at_ms.max(job.not_before_ms);
                (job.id, at_ms.saturating_sub(queued_since))
            })
            .collect();
        QueueWaits(waits)
    }
}

/// What a scrape reads from the local replica and from Raft.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// Every status, those with no machine at 0.
    pub machines: BTreeMap<MachineStatus, u64>,
    /// Every state, those with no job at 0.
    pub jobs: BTreeMap<JobState, u64>,
    pub term: u64,
    pub leader: bool,
    pub commit_index: Option<u64>,
    pub last_applied: Option<u64>,
    /// `None` when not read from a running node.
    pub gossip_mode: Option<GossipMode>,
    pub gossip_dropped: DroppedDatagrams,
    /// The gossip key generation this node seals with (`None` when not read from a
    /// running node).
    pub gossip_key_generation: Option<u32>,
}

impl Scrape {
    /// Reads node's replica and Raft metrics now.
    pub fn read(node: &Node) -> Scrape {
        let mut scrape = node.fleet.read(Scrape::count);
        let raft = node.raft.metrics();
        let raft = raft.borrow();
        scrape.term = raft.current_term;
        scrape.leader = raft.current_leader == Some(node.id);
        scrape.last_applied = raft.last_applied.map(|id| id.index);
        scrape.commit_index = node.commit_index.get();
        scrape.gossip_mode = Some(node.gossip.mode());
        scrape.gossip_dropped = node.gossip.dropped_datagrams();
        scrape.gossip_key_generation = Some(node.gossip_keys.sealing());
        scrape
    }

    /// The machine and job counts of `state`.
    pub fn count(state: &FleetState) -> Scrape {
        let mut machines: BTreeMap<MachineStatus, u64> =
            MachineStatus::ALL.into_iter().map(|s| (s, 0)).collect();
        for record in state.machines.values() {
            *machines.entry(record.status).or_insert(0) += 1;
        }
        let mut jobs: BTreeMap<JobState, u64> = JobState::ALL.into_iter().map(|s| (s, 0)).collect();
        for job in state.jobs.values() {
            *jobs.entry(job.state).or_insert(0) += 1;
        }
        Scrape {
            machines,
            jobs,
            ..Scrape::default()
        }
    }

    /// Entries committed but not applied (log indexes start at 0, so `None` is none yet).
    pub fn apply_lag(&self) -> u64 {
        let entries = |index: Option<u64>| index.map_or(0, |i| i + 1);
        entries(self.commit_index).saturating_sub(entries(self.last_applied))
    }
}

/// The method label: the standard methods by name, anything else as `OTHER`, so a client
/// cannot add series by inventing methods.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

/// Writes the text format: `# HELP`, `# TYPE`, then samples.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape(help, false));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape(value, true));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        histogram: &Histogram,
    ) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, le) in bounds.iter().enumerate() {
            cumulative += histogram.buckets.get(i).copied().unwrap_or(0);
            let le = le.to_string();
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, histogram.count);
        self.sample(&format!("{name}_sum"), labels, histogram.sum);
        self.sample(&format!("{name}_count"), labels, histogram.count);
    }
}

/// Escapes `\` and newlines (and `"` in label values), as the text format asks.
fn escape(text: &str, quote: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
