use std::time::Duration;

use shoal_gossip::{DropReason, GossipMode};
use shoal_protocol::{
    Command, FleetState, JobId, JobRecord, JobSpec, JobState, JobTarget, Labels, MachineId,
    MachineInfo, MachineRecord, MachineStatus, Placement, Response,
};

use super::{Metrics, QueueWaits, Scrape, method_label};

fn machine(id: u64, status: MachineStatus) -> MachineRecord {
    MachineRecord {
        info: MachineInfo {
            id: MachineId(id),
            ..MachineInfo::default()
        },
        operator_labels: Labels::default(),
        status,
        status_since_ms: 0,
        last_heartbeat_ms: 0,
        registered_at_ms: 0,
        drain: None,
    }
}

fn job(id: u64, state: JobState, submitted_at_ms: u64) -> JobRecord {
    let mut job = JobRecord::queued(
        JobId(id),
        JobSpec::new(["true"]),
        JobTarget::Any,
        submitted_at_ms,
        id,
    );
    job.state = state;
    job
}

fn state() -> FleetState {
    let mut state = FleetState::default();
    for (id, status) in [
        (1, MachineStatus::Online),
        (2, MachineStatus::Online),
        (3, MachineStatus::Dead),
    ] {
        state.machines.insert(MachineId(id), machine(id, status));
    }
    for (id, job_state) in [
        (10, JobState::Queued),
        (11, JobState::Queued),
        (12, JobState::Completed),
    ] {
        state.jobs.insert(JobId(id), job(id, job_state, 1_000));
    }
    state
}

fn dispatch(jobs: &[u64], at_ms: u64) -> Command {
    Command::Dispatch {
        placements: jobs
            .iter()
            .map(|id| Placement {
                job: JobId(*id),
                attempt: 1,
                machine: MachineId(1),
            })
            .collect(),
        at_ms,
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn the_exposition_shows_counts_raft_requests_and_dispatch_latency() {
    let mut scrape = Scrape::count(&state());
    scrape.term = 4;
    scrape.leader = true;
    scrape.commit_index = Some(41);
    scrape.last_applied = Some(39);
    scrape.gossip_mode = Some(GossipMode::Sealed);
    scrape.gossip_dropped = [(DropReason::Plain, 3), (DropReason::BadTag, 1)]
        .into_iter()
        .collect();

    let metrics = Metrics::default();
    let took = Duration::from_millis(3);
    metrics.request("/v1/jobs", "POST", 201, took);
    metrics.request("/v1/jobs", "POST", 201, took);
    metrics.request("/v1/jobs/{id}", "GET", 404, Duration::from_secs(20));
    let waits = QueueWaits::of(&state(), &dispatch(&[10, 11], 1_750));
    // Job 11's placement was stale when it applied: only job 10 waited 0.75 s.
    metrics.dispatched(waits, &Response::Jobs(vec![JobId(10)]));

    let text = metrics.encode(&scrape);
    let lines = lines(&text);
    for expected in [
        "# HELP shoal_machines Machines in the fleet state, by status.",
        "# TYPE shoal_machines gauge",
        "shoal_machines{status=\"ONLINE\"} 2",
        "shoal_machines{status=\"DEAD\"} 1",
        "shoal_machines{status=\"BUSY\"} 0",
        "# TYPE shoal_jobs gauge",
        "shoal_jobs{state=\"queued\"} 2",
        "shoal_jobs{state=\"completed\"} 1",
        "shoal_jobs{state=\"timed_out\"} 0",
        "shoal_raft_term 4",
        "shoal_raft_is_leader 1",
        "shoal_raft_commit_index 41",
        "shoal_raft_last_applied_index 39",
        "shoal_raft_apply_lag_entries 2",
        "# TYPE shoal_gossip_mode gauge",
        "shoal_gossip_mode{mode=\"plain\"} 0",
        "shoal_gossip_mode{mode=\"open\"} 0",
        "shoal_gossip_mode{mode=\"sealed\"} 1",
        "# TYPE shoal_gossip_datagrams_dropped_total counter",
        "shoal_gossip_datagrams_dropped_total{reason=\"plain\"} 3",
        "shoal_gossip_datagrams_dropped_total{reason=\"bad_tag\"} 1",
        "shoal_gossip_datagrams_dropped_total{reason=\"replayed\"} 0",
        "shoal_gossip_datagrams_dropped_total{reason=\"too_large_to_seal\"} 0",
        "# TYPE shoal_api_requests_total counter",
        "shoal_api_requests_total{route=\"/v1/jobs\",method=\"POST\",status=\"201\"} 2",
        "shoal_api_requests_total{route=\"/v1/jobs/{id}\",method=\"GET\",status=\"404\"} 1",
        "# TYPE shoal_api_request_duration_seconds histogram",
        "shoal_api_request_duration_seconds_bucket{route=\"/v1/jobs\",method=\"POST\",le=\"0.0025\"} 0",
        "shoal_api_request_duration_seconds_bucket{route=\"/v1/jobs\",method=\"POST\",le=\"0.005\"} 2",
        "shoal_api_request_duration_seconds_bucket{route=\"/v1/jobs\",method=\"POST\",le=\"10\"} 2",
        "shoal_api_request_duration_seconds_bucket{route=\"/v1/jobs\",method=\"POST\",le=\"+Inf\"} 2",
        "shoal_api_request_duration_seconds_count{route=\"/v1/jobs\",method=\"POST\"} 2",
        // Slower than the last bucket: counted in +Inf only.
        "shoal_api_request_duration_seconds_bucket{route=\"/v1/jobs/{id}\",method=\"GET\",le=\"10\"} 0",
        "shoal_api_request_duration_seconds_bucket{route=\"/v1/jobs/{id}\",method=\"GET\",le=\"+Inf\"} 1",
        "shoal_api_request_duration_seconds_sum{route=\"/v1/jobs/{id}\",method=\"GET\"} 20",
        "# TYPE shoal_job_dispatch_latency_seconds histogram",
        "shoal_job_dispatch_latency_seconds_bucket{le=\"0.5\"} 0",
        "shoal_job_dispatch_latency_seconds_bucket{le=\"1\"} 1",
        "shoal_job_dispatch_latency_seconds_bucket{le=\"+Inf\"} 1",
        "shoal_job_dispatch_latency_seconds_sum 0.75",
        "shoal_job_dispatch_latency_seconds_count 1",
    ] {
        assert!(lines.contains(&expected), "missing {expected:?} in\n{text}");
    }
    // Every sample belongs to the family whose HELP and TYPE came last.
    let mut family = "";
    for line in &lines {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            family = rest.split(' ').next().unwrap();
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|b| *b == family))
                .unwrap_or(name);
            assert_eq!(base, family, "{line} outside its family in\n{text}");
        }
    }
}

