//! Snapshots of a large fleet state, on the real state machine and a real disk.
//! Run: `cargo run --release -p shoal-examples --example bench_snapshot [-- JOBS]`
//! (JOBS defaults to 1,000,000 finished jobs.)
//!
//! 1. Size: the state holding JOBS finished jobs (each one attempt, a 3-word command, two
//!    labels) is installed as a snapshot; the process's resident memory before and after,
//!    and the snapshot's bytes.
//! 2. Build: while a writer applies one `SubmitJob` entry per millisecond (1,000 jobs/s,
//!    each apply on the state machine's own task, as openraft runs them), a snapshot is
//!    asked for and built; the build's time and the longest and p99 time one apply (or the
//!    builder's hand-over, which runs on the same task) held that task, against the same
//!    figures for the 5 s of writes before the build, and the five longest holds.
//! 3. Restart: the state machine opened again on the data directory (reading, checking and
//!    decoding `snapshot.bin`), timed.

use std::io::Cursor;
use std::time::{Duration, Instant};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, SnapshotMeta};
use shoal_protocol::{
    Attempt, Command, FleetState, JobId, JobRecord, JobSpec, JobState, JobTarget, MachineId,
};
use shoal_raft::{StateMachineStore, StoredSnapshot, TypeConfig, snapshot_format};

// The allocator shoald runs on, so the figures are shoald's.
#[global_allocator]
static ALLOCATOR: shoal_daemon::Allocator = shoal_daemon::Allocator;

const WRITE_INTERVAL: Duration = Duration::from_millis(1);

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn finished_job(id: u64) -> JobRecord {
    let mut spec = JobSpec::new(["sh", "-c", "make test"]);
    spec.required_labels = [("role".into(), "ci".into()), ("gpu".into(), "true".into())].into();
    let at = 1_796_000_000_000 + id;
    let mut job = JobRecord::queued(JobId(id), spec, JobTarget::Any, at, id);
    job.state = JobState::Completed;
    job.updated_at_ms = at + 1_000;
    job.attempts.push(Attempt {
        number: 1,
        machine: MachineId(id % 16),
        dispatched_at_ms: at,
        started_at_ms: Some(at + 10),
        finished_at_ms: Some(at + 1_000),
        exit_code: Some(0),
        rate_micro_usd_per_hour: 120_000,
        cost_micro_usd: Some(33),
        ..Attempt::default()
    });
    job
}

