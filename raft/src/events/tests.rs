//! Deriving events: a job's life, batches and fan-outs here; machines, operators' changes,
//! keys, tokens and the audit log in [`fleet`].

use shoal_protocol::{JobId, JobReport, JobSpec, MachineId, MachineInfo, MachineStatus, Placement};

use super::*;

mod fleet;

const M1: MachineId = MachineId(1);
const M2: MachineId = MachineId(2);

/// A fleet applied twice: with events, and with plain `apply` to check they agree.
struct Fleet {
    state: FleetState,
    plain: FleetState,
    index: u64,
}

impl Fleet {
    fn new() -> Self {
        Fleet {
            state: FleetState::default(),
            plain: FleetState::default(),
            index: 0,
        }
    }

    /// Two ONLINE machines, `m1` and `m2`.
    fn online() -> Self {
        let mut fleet = Fleet::new();
        for id in [M1, M2] {
            fleet.apply(upsert(id, "1.0"));
            fleet.apply(status(id, MachineStatus::Online));
        }
        fleet
    }

    /// Applies `cmd` as the next entry; its events.
    fn apply(&mut self, cmd: Command) -> Vec<Event> {
        self.index += 1;
        let ctx = ApplyCtx {
            log_index: self.index,
        };
        let expected = apply(&mut self.plain, cmd.clone(), &ctx);
        let mut events = Vec::new();
        let response = apply_with_events(&mut self.state, cmd, &ctx, &mut events);
        assert_eq!(response, expected, "the same response as apply");
        assert_eq!(self.state, self.plain, "the same state as apply");
        assert_eq!(self.state.queued_jobs, self.plain.queued_jobs);
        assert_eq!(self.state.placed_jobs, self.plain.placed_jobs);
        for (n, event) in events.iter().enumerate() {
            assert_eq!((event.index, event.seq as usize), (self.index, n));
        }
        events
    }

    fn submit(&mut self, spec: JobSpec) -> (JobId, Vec<Event>) {
        let events = self.apply(Command::SubmitJob {
            spec: Box::new(spec),
            at_ms: 10,
        });
        (JobId(self.index), events)
    }
}

fn upsert(id: MachineId, version: &str) -> Command {
    Command::UpsertMachine {
        info: Box::new(MachineInfo {
            id,
            name: format!("m{}", id.0),
            version: version.to_string(),
            ..MachineInfo::default()
        }),
        at_ms: 1,
    }
}

fn status(id: MachineId, status: MachineStatus) -> Command {
    Command::SetStatus {
        id,
        status,
        last_heartbeat_ms: 2,
        at_ms: 2,
    }
}

fn dispatch(job: JobId, attempt: u32, machine: MachineId) -> Command {
    dispatch_at(job, attempt, machine, 20)
}

fn dispatch_at(job: JobId, attempt: u32, machine: MachineId, at_ms: u64) -> Command {
    Command::Dispatch {
        placements: vec![Placement {
            job,
            attempt,
            machine,
        }],
        at_ms,
    }
}

fn report(job: JobId, attempt: u32, report: JobReport) -> Command {
    Command::ReportJob {
        job,
        attempt,
        report,
        at_ms: 30,
    }
}

fn kinds(events: &[Event]) -> Vec<(&str, Option<&str>)> {
    events
        .iter()
        .map(|e| (e.kind.as_str(), e.subject.as_deref()))
        .collect()
}

