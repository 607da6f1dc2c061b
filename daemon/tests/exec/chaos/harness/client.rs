//! The load: clients that submit one keyed job at a time and retry the same key against
//! any node until it is acknowledged, and a probe that starts a keyed write every few
//! milliseconds (one try each) to time the gaps between acknowledged writes. Every job
//! writes a mark line to the shared directory when it starts.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use shoal_protocol::api::SubmitJobResponse;
use shoal_protocol::{JobId, JobRequest, MachineId};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::fleet::Fleet;

/// The script every job runs: a mark line `job attempt machine uptime`, then a short sleep
/// so the mark always precedes the attempt's end by a clear margin.
fn script(then: &str) -> String {
    format!(
        "read up rest < /proc/uptime; h=$(hostname); \
         echo \"$SHOAL_JOB_ID $SHOAL_ATTEMPT $h $up\" >> /marks/$h.log; sleep 0.2; {then}"
    )
}

/// A keyed job that marks, then runs `then`; pinned to `machine` when given.
pub fn mark_job(key: &str, machine: Option<MachineId>, then: &str) -> JobRequest {
    JobRequest {
        idempotency_key: Some(key.to_string()),
        agent_id: machine.map(|m| m.to_string()),
        // Each daemon kill can fail an attempt (a lost process counts as failed).
        max_attempts: 10,
        ..JobRequest::new(["sh".to_string(), "-c".to_string(), script(then)])
    }
}

/// An acknowledged submit.
#[derive(Debug, Clone)]
pub struct Ack {
    pub key: String,
    pub job: JobId,
    /// When the acknowledged try was sent, since the run began.
    pub sent: Duration,
    pub acked: Duration,
    pub probe: bool,
}

/// What the clients sent and what was acknowledged.
#[derive(Debug, Default)]
pub struct Book {
    acks: Mutex<Vec<Ack>>,
    /// Tries that failed or timed out (and were retried, for clients).
    pub errors: AtomicU64,
    /// The longest time each client waited between two acknowledgements.
    client_gaps: Mutex<Vec<Duration>>,
}

impl Book {
    pub fn new() -> Book {
        Book::default()
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    pub fn longest_client_gap(&self) -> Duration {
        self.client_gaps
            .lock()
            .unwrap()
            .iter()
            .copied()
            .max()
            .unwrap_or_default()
    }

    pub fn record(&self, ack: Ack) {
        self.acks.lock().unwrap().push(ack);
    }
}

/// One try: `POST /v1/jobs` on member `i`.
pub async fn submit(
    fleet: &Fleet,
    i: usize,
    spec: &JobRequest,
    timeout: Duration,
) -> anyhow::Result<SubmitJobResponse> {
    let Some(url) = fleet.url(i, "/v1/jobs") else {
        bail!("{} is not published", fleet.members[i].name);
    };
    let response = fleet
        .http
        .post(url)
        .json(spec)
        .timeout(timeout)
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        bail!("{status}: {}", response.text().await.unwrap_or_default());
    }
    Ok(response.json().await?)
}

/// Submits `spec` (keyed) until some member acknowledges it or `within` passes, trying
/// the members in turn from `first`.
pub async fn submit_until_acked(
    fleet: &Fleet,
    book: &Book,
    spec: &JobRequest,
    first: usize,
    within: Duration,
) -> Option<Ack> {
    let key = spec.idempotency_key.clone().unwrap_or_default();
    let deadline = fleet.now() + within;
    let mut i = first;
    while fleet.now() < deadline {
        let sent = fleet.now();
        match submit(fleet, i, spec, Duration::from_secs(6)).await {
            Ok(answer) => {
                let ack = Ack {
                    key,
                    job: answer.job.id,
                    sent,
                    acked: fleet.now(),
                    probe: false,
                };
                book.record(ack.clone());
                return Some(ack);
            }
            Err(_) => {
                book.errors.fetch_add(1, Ordering::Relaxed);
                i = (i + 1) % fleet.members.len();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    None
}

/// A client: one keyed job at a time, each retried until acknowledged; after `stop` it
/// finishes the key in hand (for at most 30 s more) and returns.
pub async fn client_loop(
    fleet: std::sync::Arc<Fleet>,
    book: std::sync::Arc<Book>,
    prefix: String,
    mut stop: watch::Receiver<bool>,
) {
    let n = fleet.members.len();
    let mut last_ack = fleet.now();
    let mut longest = Duration::ZERO;
    for seq in 0u64.. {
        if *stop.borrow_and_update() {
            break;
        }
        let spec = mark_job(&format!("{prefix}-{seq}"), None, "true");
        let first = (seq as usize) % n;
        // Far longer than any fault: a key is never given up while the run goes on.
        let acked = tokio::select! {
            ack = submit_until_acked(&fleet, &book, &spec, first, Duration::from_secs(120)) => ack,
            _ = stop.changed() => {
                submit_until_acked(&fleet, &book, &spec, first, Duration::from_secs(30)).await
            }
        };
        if let Some(ack) = acked {
            longest = longest.max(ack.acked - last_ack);
            last_ack = ack.acked;
        }
    }
    book.client_gaps.lock().unwrap().push(longest);
}

/// The probe: every `every`, one try of a new keyed write against the next member (2 s at
/// most), never retried; so its acknowledgements sample when the fleet takes writes.
pub async fn probe_loop(
    fleet: std::sync::Arc<Fleet>,
    book: std::sync::Arc<Book>,
    prefix: String,
    every: Duration,
    stop: watch::Receiver<bool>,
) {
    let mut tries = JoinSet::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    for seq in 0u64.. {
        tick.tick().await;
        if *stop.borrow() {
            break;
        }
        while tries.try_join_next().is_some() {}
        if tries.len() >= 40 {
            continue;
        }
        let (fleet, book) = (fleet.clone(), book.clone());
        let key = format!("{prefix}-{seq}");
        tries.spawn(async move {
            let spec = mark_job(&key, None, "true");
            let i = (seq as usize) % fleet.members.len();
            let sent = fleet.now();
            match submit(&fleet, i, &spec, Duration::from_secs(2)).await {
                Ok(answer) => book.record(Ack {
                    key,
                    job: answer.job.id,
                    sent,
                    acked: fleet.now(),
                    probe: true,
                }),
                Err(_) => {
                    book.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tries.join_next().await.is_some() {}
}

/// The longest gap between consecutive probe acknowledgements in `[from, to]` (counting
/// from `from` to the first one and from the last one to `to`).
pub fn probe_gap(acks: &[Ack], from: Duration, to: Duration) -> Duration {
    let mut times: Vec<Duration> = acks
        .iter()
        .filter(|a| a.probe && a.acked >= from && a.acked <= to)
        .map(|a| a.acked)
        .collect();
    times.sort();
    let mut edges = vec![from];
    edges.extend(times);
    edges.push(to);
    edges
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

/// Time from `t0` to the first acknowledgement of a write sent after it.
pub fn first_ack_after(acks: &[Ack], t0: Duration) -> Option<Duration> {
    acks.iter()
        .filter(|a| a.sent >= t0)
        .map(|a| a.acked - t0)
        .min()
}
