//! Reports, retries, cancels, requeues and timeouts: what happens to a job after dispatch.

use super::*;

#[test]
fn reports_move_an_attempt_to_running_then_completed() {
    let mut fleet = Fleet::online();
    let id = fleet.submit(spec(), 1).id;
    fleet.dispatch(id, 1, M1, 2);
    let job = record(fleet.report(id, 1, JobReport::Running, 3));
    assert_eq!(
        (job.state, job.attempts[0].started_at_ms),
        (JobState::Running, Some(3))
    );
    // A repeated Running changes nothing.
    let again = record(fleet.report(id, 1, JobReport::Running, 4));
    assert_eq!(again, job);
    let done = record(fleet.report(id, 1, JobReport::Exited { exit_code: 0 }, 9));
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(
        (done.attempts[0].finished_at_ms, done.attempts[0].exit_code),
        (Some(9), Some(0))
    );
    let late = fleet.report(id, 1, JobReport::Running, 10);
    assert_rejected(&late, ErrorCode::Conflict, "already completed");
}

#[test]
fn a_report_for_another_attempt_is_ignored() {
    let mut fleet = Fleet::online();
    let id = fleet.submit(spec(), 1).id;
    let queued = fleet.report(id, 1, JobReport::Running, 2);
    assert_rejected(&queued, ErrorCode::Conflict, "stale attempt 1 of job");
    fleet.dispatch(id, 1, M1, 2);
    fleet.report(
        id,
        1,
        JobReport::Failed {
            error: "spawn failed".into(),
        },
        3,
    );
    fleet.dispatch(id, 2, M2, 4_000);
    let before = fleet.state.clone();
    let stale = fleet.report(id, 1, JobReport::Exited { exit_code: 0 }, 5_000);
    assert_rejected(
        &stale,
        ErrorCode::Conflict,
        "the job is dispatched (attempt 2)",
    );
    assert_eq!(fleet.state, before);
    assert_eq!(
        fleet.report(JobId(999), 1, JobReport::Running, 1),
        Response::Rejected {
            code: ErrorCode::NotFound,
            message: "no job with id 999".into()
        }
    );
}

#[test]
fn failures_retry_with_a_growing_backoff_then_fail() {
    let mut fleet = Fleet::online();
    let id = fleet.submit(spec(), 0).id;
    fleet.dispatch(id, 1, M1, 0);
    let job = record(fleet.report(id, 1, JobReport::Exited { exit_code: 2 }, 100));
    assert_eq!(
        (job.state, job.failures, job.not_before_ms),
        (JobState::Queued, 1, 1_100)
    );
    assert_eq!(job.attempts[0].error.as_deref(), Some("exit code 2"));
    assert!(
        fleet.dispatch(id, 2, M1, 1_099).is_empty(),
        "placed during backoff"
    );
    fleet.dispatch(id, 2, M2, 1_100);
    let job = record(fleet.report(
        id,
        2,
        JobReport::Failed {
            error: "oom".into(),
        },
        2_000,
    ));
    assert_eq!((job.state, job.not_before_ms), (JobState::Queued, 4_000));
    fleet.dispatch(id, 3, M1, 4_000);
    let job = record(fleet.report(id, 3, JobReport::Exited { exit_code: 3 }, 5_000));
    assert_eq!((job.state, job.failures), (JobState::Failed, 3));
    assert_eq!(job.error.as_deref(), Some("exit code 3"));
    let backoffs: Vec<u64> = (1..=9).map(backoff_ms).collect();
    assert_eq!(
        backoffs,
        [
            1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000
        ]
    );
}