#[test]
fn a_job_tells_its_life_in_order() {
    let mut fleet = Fleet::online();
    let (id, events) = fleet.submit(JobSpec::new(["true"]));
    let subject = id.to_string();
    assert_eq!(
        kinds(&events),
        [(kind::JOB_SUBMITTED, Some(subject.as_str()))]
    );
    let submitted = &events[0];
    assert_eq!(
        (submitted.topic, submitted.at_ms, submitted.index),
        (Topic::Job, Some(10), id.0)
    );
    assert_eq!(submitted.detail.value()["state"], json!("queued"));
    assert_eq!(submitted.detail.value()["command"], json!(["true"]));

    let events = fleet.apply(dispatch(id, 1, M2));
    assert_eq!(
        kinds(&events),
        [(kind::JOB_DISPATCHED, Some(subject.as_str()))]
    );
    assert_eq!(
        events[0].detail.value(),
        json!({"state": "dispatched", "org": "default", "attempt": 1, "machine": "0000000000000002"})
    );
    let events = fleet.apply(report(id, 1, JobReport::Running));
    assert_eq!(
        kinds(&events),
        [(kind::JOB_RUNNING, Some(subject.as_str()))]
    );
    // A repeated report changes nothing and says nothing.
    assert!(fleet.apply(report(id, 1, JobReport::Running)).is_empty());
    let events = fleet.apply(report(id, 1, JobReport::Exited { exit_code: 0 }));
    assert_eq!(
        kinds(&events),
        [(kind::JOB_FINISHED, Some(subject.as_str()))]
    );
    assert_eq!(events[0].at_ms, Some(30));
    assert_eq!(events[0].detail.value()["state"], json!("completed"));
    assert_eq!(events[0].detail.value()["exit_code"], json!(0));
    // A report on the finished job is rejected: no event.
    assert!(
        fleet
            .apply(report(id, 1, JobReport::Exited { exit_code: 0 }))
            .is_empty()
    );
}

#[test]
fn a_pull_is_told_once_before_the_job_runs() {
    let mut fleet = Fleet::online();
    let mut spec = JobSpec::new(["true"]);
    spec.image = Some("registry.lan/app:1".into());
    let (id, _) = fleet.submit(spec);
    fleet.apply(dispatch(id, 1, M2));
    let pulling = |image: &str| JobReport::Pulling {
        image: image.into(),
    };
    // Another image than the job's changes nothing.
    assert!(fleet.apply(report(id, 1, pulling("other:1"))).is_empty());
    let events = fleet.apply(report(id, 1, pulling("registry.lan/app:1")));
    assert_eq!(
        kinds(&events),
        [(kind::JOB_PULLING, Some(id.to_string().as_str()))]
    );
    assert_eq!(
        events[0].detail.value()["image"],
        json!("registry.lan/app:1")
    );
    assert_eq!(events[0].detail.value()["state"], json!("dispatched"));
    assert!(
        fleet
            .apply(report(id, 1, pulling("registry.lan/app:1")))
            .is_empty()
    );
    let events = fleet.apply(report(id, 1, JobReport::Running));
    assert_eq!(kinds(&events)[0].0, kind::JOB_RUNNING);
    assert_eq!(
        events[0].detail.value().get("image"),
        None,
        "the pull is over"
    );
    // Once it runs, a late pull report says nothing.
    assert!(
        fleet
            .apply(report(id, 1, pulling("registry.lan/app:1")))
            .is_empty()
    );
}

#[test]
fn failures_retry_then_fail_and_requeues_say_why() {
    let mut fleet = Fleet::online();
    let spec = JobSpec {
        max_attempts: 2,
        ..JobSpec::new(["false"])
    };
    let (id, _) = fleet.submit(spec);
    fleet.apply(dispatch(id, 1, M1));
    let events = fleet.apply(report(id, 1, JobReport::Exited { exit_code: 3 }));
    assert_eq!(events[0].kind, kind::JOB_RETRYING);
    let detail = events[0].detail.value();
    assert_eq!(detail["state"], json!("queued"));
    assert_eq!(detail["exit_code"], json!(3));
    assert_eq!(detail["attempt_error"], json!("exit code 3"));
    assert_eq!(detail["not_before_ms"], json!(30 + 1000));

    fleet.apply(dispatch_at(id, 2, M2, 5_000));
    let events = fleet.apply(Command::RequeueJob {
        job: id,
        attempt: 2,
        reason: "machine went STALE".into(),
        at_ms: 40,
    });
    assert_eq!(events[0].kind, kind::JOB_REQUEUED);
    assert_eq!(
        events[0].detail.value()["attempt_error"],
        json!("machine went STALE")
    );

    fleet.apply(dispatch_at(id, 3, M2, 5_000));
    let events = fleet.apply(report(id, 3, JobReport::Failed { error: "no".into() }));
    assert_eq!(events[0].kind, kind::JOB_FINISHED);
    assert_eq!(events[0].detail.value()["state"], json!("failed"));
    assert_eq!(events[0].detail.value()["error"], json!("no"));
}

