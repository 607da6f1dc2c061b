//! Random job command sequences: replicas agree, rejections change nothing, and the
//! records keep their shape (attempt numbers, failure counts, finished jobs frozen).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn job_id() -> impl Strategy<Value = JobId> {
    (1u64..24).prop_map(JobId)
}

fn machine() -> impl Strategy<Value = MachineId> {
    (1u64..4).prop_map(MachineId)
}

fn spec() -> impl Strategy<Value = JobSpec> {
    (
        prop::option::weighted(0.3, prop::sample::select(vec!["a", "b"])),
        prop_oneof![
            6 => Just(None),
            1 => Just(Some("all_online")),
            1 => Just(Some("0000000000000002")),
        ],
        1u32..4,
        prop::bool::weighted(0.1),
    )
        .prop_map(|(key, agent, max_attempts, invalid)| {
            let mut spec = JobSpec::new(if invalid { vec![] } else { vec!["run"] });
            spec.idempotency_key = key.map(str::to_string);
            spec.agent_id = agent.map(str::to_string);
            spec.max_attempts = max_attempts;
            spec.queue_timeout_seconds = 5;
            spec
        })
}

fn report() -> impl Strategy<Value = JobReport> {
    prop_oneof![
        Just(JobReport::Running),
        (0i32..3).prop_map(|exit_code| JobReport::Exited { exit_code }),
        Just(JobReport::Failed {
            error: "boom".into()
        }),
    ]
}

/// A command stamped at time 0; the test moves it to its place in the sequence.
fn command() -> impl Strategy<Value = Command> {
    let at_ms = 0;
    prop_oneof![
        3 => spec().prop_map(move |spec| Command::SubmitJob { spec: Box::new(spec), at_ms }),
        4 => prop::collection::vec((job_id(), 1u32..4, machine()), 0..4).prop_map(
            move |placements| Command::Dispatch {
                placements: placements
                    .into_iter()
                    .map(|(job, attempt, machine)| Placement { job, attempt, machine })
                    .collect(),
                at_ms,
            }
        ),
        4 => (job_id(), 1u32..4, report()).prop_map(move |(job, attempt, report)| {
            Command::ReportJob { job, attempt, report, at_ms }
        }),
        1 => job_id().prop_map(move |job| Command::CancelJob { job, at_ms }),
        1 => (job_id(), 1u32..4).prop_map(move |(job, attempt)| Command::RequeueJob {
            job,
            attempt,
            reason: "lost".into(),
            at_ms,
        }),
        1 => job_id().prop_map(move |job| Command::TimeOutJob { job, at_ms }),
        1 => prop::collection::vec((job_id(), "[a-z]{1,4}"), 0..3)
            .prop_map(|reasons| Command::SetQueueReasons { reasons }),
        1 => (job_id(), 1u32..4, 0u64..5_000).prop_map(move |(job, attempt, micro_usd)| {
            Command::ReportCost { job, attempt, micro_usd, report_id: None, at_ms }
        }),
        1 => Just(Command::PruneJobs { finished_before_ms: 0 }),
    ]
}

fn fleet() -> Fleet {
    Fleet::new(&[
        (M1, MachineStatus::Online, &["cost_per_hour=1.5"]),
        (M2, MachineStatus::Online, &[]),
        (MachineId(3), MachineStatus::Offline, &[]),
    ])
}

fn check_shape(state: &FleetState) -> Result<(), TestCaseError> {
    for job in state.jobs.values() {
        for (i, attempt) in job.attempts.iter().enumerate() {
            prop_assert_eq!(attempt.number as usize, i + 1, "job {}", job.id);
            let last = i + 1 == job.attempts.len();
            let open = attempt.finished_at_ms.is_none();
            prop_assert!(
                !open || (last && job.state.is_on_machine()),
                "job {} has an open attempt {} while {}",
                job.id,
                attempt.number,
                job.state
            );
        }
        if !job.is_parent() {
            let open = job
                .attempts
                .last()
                .is_some_and(|a| a.finished_at_ms.is_none());
            prop_assert_eq!(job.state.is_on_machine(), open, "job {}", job.id);
        }
        prop_assert!(job.failures <= job.spec.max_attempts);
        prop_assert!(job.id.0 < state.next_job_id);
        for child in &job.children {
            prop_assert_eq!(state.jobs[child].parent, Some(job.id));
        }
        if job.is_parent() {
            prop_assert!(job.attempts.is_empty());
        }
    }
    let mut rebuilt = state.clone();
    rebuilt.rebuild_indexes();
    prop_assert_eq!(
        &rebuilt.queued_jobs,
        &state.queued_jobs,
        "the queued-jobs index drifted"
    );
    prop_assert_eq!(
        &rebuilt.placed_jobs,
        &state.placed_jobs,
        "the placed-jobs index drifted"
    );
    prop_assert_eq!(
        &rebuilt.finished_jobs,
        &state.finished_jobs,
        "the finished-jobs index drifted"
    );
    prop_assert_eq!(
        &rebuilt.running,
        &state.running,
        "the running-spend index drifted"
    );
    prop_assert_eq!(&rebuilt.costs, &state.costs, "the ledger's totals drifted");
    for (org, keys) in &state.idempotency {
        for (key, id) in keys {
            let spec = &state.jobs[id].spec;
            prop_assert_eq!((&spec.org, spec.idempotency_key.as_ref()), (org, Some(key)));
        }
    }
    Ok(())
}

/// Moves the command to `now`: the leader's clock moves forward, so backoffs and queue
/// timeouts pass within a sequence.
fn set_time(cmd: &mut Command, now: u64) {
    match cmd {
        Command::SubmitJob { at_ms, .. }
        | Command::Dispatch { at_ms, .. }
        | Command::ReportJob { at_ms, .. }
        | Command::CancelJob { at_ms, .. }
        | Command::RequeueJob { at_ms, .. }
        | Command::TimeOutJob { at_ms, .. }
        | Command::ReportCost { at_ms, .. } => *at_ms = now,
        // Forgets what finished more than a few commands ago.
        Command::PruneJobs { finished_before_ms } => {
            *finished_before_ms = now.saturating_sub(3_000)
        }
        _ => {}
    }
}

proptest! {
    #[test]
    fn job_commands_keep_the_state_sound(cmds in prop::collection::vec(command(), 0..60)) {
        let (mut a, mut b) = (fleet(), fleet());
        let mut finished: BTreeMap<JobId, JobRecord> = BTreeMap::new();
        for (i, mut cmd) in cmds.into_iter().enumerate() {
            set_time(&mut cmd, i as u64 * 700);
            let before = frame::encode(&a.state).unwrap();
            let left = a.apply(cmd.clone());
            let right = b.apply(cmd);
            prop_assert_eq!(&left, &right);
            if matches!(left, Response::Rejected { .. }) {
                prop_assert_eq!(frame::encode(&a.state).unwrap(), before);
            }
            // A finished job never changes; a prune may forget it.
            finished.retain(|id, _| a.state.jobs.contains_key(id));
            for (id, job) in &finished {
                prop_assert_eq!(&a.state.jobs[id], job, "a finished job changed");
            }
            for job in a.state.jobs.values().filter(|j| j.state.is_finished()) {
                finished.entry(job.id).or_insert_with(|| job.clone());
            }
            check_shape(&a.state)?;
        }
        prop_assert_eq!(frame::encode(&a.state).unwrap(), frame::encode(&b.state).unwrap());
    }
}