#[test]
fn cancel_in_each_state() {
    let mut fleet = Fleet::online();
    let queued = fleet.submit(spec(), 1).id;
    let job = record(fleet.apply(Command::CancelJob {
        job: queued,
        at_ms: 2,
    }));
    assert_eq!((job.state, job.updated_at_ms), (JobState::Cancelled, 2));

    let dispatched = fleet.submit(spec(), 1).id;
    fleet.dispatch(dispatched, 1, M1, 2);
    let job = record(fleet.apply(Command::CancelJob {
        job: dispatched,
        at_ms: 3,
    }));
    assert_eq!(
        (job.state, job.cancel_requested),
        (JobState::Dispatched, true)
    );
    // The stopped attempt ends the job as cancelled, not retried.
    let job = record(fleet.report(
        dispatched,
        1,
        JobReport::Failed {
            error: "stopped".into(),
        },
        4,
    ));
    assert_eq!(job.state, JobState::Cancelled);

    let running = fleet.submit(spec(), 1).id;
    fleet.dispatch(running, 1, M1, 2);
    fleet.report(running, 1, JobReport::Running, 3);
    fleet.apply(Command::CancelJob {
        job: running,
        at_ms: 4,
    });
    assert_eq!(fleet.job(running).state, JobState::Running);
    let job = record(fleet.report(running, 1, JobReport::Exited { exit_code: 143 }, 5));
    assert_eq!(job.state, JobState::Cancelled);

    let finished = fleet.apply(Command::CancelJob {
        job: running,
        at_ms: 6,
    });
    assert_rejected(&finished, ErrorCode::Conflict, "already cancelled");
    let missing = fleet.apply(Command::CancelJob {
        job: JobId(999),
        at_ms: 6,
    });
    assert_rejected(&missing, ErrorCode::NotFound, "999");
}

#[test]
fn requeue_takes_the_attempt_back_without_counting_a_failure() {
    let mut fleet = Fleet::online();
    let mut once = spec();
    once.max_attempts = 1;
    let id = fleet.submit(once, 1).id;
    fleet.dispatch(id, 1, M1, 2);
    let requeue = |attempt| Command::RequeueJob {
        job: id,
        attempt,
        reason: "machine 0000000000000001 is STALE".into(),
        at_ms: 10,
    };
    let job = record(fleet.apply(requeue(1)));
    assert_eq!((job.state, job.failures), (JobState::Queued, 0));
    assert_eq!(
        job.attempts[0].error.as_deref(),
        Some("machine 0000000000000001 is STALE")
    );
    assert_eq!(job.attempts[0].finished_at_ms, Some(10));
    assert_rejected(
        &fleet.apply(requeue(1)),
        ErrorCode::Conflict,
        "stale attempt",
    );
    fleet.dispatch(id, 2, M2, 11);
    fleet.apply(Command::CancelJob { job: id, at_ms: 12 });
    assert_eq!(record(fleet.apply(requeue(2))).state, JobState::Cancelled);
}

#[test]
fn a_session_taken_back_from_its_machine_fails_saying_why() {
    let mut fleet = Fleet::online();
    let mut session = spec();
    session.kind = shoal_protocol::JobKind::Session;
    session.image = Some("busybox:local".into());
    let id = fleet.submit(session, 1).id;
    fleet.dispatch(id, 1, M1, 2);
    fleet.report(id, 1, JobReport::Running, 3);
    let job = record(fleet.apply(Command::RequeueJob {
        job: id,
        attempt: 1,
        reason: "machine m1 went DEAD".into(),
        at_ms: 10,
    }));
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error.as_deref(), Some("machine m1 went DEAD"));
    assert_eq!(job.attempts.len(), 1);
}

#[test]
fn a_job_taken_back_too_often_fails() {
    let mut fleet = Fleet::online();
    let id = fleet.submit(spec(), 1).id;
    for attempt in 1..=MAX_ATTEMPT_RECORDS as u32 {
        assert_eq!(fleet.dispatch(id, attempt, M1, 2), [id]);
        fleet.apply(Command::RequeueJob {
            job: id,
            attempt,
            reason: "never started".into(),
            at_ms: 3,
        });
    }
    let job = fleet.job(id);
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(
        job.error.as_deref(),
        Some("taken back from machines 32 times, last: never started")
    );
}

#[test]
fn only_a_job_queued_past_its_timeout_times_out() {
    let mut fleet = Fleet::online();
    let mut quick = spec();
    quick.queue_timeout_seconds = 10;
    let id = fleet.submit(quick.clone(), 1_000).id;
    let early = fleet.apply(Command::TimeOutJob {
        job: id,
        at_ms: 10_999,
    });
    assert_rejected(&early, ErrorCode::Conflict, "not yet waited");
    assert_eq!(queue_expired(&fleet.state, 10_999), []);
    assert_eq!(queue_expired(&fleet.state, 11_000), [id]);
    fleet.apply(Command::SetQueueReasons {
        reasons: vec![(id, "no ONLINE machine has label gpu=true".into())],
    });
    let job = record(fleet.apply(Command::TimeOutJob {
        job: id,
        at_ms: 11_000,
    }));
    assert_eq!(job.state, JobState::TimedOut);
    assert_eq!(
        job.error.as_deref(),
        Some("no machine took the job within 10 s: no ONLINE machine has label gpu=true")
    );
    let dispatched = fleet.submit(quick, 1_000).id;
    fleet.dispatch(dispatched, 1, M1, 1_000);
    let busy = fleet.apply(Command::TimeOutJob {
        job: dispatched,
        at_ms: 99_999,
    });
    assert_rejected(&busy, ErrorCode::Conflict, "is dispatched, not queued");
}

