//! The fleet state's size and the cost of a budget check, as jobs pile up. No cluster: the
//! commands go straight through `apply`, as they do on every replica.
//! Run: `cargo run --release -p shoal-examples --example bench_state`
//!
//! 1. State size: 100,000 jobs submitted through the API's audited path, each dispatched,
//!    run for a second and finished, on 20 machines with an hourly rate. Then the bytes of
//!    the encoded state (`frame::encode`, what a snapshot holds) and the memory the state
//!    takes once read back from them (a fresh process's resident set before and after
//!    decoding, with the indexes rebuilt), both per 100,000 finished jobs, and the time a
//!    snapshot's copy of the state takes.
//! 2. Admission: with a daily budget on the org and 50 of its jobs running, the time one
//!    `SubmitJob` takes to apply after 1,000, 10,000 and 100,000 finished jobs (the mean of
//!    5,000 submits, each checked against the budget), and the time the check alone takes.

use std::time::{Duration, Instant};

use shoal_protocol::costs::{Budget, DAY_MS, OnExceed};
use shoal_protocol::{
    Command, FleetState, JobId, JobReport, JobSpec, Labels, MachineId, MachineInfo, MachineStatus,
    Placement, Response, frame,
};
use shoal_raft::costs::over_limit;
use shoal_raft::{ApplyCtx, apply};

// The allocator shoald runs on, so the figures are shoald's.
#[global_allocator]
static ALLOCATOR: shoal_daemon::Allocator = shoal_daemon::Allocator;

const MACHINES: u64 = 20;
const SIZE_JOBS: u64 = 100_000;
const ADMISSION_AT: [u64; 3] = [1_000, 10_000, 100_000];
const ADMISSION_SUBMITS: u64 = 5_000;
const RUNNING: u64 = 50;
/// A day's noon, so no run crosses midnight.
const NOON: u64 = 20_000 * DAY_MS + DAY_MS / 2;

/// The argument that makes this program the reader of [`memory_when_read`].
const READ_STATE: &str = "--read-state";

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some(READ_STATE) {
        return read_state();
    }
    state_size()?;
    admission()?;
    Ok(())
}

/// A state machine with a log of its own: each command takes the next index.
struct Replica {
    state: FleetState,
    index: u64,
    now: u64,
    placed: u64,
}

impl Replica {
    fn with_machines() -> Replica {
        let mut replica = Replica {
            state: FleetState::default(),
            index: 0,
            now: NOON,
            placed: 0,
        };
        for id in 1..=MACHINES {
            let info = MachineInfo {
                id: MachineId(id),
                name: format!("m{id}"),
                labels: Labels::from_pairs(["cost_per_hour=0.12"]).expect("a valid label"),
                ..MachineInfo::default()
            };
            replica.apply(Command::UpsertMachine {
                info: Box::new(info),
                at_ms: NOON,
            });
            replica.apply(Command::SetStatus {
                id: MachineId(id),
                status: MachineStatus::Online,
                last_heartbeat_ms: NOON,
                at_ms: NOON,
            });
        }
        replica
    }

    fn apply(&mut self, cmd: Command) -> Response {
        self.index += 1;
        let ctx = ApplyCtx {
            log_index: self.index,
        };
        apply(&mut self.state, cmd, &ctx)
    }

    /// Submits a job as the API does (audited), and answers with its id if admitted.
    fn submit(&mut self) -> Option<JobId> {
        self.now += 1;
        let cmd = Command::Audited {
            actor: "bench".into(),
            org: "default".into(),
            at_ms: self.now,
            command: Box::new(Command::SubmitJob {
                spec: Box::new(JobSpec::new(["true"])),
                at_ms: self.now,
            }),
        };
        match self.apply(cmd) {
            Response::Submitted { job, .. } => Some(job.id),
            _ => None,
        }
    }

    /// Places job `id` on the next machine in turn and reports it running; with `run_ms`,
    /// also finished that much later.
    fn run(&mut self, id: JobId, run_ms: Option<u64>) {
        let machine = MachineId(1 + self.placed % MACHINES);
        self.placed += 1;
        let at_ms = self.now;
        self.apply(Command::Dispatch {
            placements: vec![Placement {
                job: id,
                attempt: 1,
                machine,
            }],
            at_ms,
        });
        self.report(id, JobReport::Running, at_ms);
        if let Some(run_ms) = run_ms {
            self.report(id, JobReport::Exited { exit_code: 0 }, at_ms + run_ms);
        }
    }

    fn report(&mut self, job: JobId, report: JobReport, at_ms: u64) {
        self.apply(Command::ReportJob {
            job,
            attempt: 1,
            report,
            at_ms,
        });
    }