#[test]
fn a_fresh_node_has_no_indexes_and_no_lag() {
    let text = Metrics::default().encode(&Scrape::count(&FleetState::default()));
    let lines = lines(&text);
    assert!(
        lines.contains(&"shoal_machines{status=\"ONLINE\"} 0"),
        "{text}"
    );
    assert!(lines.contains(&"shoal_raft_apply_lag_entries 0"), "{text}");
    assert!(
        lines.contains(&"shoal_job_dispatch_latency_seconds_count 0"),
        "{text}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("shoal_raft_commit_index")),
        "an index before the first commit: {text}"
    );
}

#[test]
fn apply_lag_counts_entries_from_index_zero() {
    let lag = |commit_index, last_applied| {
        Scrape {
            commit_index,
            last_applied,
            ..Scrape::default()
        }
        .apply_lag()
    };
    assert_eq!(lag(None, None), 0);
    assert_eq!(lag(Some(0), None), 1);
    assert_eq!(lag(Some(5), Some(5)), 0);
    assert_eq!(lag(Some(5), Some(2)), 3);
    // openraft may report an applied index past the store's commit index for a moment.
    assert_eq!(lag(Some(2), Some(5)), 0);
}

#[test]
fn queue_waits_start_when_the_job_last_entered_the_queue() {
    let mut state = state();
    // Requeued at 5 s: measured from then, not from the submit.
    state.jobs.get_mut(&JobId(10)).unwrap().updated_at_ms = 5_000;
    // Failed once, retried no sooner than 8 s: the backoff is not dispatch latency.
    state.jobs.get_mut(&JobId(11)).unwrap().not_before_ms = 8_000;
    let time_out = Command::TimeOutJob {
        job: JobId(12),
        at_ms: 9_000,
    };
    let waits = QueueWaits::of(&state, &dispatch(&[10, 11, 99], 9_000));
    assert_eq!(
        waits,
        QueueWaits(vec![(JobId(10), 4_000), (JobId(11), 1_000)])
    );
    // Only a Dispatch observes waits, and only those of the jobs it places.
    assert_eq!(QueueWaits::of(&state, &time_out), QueueWaits::default());
    let other = QueueWaits::of(&state, &dispatch(&[11], 9_000));
    assert_eq!(other, QueueWaits(vec![(JobId(11), 1_000)]));
}

#[test]
fn a_rejected_dispatch_observes_nothing() {
    let metrics = Metrics::default();
    let waits = QueueWaits(vec![(JobId(10), 100)]);
    let refused = Response::Rejected {
        code: shoal_protocol::ErrorCode::Conflict,
        message: "no".into(),
    };
    metrics.dispatched(waits, &refused);
    let text = metrics.encode(&Scrape::default());
    assert!(
        lines(&text).contains(&"shoal_job_dispatch_latency_seconds_count 0"),
        "{text}"
    );
}

#[test]
fn label_values_are_escaped_and_methods_bounded() {
    let metrics = Metrics::default();
    metrics.request("/a\"b\\c\nd", "GET", 200, Duration::ZERO);
    let text = metrics.encode(&Scrape::default());
    assert!(
        text.contains(
            r#"shoal_api_requests_total{route="/a\"b\\c\nd",method="GET",status="200"} 1"#
        ),
        "{text}"
    );
    assert_eq!(method_label(&axum::http::Method::POST), "POST");
    let invented = axum::http::Method::from_bytes(b"BREW").unwrap();
    assert_eq!(method_label(&invented), "OTHER");
}