#[test]
fn a_batch_numbers_its_events_and_skips_queue_reasons() {
    let mut fleet = Fleet::online();
    let events = fleet.apply(Command::Batch(vec![
        Command::SubmitJob {
            spec: Box::new(JobSpec::new(["a"])),
            at_ms: 10,
        },
        Command::SetQueueReasons {
            reasons: vec![(JobId(99), "nothing fits".into())],
        },
        Command::CancelJob {
            job: JobId(404),
            at_ms: 11,
        },
        Command::SubmitJob {
            spec: Box::new(JobSpec::new(["b"])),
            at_ms: 12,
        },
    ]));
    let index = fleet.index;
    // The second job of one entry takes the next id after the first.
    let (first, second) = (index.to_string(), (index + 1).to_string());
    assert_eq!(
        kinds(&events),
        [
            (kind::JOB_SUBMITTED, Some(first.as_str())),
            (kind::JOB_SUBMITTED, Some(second.as_str())),
        ]
    );
    assert_eq!(events[1].at_ms, Some(12));
    // Running then exiting within one entry: two events, in order.
    let id = JobId(index);
    fleet.apply(dispatch(id, 1, M1));
    let events = fleet.apply(Command::Batch(vec![
        report(id, 1, JobReport::Running),
        report(id, 1, JobReport::Exited { exit_code: 0 }),
    ]));
    assert_eq!(
        kinds(&events),
        [
            (kind::JOB_RUNNING, Some(first.as_str())),
            (kind::JOB_FINISHED, Some(first.as_str())),
        ]
    );
}

#[test]
fn a_fan_out_tells_children_before_their_parent() {
    let mut fleet = Fleet::online();
    let spec = JobSpec {
        agent_id: Some("all_online".into()),
        ..JobSpec::new(["uptime"])
    };
    let (parent, events) = fleet.submit(spec);
    let (p, c1, c2) = (
        parent.to_string(),
        (parent.0 + 1).to_string(),
        (parent.0 + 2).to_string(),
    );
    assert_eq!(
        kinds(&events),
        [
            (kind::JOB_SUBMITTED, Some(p.as_str())),
            (kind::JOB_SUBMITTED, Some(c1.as_str())),
            (kind::JOB_SUBMITTED, Some(c2.as_str())),
        ]
    );
    assert_eq!(
        events[0].detail.value()["children"],
        json!([parent.0 + 1, parent.0 + 2])
    );
    assert_eq!(events[1].detail.value()["parent"], json!(parent.0));

    // The first child leaving the queue sets the parent running.
    let events = fleet.apply(dispatch(JobId(parent.0 + 1), 1, M1));
    assert_eq!(
        kinds(&events),
        [
            (kind::JOB_DISPATCHED, Some(c1.as_str())),
            (kind::JOB_RUNNING, Some(p.as_str())),
        ]
    );
    assert!(
        events[1].detail.value().get("machine").is_none(),
        "a parent runs nowhere"
    );

    // Cancelling the parent: the queued child ends at once, the dispatched one is asked
    // to stop, the parent waits for it.
    let events = fleet.apply(Command::CancelJob {
        job: parent,
        at_ms: 50,
    });
    assert_eq!(
        kinds(&events),
        [
            (kind::JOB_CANCEL_REQUESTED, Some(c1.as_str())),
            (kind::JOB_FINISHED, Some(c2.as_str())),
            (kind::JOB_CANCEL_REQUESTED, Some(p.as_str())),
        ]
    );
    let events = fleet.apply(report(
        JobId(parent.0 + 1),
        1,
        JobReport::Exited { exit_code: 143 },
    ));
    assert_eq!(
        kinds(&events),
        [
            (kind::JOB_FINISHED, Some(c1.as_str())),
            (kind::JOB_FINISHED, Some(p.as_str())),
        ]
    );
    assert_eq!(events[1].detail.value()["state"], json!("cancelled"));

    let events = fleet.apply(Command::PruneJobs {
        finished_before_ms: 1_000,
    });
    assert_eq!(kinds(&events), [(kind::JOBS_PRUNED, None)]);
    assert_eq!(events[0].detail.value()["count"], json!(3));
    assert!(
        fleet
            .apply(Command::PruneJobs {
                finished_before_ms: 1_000
            })
            .is_empty()
    );
}
