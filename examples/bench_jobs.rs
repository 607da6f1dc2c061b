//! Jobs through a 3-voter in-process cluster on 127.0.0.1, four figures:
//! Run: `cargo run --release -p shoal-examples --example bench_jobs`
//!
//! 1. Placement throughput, executors off: 50,000 jobs in batches of 1,000
//!    (`POST /v1/jobs/batch`, 4 in flight) to the leader, timed from the first POST until
//!    the leader's replica holds every job and none is `queued`. Over HTTPS; `1-http`
//!    runs it again over plain HTTP (`--insecure-http`), to show what TLS costs.
//! 2. Submit-to-placed latency, executors off: one `POST /v1/jobs` per millisecond for
//!    10 s, each from its own task; the time from just before the POST until a watcher on
//!    the leader's replica first sees the job out of the queue.
//! 3. Submit-to-running, executors on: 200 process jobs `true`, one after another, from
//!    just before the POST until the leader's replica shows the attempt started.
//! 4. A container job vs `docker run --rm`: 20 rounds of `true` in a `FROM scratch`
//!    busybox image built here, each way, timed to the job's `completed` on the leader's
//!    replica and to the CLI's exit.
//!
//! "Executors off" (`Config::run_jobs = false`) means dispatched jobs are placed and left
//! alone, so figures 1 and 2 are the control plane only; those clusters also lift
//! `max_running` so the work limit does not cap placements. All clocks are this process's.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shoal_daemon::testsuite::{Cluster, wait_until};
use shoal_daemon::tls::ApiTls;
use shoal_daemon::{Node, Timings};
use shoal_protocol::api::SubmitJobResponse;
use shoal_protocol::{FleetState, JobId, JobRecord, JobRequest, JobState};

// The allocator shoald runs on, so the figures are shoald's.
#[global_allocator]
static ALLOCATOR: shoal_daemon::Allocator = shoal_daemon::Allocator;

#[path = "common/docker.rs"]
mod docker;

const THROUGHPUT_JOBS: usize = 50_000;
const BATCH: usize = 1_000;
const BATCHES_IN_FLIGHT: usize = 4;
const STEADY_RATE: u64 = 1_000;
const STEADY_SECS: u64 = 10;
const SEQUENTIAL_JOBS: usize = 200;
const DOCKER_ROUNDS: usize = 20;
/// Rounds run first and not counted, in figures 3 and 4.
const WARMUP: usize = 3;
/// The image figure 4 builds, runs and removes.
const IMAGE: &str = "shoal-bench-busybox:local";
/// No single wait (a job's state, a phase's end) lasts longer than this.
const WAIT_CAP: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    docker::require_engine("bench_jobs")?;
    let image = docker::Image::build(IMAGE)?;
    let http = shoal_daemon::testsuite::http_client_builder()
        .default_headers(shoal_daemon::testsuite::keyed_headers())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut table = Table::default();
    // Figure numbers given as arguments run only those figures.
    let only: Vec<String> = std::env::args().skip(1).collect();
    let run = |figure: &str| only.is_empty() || only.iter().any(|f| f == figure);

    if run("1") {
        let cluster = control_plane_cluster(ApiTls::Fleet).await?;
        placement_throughput(&cluster, &http, "", &mut table).await?;
        cluster.shutdown().await;
    }
    // Figure 1 again over plain HTTP (`--insecure-http`): what TLS costs it.
    if run("1-http") {
        let cluster = control_plane_cluster(ApiTls::Off).await?;
        placement_throughput(&cluster, &http, " (http)", &mut table).await?;
        cluster.shutdown().await;
    }
    if run("2") {
        let cluster = control_plane_cluster(ApiTls::Fleet).await?;
        steady_latency(&cluster, &http, &mut table).await?;
        cluster.shutdown().await;
    }
    if run("3") || run("4") {
        let cluster = Cluster::start_with(3, bench_timings()).await?;
        let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
        let node = cluster.node(leader).clone();
        let api = cluster.api(leader);
        if run("3") {
            submit_to_running(&node, &api, &http, &mut table).await?;
        }
        if run("4") {
            container_vs_docker_run(&node, &api, &http, &image, &mut table).await?;
        }
        cluster.shutdown().await;
    }
    drop(image);

    table.print();
    Ok(())
}