#[test]
fn queue_reasons_land_on_queued_jobs_only() {
    let mut fleet = Fleet::online();
    let waiting = fleet.submit(spec(), 1).id;
    let placed = fleet.submit(spec(), 1).id;
    fleet.dispatch(placed, 1, M1, 2);
    let reasons = vec![
        (
            waiting,
            "all matching machines are at their work limit".to_string(),
        ),
        (placed, "stale".to_string()),
        (JobId(999), "gone".to_string()),
    ];
    assert_eq!(changed_reasons(&fleet.state, &reasons), reasons[..1]);
    let response = fleet.apply(Command::SetQueueReasons {
        reasons: reasons.clone(),
    });
    assert_eq!(response, Response::Done);
    assert_eq!(
        fleet.job(waiting).queue_reason.as_deref(),
        Some(reasons[0].1.as_str())
    );
    assert_eq!(fleet.job(placed).queue_reason, None);
    assert!(changed_reasons(&fleet.state, &reasons).is_empty());
    // A dispatch clears the reason.
    fleet.dispatch(waiting, 1, M2, 3);
    assert_eq!(fleet.job(waiting).queue_reason, None);
}

#[test]
fn queries_find_work_by_machine_and_age() {
    let mut fleet = Fleet::online();
    let a = fleet.submit(spec(), 1).id;
    let b = fleet.submit(spec(), 1).id;
    let c = fleet.submit(spec(), 1).id;
    fleet.dispatch(a, 1, M1, 10);
    fleet.dispatch(b, 1, M1, 20);
    fleet.report(b, 1, JobReport::Running, 21);
    fleet.dispatch(c, 1, M2, 30);
    assert_eq!(running_on(&fleet.state, M1), [(a, 1), (b, 1)]);
    assert_eq!(running_on(&fleet.state, M2), [(c, 1)]);
    let held = held_on_machines(&fleet.state);
    let jobs = |m| held.get(&m).map(|h| h.jobs);
    assert_eq!((jobs(M1), jobs(M2)), (Some(2), Some(1)));
    assert_eq!(dispatched_before(&fleet.state, 29, 0), [(a, 1, false)]);
    assert_eq!(
        dispatched_before(&fleet.state, 30, 0),
        [(a, 1, false), (c, 1, false)]
    );
    // An attempt whose machine pulls its image waits for the longer cutoff.
    let pulling = JobReport::Pulling {
        image: "app:1".into(),
    };
    let d = fleet
        .submit(
            JobSpec {
                image: Some("app:1".into()),
                ..spec()
            },
            1,
        )
        .id;
    fleet.dispatch(d, 1, M2, 40);
    fleet.report(d, 1, pulling, 41);
    assert!(
        dispatched_before(&fleet.state, 50, 39)
            .iter()
            .all(|(job, ..)| *job != d)
    );
    assert!(dispatched_before(&fleet.state, 50, 40).contains(&(d, 1, true)));
}

#[test]
fn gpus_are_held_by_jobs_placed_or_running_until_they_finish() {
    let mut fleet = Fleet::online();
    let with_gpus = |n| {
        let mut spec = spec();
        spec.image = Some("trainer:local".into());
        spec.gpus = Some(n);
        spec
    };
    let a = fleet.submit(with_gpus(2), 1).id;
    let b = fleet.submit(with_gpus(1), 1).id;
    let c = fleet.submit(spec(), 1).id;
    fleet.dispatch(a, 1, M1, 10);
    fleet.dispatch(b, 1, M1, 11);
    fleet.report(b, 1, JobReport::Running, 12);
    fleet.dispatch(c, 1, M2, 13);
    let gpus = |fleet: &Fleet, m| held_on_machines(&fleet.state).get(&m).map(|h| h.gpus);
    assert_eq!((gpus(&fleet, M1), gpus(&fleet, M2)), (Some(3), Some(0)));
    fleet.report(b, 1, JobReport::Exited { exit_code: 0 }, 20);
    assert_eq!(gpus(&fleet, M1), Some(2));
}