fn log_id(index: u64) -> LogId<MachineId> {
    LogId::new(CommittedLeaderId::new(1, MachineId(1)), index)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let jobs: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 1_000_000,
    };
    let dir = tempfile::tempdir()?;
    let mut sm = StateMachineStore::<TypeConfig>::open(dir.path())?;
    let handle = sm.handle();

    // 1. Size.
    let rss_before = rss_mib();
    let mut state = FleetState::default();
    for id in 1..=jobs {
        let job = finished_job(id);
        state.jobs.insert(job.id, job);
    }
    state.next_job_id = jobs + 1;
    let stored = StoredSnapshot::<TypeConfig> {
        meta: SnapshotMeta {
            last_log_id: Some(log_id(jobs)),
            last_membership: Default::default(),
            snapshot_id: "bench".into(),
        },
        state,
    };
    let started = Instant::now();
    let bytes = snapshot_format::encode(&stored)?;
    let encode = started.elapsed();
    drop(stored);
    let size = bytes.len();
    let started = Instant::now();
    let meta = snapshot_format::read_meta::<TypeConfig>(&bytes)?;
    sm.install_snapshot(&meta, Box::new(Cursor::new(bytes)))
        .await?;
    let install = started.elapsed();
    let rss_after = rss_mib();
    assert_eq!(handle.read(|s| s.jobs.len()) as u64, jobs);

    // 2. Build while writing.
    let mut index = jobs;
    let mut holds = Vec::new();
    // What each hold was, for the longest ones.
    let mut what: Vec<String> = Vec::new();
    let mut built_from: Option<Instant> = None;
    let mut build = None;
    let mut next = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    // 5 s of writes before the build, to compare its holds with the build's.
    let warmup = 5_000;
    let mut written = 0u64;
    loop {
        tokio::time::sleep_until(next.into()).await;
        next += WRITE_INTERVAL;
        index += 1;
        let entry = Entry::<TypeConfig> {
            log_id: log_id(index),
            payload: EntryPayload::Normal(
                Command::SubmitJob {
                    spec: Box::new(JobSpec::new(["true"])),
                    at_ms: 1_797_000_000_000 + index,
                }
                .into(),
            ),
        };
        let started = Instant::now();
        sm.apply([entry]).await?;
        holds.push(started.elapsed());
        what.push(match built_from {
            None => format!("apply {written} (before the build)"),
            Some(from) => format!(
                "apply {} after the hand-over ({} ms into the build)",
                written - warmup,
                from.elapsed().as_millis()
            ),
        });
        written += 1;
        if written == warmup {
            let started = Instant::now();
            let mut builder = sm.get_snapshot_builder().await;
            holds.push(started.elapsed());
            what.push("the hand-over to the builder".into());
            built_from = Some(Instant::now());
            build = Some(tokio::spawn(async move {
                let started = Instant::now();
                let snapshot = builder.build_snapshot().await;
                (started.elapsed(), snapshot.map(|_| ()))
            }));
        }
        if build.as_ref().is_some_and(|b| b.is_finished()) || Instant::now() > deadline {
            break;
        }
    }
    let (build_time, built) = build.expect("a build was started").await?;
    built.map_err(|e| anyhow::anyhow!("{e}"))?;
    // The build writes the file as it encodes; its size is the snapshot's.
    let built = std::fs::metadata(dir.path().join(shoal_raft::SNAPSHOT_FILE))?.len();
    let mut before: Vec<Duration> = holds[..warmup as usize].to_vec();
    before.sort();
    let mut sorted = holds[warmup as usize..].to_vec();
    sorted.sort();
    drop(sm);

    // 3. Restart.
    let started = Instant::now();
    let reopened = StateMachineStore::<TypeConfig>::open(dir.path())?;
    let restart = started.elapsed();
    let reopened_jobs = reopened.handle().read(|s| s.jobs.len());

    println!("finished jobs in the state       {jobs}");
    println!("resident memory, empty -> full   {rss_before:.0} -> {rss_after:.0} MiB");
    println!(
        "snapshot bytes                   {size} ({:.0} per job)",
        size as f64 / jobs as f64
    );
    println!(
        "encode, install                  {:.2} s, {:.2} s",
        encode.as_secs_f64(),
        install.as_secs_f64()
    );
    println!(
        "build while writing 1,000/s      {:.2} s ({built} bytes)",
        build_time.as_secs_f64()
    );
    println!(
        "apply task held, {warmup} applies before the build: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&before, 0.5).as_secs_f64() * 1e3,
        percentile(&before, 0.99).as_secs_f64() * 1e3,
        before.last().unwrap().as_secs_f64() * 1e3,
    );
    println!(
        "apply task held, {} applies during it: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        sorted.len(),
        percentile(&sorted, 0.5).as_secs_f64() * 1e3,
        percentile(&sorted, 0.99).as_secs_f64() * 1e3,
        sorted.last().unwrap().as_secs_f64() * 1e3,
    );
    let mut longest: Vec<(Duration, &String)> = holds.iter().copied().zip(&what).collect();
    longest.sort_by_key(|&(hold, _)| std::cmp::Reverse(hold));
    for (hold, what) in longest.iter().take(5) {
        println!("  held {:.2} ms: {what}", hold.as_secs_f64() * 1e3);
    }
    println!(
        "restart (open, check, decode)    {:.2} s, {reopened_jobs} jobs",
        restart.as_secs_f64()
    );
    Ok(())
}