/// [`Timings::fast`], but with the production snapshot interval: the fast one (every 200
/// entries) has every node copy and write the whole state several times a second here.
fn bench_timings() -> Timings {
    Timings {
        snapshot_every_logs: Timings::default().snapshot_every_logs,
        ..Timings::fast()
    }
}

/// Three voters that place jobs but run none, with no work limit that matters; the API
/// speaks `tls`.
async fn control_plane_cluster(tls: ApiTls) -> anyhow::Result<Cluster> {
    Cluster::start_configured(3, bench_timings(), move |config| {
        config.max_running = 1_000_000;
        config.run_jobs = false;
        config.api_tls = tls.clone();
    })
    .await
}

/// Figure 1: jobs submitted and placed per second.
async fn placement_throughput(
    cluster: &Cluster,
    http: &reqwest::Client,
    over: &str,
    table: &mut Table,
) -> anyhow::Result<()> {
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    let node = cluster.node(leader).clone();
    let url = format!("{}/v1/jobs/batch", cluster.api(leader));
    let body = serde_json::json!({ "jobs": vec![JobRequest::new(["true"]); BATCH] });
    let batches = THROUGHPUT_JOBS / BATCH;
    let next = Arc::new(AtomicUsize::new(0));

    let start = Instant::now();
    let senders: Vec<_> = (0..BATCHES_IN_FLIGHT)
        .map(|_| {
            let (http, url, body, next) = (http.clone(), url.clone(), body.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < batches {
                    let answer: HashMap<String, Vec<SubmitJobResponse>> =
                        post(&http, &url, &body).await?.json().await?;
                    anyhow::ensure!(answer["jobs"].len() == BATCH, "a batch lost jobs");
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for sender in senders {
        sender.await??;
    }
    let submitted = start.elapsed();
    let placed = wait_for_state(&node, "every job placed", |state| {
        state.jobs.len() == THROUGHPUT_JOBS
            && state.jobs.values().all(|job| job.state != JobState::Queued)
    })
    .await?;
    let placed = placed - start;
    let mut per_machine = HashMap::new();
    node.fleet.read(|state| {
        for attempt in state.jobs.values().filter_map(|job| job.attempts.last()) {
            *per_machine.entry(attempt.machine).or_insert(0) += 1;
        }
    });
    let per_machine: Vec<usize> = per_machine.into_values().collect();
    println!("   placements per machine: {per_machine:?}");
    let per_sec = |d: Duration| THROUGHPUT_JOBS as f64 / d.as_secs_f64();
    println!(
        "1. {THROUGHPUT_JOBS} jobs: all submits answered after {:.2} s ({:.0}/s), all placed after {:.2} s",
        submitted.as_secs_f64(),
        per_sec(submitted),
        placed.as_secs_f64()
    );
    let rate = per_sec(placed);
    let figure = format!("1 submitted+placed/s, executors off{over}");
    table.check(
        &figure,
        THROUGHPUT_JOBS,
        format!("{rate:.0}/s"),
        ">= 10000/s",
        rate >= 1e4,
    );
    Ok(())
}

/// Figure 2: submit-to-placed latency at a steady rate.
async fn steady_latency(
    cluster: &Cluster,
    http: &reqwest::Client,
    table: &mut Table,
) -> anyhow::Result<()> {
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    let node = cluster.node(leader).clone();
    let url = format!("{}/v1/jobs", cluster.api(leader));
    let (expected_tx, expected) = tokio::sync::watch::channel(None);
    let watcher = tokio::spawn(watch_placements(node, expected));
    let (sent, errors, paced) = paced_submits(http, &url).await?;
    expected_tx.send_replace(Some(sent.len()));
    let seen = watcher.await??;
    println!(
        "2. {} submits in {:.2} s ({:.0}/s), {errors} failed, {} seen placed",
        sent.len() + errors,
        paced.as_secs_f64(),
        (sent.len() + errors) as f64 / paced.as_secs_f64(),
        seen.len()
    );
    print_windows(&sent, &seen);
    let mut latencies: Vec<Duration> = sent.iter().filter_map(|s| s.placed(&seen)).collect();
    latencies.sort();
    anyhow::ensure!(latencies.len() == sent.len(), "some jobs were never placed");
    let (n, p99) = (latencies.len(), percentile(&latencies, 99));
    table.info(
        "2 submit->placed p50 at 1000/s",
        n,
        ms(percentile(&latencies, 50)),
    );
    let met = p99 < Duration::from_millis(50);
    table.check("  submit->placed p99 at 1000/s", n, ms(p99), "< 50 ms", met);
    Ok(())
}

/// Submits `STEADY_RATE` jobs a second for `STEADY_SECS`, each POST from its own task so a
/// slow answer never delays the next submit. Returns the answered submits, the number that
/// failed, and how long the pacing took.
async fn paced_submits(
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<(Vec<Submit>, usize, Duration)> {
    let total = STEADY_RATE * STEADY_SECS;
    let period = Duration::from_secs(1) / STEADY_RATE as u32;
    let start = tokio::time::Instant::now();
    let mut posts = Vec::with_capacity(total as usize);
    for i in 0..total {
        tokio::time::sleep_until(start + period * i as u32).await;
        let (http, url) = (http.clone(), url.to_string());
        posts.push(tokio::spawn(async move {
            let sent = Instant::now();
            let job = submit(&http, &url, &JobRequest::new(["true"])).await?;
            let answered = Instant::now();
            anyhow::Ok(Submit {
                job,
                sent,
                answered,
            })
        }));
    }
    let paced = start.elapsed();
    let (mut sent, mut errors) = (Vec::with_capacity(posts.len()), 0);
    for post in posts {
        match post.await? {
            Ok(submit) => sent.push(submit),
            Err(err) => {
                errors += 1;
                if errors == 1 {
                    eprintln!("submit failed: {err:#}");
                }
            }
        }
    }
    Ok((sent, errors, paced))
}

/// One job of figure 2: when its POST went out and came back.
struct Submit {
    job: JobId,
    sent: Instant,
    answered: Instant,
}

impl Submit {
    fn placed(&self, seen: &HashMap<JobId, Instant>) -> Option<Duration> {
        Some(seen.get(&self.job)?.saturating_duration_since(self.sent))
    }
}

/// Figure 2 by 2-second window of submission: where the time goes as jobs pile up.
fn print_windows(submits: &[Submit], seen: &HashMap<JobId, Instant>) {
    let Some(first) = submits.iter().map(|s| s.sent).min() else {
        return;
    };
    let window = Duration::from_secs(2);
    for w in 0..STEADY_SECS.div_ceil(2) as u32 {
        let (from, to) = (window * w, window * (w + 1));
        let in_window = || {
            submits
                .iter()
                .filter(move |s| (from..to).contains(&(s.sent - first)))
        };
        let mut answered: Vec<Duration> = in_window().map(|s| s.answered - s.sent).collect();
        let mut placed: Vec<Duration> = in_window().filter_map(|s| s.placed(seen)).collect();
        answered.sort();
        placed.sort();
        println!(
            "   {:>2}-{:<2} s: POST answered p50 {:>9} p99 {:>9}; placed p50 {:>9} p99 {:>9}",
            from.as_secs(),
            to.as_secs(),
            ms(percentile(&answered, 50)),
            ms(percentile(&answered, 99)),
            ms(percentile(&placed, 50)),
            ms(percentile(&placed, 99)),
        );
    }
}

/// Records when `node`'s replica first shows each job out of the queue, until it has seen
/// as many as `expected` says (set once every submit was answered).
async fn watch_placements(
    node: Arc<Node>,
    mut expected: tokio::sync::watch::Receiver<Option<usize>>,
) -> anyhow::Result<HashMap<JobId, Instant>> {
    let mut applied = node.fleet.applied();
    let mut seen = HashMap::new();
    // Every job below the cursor has been seen; the scan starts there.
    let mut cursor = JobId(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(STEADY_SECS) + WAIT_CAP;
    loop {
        node.fleet
            .read(|state| note_placed(state, &mut cursor, &mut seen, Instant::now()));
        if expected.borrow().is_some_and(|n| seen.len() >= n) {
            return Ok(seen);
        }
        tokio::select! {
            _ = applied.changed() => {}
            _ = expected.changed() => {}
            _ = tokio::time::sleep_until(deadline) => anyhow::bail!("jobs still queued after {WAIT_CAP:?}"),
        }
    }
}

/// Notes `now` for every job at or after `cursor` that has left the queue, and moves the
/// cursor past the ones seen in a row.
fn note_placed(
    state: &FleetState,
    cursor: &mut JobId,
    seen: &mut HashMap<JobId, Instant>,
    now: Instant,
) {
    let mut in_a_row = true;
    for (id, job) in state.jobs.range(*cursor..) {
        let placed = job.state != JobState::Queued;
        if placed {
            seen.entry(*id).or_insert(now);
        }
        in_a_row &= placed;
        if in_a_row {
            *cursor = JobId(id.0 + 1);
        }
    }
}

/// Figure 3: submit-to-running of a process job `true`, one at a time.
async fn submit_to_running(
    node: &Node,
    api: &str,
    http: &reqwest::Client,
    table: &mut Table,
) -> anyhow::Result<()> {
    let url = format!("{api}/v1/jobs");
    let (mut running, mut completed) = (Vec::new(), Vec::new());
    for round in 0..WARMUP + SEQUENTIAL_JOBS {
        let sent = Instant::now();
        let id = submit(http, &url, &JobRequest::new(["true"])).await?;
        let started = wait_for_job(node, id, |job| {
            job.attempts
                .first()
                .is_some_and(|a| a.started_at_ms.is_some())
        })
        .await?;
        let done = wait_for_job(node, id, |job| job.state == JobState::Completed).await?;
        if round >= WARMUP {
            running.push(started - sent);
            completed.push(done - sent);
        }
    }
    running.sort();
    completed.sort();
    let (n, p50) = (running.len(), percentile(&running, 50));
    let met = p50 < Duration::from_millis(50);
    table.check(
        "3 submit->running p50, process true",
        n,
        ms(p50),
        "< 50 ms",
        met,
    );
    table.info("  submit->running p99", n, ms(percentile(&running, 99)));
    table.info("  submit->completed p50", n, ms(percentile(&completed, 50)));
    Ok(())
}

/// Figure 4: a container job against `docker run --rm` of the same image, alternating.
async fn container_vs_docker_run(
    node: &Node,
    api: &str,
    http: &reqwest::Client,
    image: &docker::Image,
    table: &mut Table,
) -> anyhow::Result<()> {
    wait_until(Duration::from_secs(10), "a machine labelled docker", || {
        node.fleet
            .read(|state| {
                state
                    .machines
                    .values()
                    .any(|m| m.labels().get("docker").is_some())
            })
            .then_some(())
    })
    .await?;
    let url = format!("{api}/v1/jobs");
    let mut spec = JobRequest::new(["true"]);
    spec.image = Some(image.tag().to_string());
    spec.required_labels.insert("docker".into(), "true".into());

    let (mut job_times, mut cli_times) = (Vec::new(), Vec::new());
    for round in 0..WARMUP + DOCKER_ROUNDS {
        // Alternate which goes first, so a drift in the machine's load hits both alike.
        let job_first = round % 2 == 0;
        let mut job_time = Duration::ZERO;
        let mut cli_time = Duration::ZERO;
        for job_turn in [job_first, !job_first] {
            if job_turn {
                let sent = Instant::now();
                let id = submit(http, &url, &spec).await?;
                job_time =
                    wait_for_job(node, id, |job| job.state == JobState::Completed).await? - sent;
            } else {
                cli_time = image.run_true().await?;
            }
        }
        if round >= WARMUP {
            job_times.push(job_time);
            cli_times.push(cli_time);
        }
    }
    job_times.sort();
    cli_times.sort();
    let (job_p50, cli_p50) = (percentile(&job_times, 50), percentile(&cli_times, 50));
    let ratio = job_p50.as_secs_f64() / cli_p50.as_secs_f64();
    let n = DOCKER_ROUNDS;
    table.info("4 container job p50", n, ms(job_p50));
    table.info("  container job p90", n, ms(percentile(&job_times, 90)));
    table.info("  docker run --rm p50", n, ms(cli_p50));
    table.info("  docker run --rm p90", n, ms(percentile(&cli_times, 90)));
    let ratio_text = format!("{ratio:.2}x");
    table.check(
        "  job / docker run (p50s)",
        n,
        ratio_text,
        "<= 1.2x",
        ratio <= 1.2,
    );
    Ok(())
}

/// POSTs `body` as JSON; any status but 2xx is an error.
async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> anyhow::Result<reqwest::Response> {
    let response = http.post(url).json(body).send().await?;
    let status = response.status();
    anyhow::ensure!(
        status.is_success(),
        "HTTP {status}: {}",
        response.text().await?
    );
    Ok(response)
}

/// Submits one job through `POST /v1/jobs` at `url`.
async fn submit(http: &reqwest::Client, url: &str, spec: &JobRequest) -> anyhow::Result<JobId> {
    let body = serde_json::to_value(spec)?;
    let answer: SubmitJobResponse = post(http, url, &body).await?.json().await?;
    Ok(answer.job.id)
}

/// The instant `node`'s replica first satisfies `done` (checked on every applied entry).
async fn wait_for_state(
    node: &Node,
    what: &str,
    mut done: impl FnMut(&FleetState) -> bool,
) -> anyhow::Result<Instant> {
    let mut applied = node.fleet.applied();
    tokio::time::timeout(WAIT_CAP, async {
        loop {
            if node.fleet.read(&mut done) {
                return Instant::now();
            }
            let _ = applied.changed().await;
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no {what} after {WAIT_CAP:?}"))
}

/// The instant `node`'s replica first shows job `id` satisfying `done`; a job that ends
/// any other way is an error.
async fn wait_for_job(
    node: &Node,
    id: JobId,
    done: impl Fn(&JobRecord) -> bool,
) -> anyhow::Result<Instant> {
    let mut failed = None;
    let at = wait_for_state(node, &format!("job {id} done"), |state| {
        let Some(job) = state.jobs.get(&id) else {
            return false;
        };
        if !done(job) && job.state.is_finished() {
            failed = Some(format!("{} ({:?})", job.state, job.error));
        }
        failed.is_some() || done(job)
    })
    .await?;
    match failed {
        Some(how) => anyhow::bail!("job {id} ended {how}"),
        None => Ok(at),
    }
}

/// The nearest-rank `q`th percentile of sorted `values`.
fn percentile(values: &[Duration], q: usize) -> Duration {
    let i = (values.len() * q / 100).min(values.len().saturating_sub(1));
    values.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The results, printed at the end: figure, samples, measured, target, met.
#[derive(Default)]
struct Table(Vec<(String, usize, String, String, &'static str)>);

impl Table {
    /// A figure with a target.
    fn check(&mut self, figure: &str, samples: usize, value: String, target: &str, met: bool) {
        let met = if met { "yes" } else { "NO" };
        self.0
            .push((figure.into(), samples, value, target.into(), met));
    }

    /// A figure shown for context, with no target of its own.
    fn info(&mut self, figure: &str, samples: usize, value: String) {
        self.0
            .push((figure.into(), samples, value, String::new(), ""));
    }

    fn print(&self) {
        println!();
        println!(
            "{:<38} {:>7} {:>11} {:>11} {:>4}",
            "figure", "samples", "measured", "target", "met"
        );
        for (figure, samples, value, target, met) in &self.0 {
            println!("{figure:<38} {samples:>7} {value:>11} {target:>11} {met:>4}");
        }
    }
}