    /// Submits and finishes jobs until `total` have finished.
    fn finish_up_to(&mut self, total: u64, finished: &mut u64) {
        while *finished < total {
            let id = self.submit().expect("no budget refuses these");
            self.run(id, Some(1_000));
            *finished += 1;
        }
    }
}

/// The resident set of this process, in bytes (Linux).
fn resident_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))?;
    Ok(kib * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Figure 1: encoded bytes and memory per 100,000 finished jobs.
fn state_size() -> anyhow::Result<()> {
    let mut replica = Replica::with_machines();
    let mut finished = 0;
    let start = Instant::now();
    replica.finish_up_to(SIZE_JOBS, &mut finished);
    let built = start.elapsed();
    let state = std::mem::take(&mut replica.state);
    let bytes = frame::encode(&state)?;
    let (jobs, audit, ledger_rows) = (state.jobs.len(), state.audit.len(), state.costs.len());
    let copy = Instant::now();
    let snapshot = state.clone();
    let copied = copy.elapsed();
    drop((snapshot, state));
    let memory = memory_when_read(&bytes)?;
    let per_100k = |n: u64| n as f64 * 100_000.0 / SIZE_JOBS as f64;
    println!(
        "1. {SIZE_JOBS} finished jobs applied in {:.2} s: {jobs} job records, {audit} audit entries, {ledger_rows} ledger rows",
        built.as_secs_f64()
    );
    println!(
        "   per 100,000 finished jobs: encoded state {:.1} MiB ({:.0} bytes a job), in memory {:.1} MiB",
        mib(per_100k(bytes.len() as u64) as u64),
        bytes.len() as f64 / SIZE_JOBS as f64,
        mib(per_100k(memory) as u64),
    );
    println!(
        "   a snapshot's copy of that state takes {} µs",
        copied.as_micros()
    );
    Ok(())
}

/// The memory the state encoded in `bytes` takes once read, indexes rebuilt: measured in
/// a fresh process (this program again, with `--read-state`), whose resident set grows by
/// that much, so memory this process freed and kept does not hide it.
fn memory_when_read(bytes: &[u8]) -> anyhow::Result<u64> {
    use std::io::Write;
    use std::process::{Command as Process, Stdio};
    let mut child = Process::new(std::env::current_exe()?)
        .arg(READ_STATE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(bytes)?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "reading the state failed");
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

/// The child's side of [`memory_when_read`]: prints how much its resident set grew.
fn read_state() -> anyhow::Result<()> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes)?;
    let before = resident_bytes()?;
    let mut state: FleetState = frame::decode(&bytes)?;
    state.rebuild_indexes();
    let after = resident_bytes()?;
    println!("{}", after.saturating_sub(before));
    drop(state);
    Ok(())
}

/// Figure 2: the time a submit takes against a budget, after more and more finished jobs.
fn admission() -> anyhow::Result<()> {
    let mut replica = Replica::with_machines();
    replica.apply(Command::SetBudget {
        org: "default".into(),
        budget: Some(Budget {
            daily_micro_usd: Some(1_000_000_000),
            daily_runner_ms: None,
            on_exceed: OnExceed::Finish,
        }),
    });
    for _ in 0..RUNNING {
        let id = replica.submit().expect("under budget");
        replica.run(id, None);
    }
    let mut finished = 0;
    for total in ADMISSION_AT {
        replica.finish_up_to(total, &mut finished);
        let mut timed = Duration::ZERO;
        for _ in 0..ADMISSION_SUBMITS {
            let start = Instant::now();
            let admitted = replica.submit();
            timed += start.elapsed();
            anyhow::ensure!(admitted.is_some(), "the budget refused a submit");
        }
        // Those stay queued; cancel them so the next round starts from finished jobs only.
        let queued: Vec<JobId> = replica
            .state
            .queued_jobs()
            .filter(|job| job.attempts.is_empty())
            .map(|job| job.id)
            .collect();
        for job in queued {
            let at_ms = replica.now;
            replica.apply(Command::CancelJob { job, at_ms });
        }
        let check = Instant::now();
        for i in 0..ADMISSION_SUBMITS {
            let at_ms = replica.now + i;
            let refusal = over_limit(&replica.state, "default", at_ms);
            anyhow::ensure!(refusal.is_none(), "the budget is not met");
        }
        let checked = check.elapsed();
        let each = |d: Duration| d.as_secs_f64() * 1e6 / ADMISSION_SUBMITS as f64;
        println!(
            "2. budget set, {RUNNING} running, {total:>6} finished jobs: a submit applies in {:.2} µs, its budget check {:.3} µs",
            each(timed),
            each(checked)
        );
    }
    Ok(())
}
