//! Every job rule of `apply`, one test each: submit, fan-out and dispatch here; an attempt's
//! life in [`lifecycle`]; properties over random command sequences in [`properties`].

use shoal_protocol::{Command, Labels, MachineInfo, frame};

use super::*;
use crate::apply::apply;

const M1: MachineId = MachineId(1);
const M2: MachineId = MachineId(2);

/// A fleet state with a log: each command takes the next log index.
struct Fleet {
    state: FleetState,
    index: u64,
}

impl Fleet {
    /// Machines with the given statuses and labels, at log indexes 1 to 2n.
    fn new(machines: &[(MachineId, MachineStatus, &[&str])]) -> Self {
        let mut fleet = Fleet {
            state: FleetState::default(),
            index: 0,
        };
        for (id, status, labels) in machines {
            let info = MachineInfo {
                id: *id,
                labels: Labels::from_pairs(labels.iter().copied()).unwrap(),
                ..MachineInfo::default()
            };
            fleet.apply(Command::UpsertMachine {
                info: Box::new(info),
                at_ms: 0,
            });
            fleet.apply(Command::SetStatus {
                id: *id,
                status: *status,
                last_heartbeat_ms: 0,
                at_ms: 0,
            });
        }
        fleet
    }

    fn online() -> Self {
        Fleet::new(&[
            (M1, MachineStatus::Online, &[]),
            (M2, MachineStatus::Online, &[]),
        ])
    }

    fn apply(&mut self, cmd: Command) -> Response {
        self.index += 1;
        apply(
            &mut self.state,
            cmd,
            &ApplyCtx {
                log_index: self.index,
            },
        )
    }

    fn submit(&mut self, spec: JobSpec, at_ms: u64) -> JobRecord {
        record(self.apply(Command::SubmitJob {
            spec: Box::new(spec),
            at_ms,
        }))
    }

    fn dispatch(&mut self, job: JobId, attempt: u32, machine: MachineId, at_ms: u64) -> Vec<JobId> {
        let placements = vec![Placement {
            job,
            attempt,
            machine,
        }];
        match self.apply(Command::Dispatch { placements, at_ms }) {
            Response::Jobs(ids) => ids,
            other => panic!("expected jobs, got {other:?}"),
        }
    }

    fn report(&mut self, job: JobId, attempt: u32, report: JobReport, at_ms: u64) -> Response {
        self.apply(Command::ReportJob {
            job,
            attempt,
            report,
            at_ms,
        })
    }

    fn job(&self, id: JobId) -> &JobRecord {
        &self.state.jobs[&id]
    }
}

fn record(response: Response) -> JobRecord {
    match response {
        Response::Job(job) | Response::Submitted { job, .. } => *job,
        other => panic!("expected a job, got {other:?}"),
    }
}

fn assert_rejected(response: &Response, want: ErrorCode, needle: &str) {
    match response {
        Response::Rejected { code, message } => {
            assert_eq!(*code, want, "{message}");
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn spec() -> JobSpec {
    JobSpec::new(["make", "test"])
}

#[test]
fn submit_queues_the_job_under_its_log_index() {
    let mut fleet = Fleet::online();
    let job = fleet.submit(spec(), 100);
    assert_eq!(job.id, JobId(fleet.index));
    assert_eq!(job.submitted_index, fleet.index);
    assert_eq!(
        (
            job.state,
            job.target,
            job.submitted_at_ms,
            job.not_before_ms
        ),
        (JobState::Queued, JobTarget::Any, 100, 100)
    );
    assert_eq!(fleet.job(job.id), &job);
    assert_eq!(queue(&fleet.state), [&job]);
}

#[test]
fn an_invalid_spec_is_rejected_unchanged() {
    let mut fleet = Fleet::online();
    let before = fleet.state.clone();
    let mut bad = spec();
    bad.max_attempts = 0;
    let response = fleet.apply(Command::SubmitJob {
        spec: Box::new(bad),
        at_ms: 1,
    });
    assert_rejected(&response, ErrorCode::BadRequest, "max_attempts");
    assert_eq!(fleet.state, before);
}

#[test]
fn a_repeated_idempotency_key_returns_the_first_job() {
    let mut fleet = Fleet::online();
    let mut keyed = spec();
    keyed.idempotency_key = Some("deploy-42".into());
    let first = fleet.submit(keyed.clone(), 1);
    let mut again = keyed.clone();
    again.command = vec!["other".into()];
    let second = fleet.submit(again, 2);
    assert_eq!(second, first);
    assert_ne!(
        second.submitted_index, fleet.index,
        "a duplicate is recognisable"
    );
    assert_eq!(fleet.state.jobs.len(), 1);
    // The same key in another org is another job.
    keyed.org = "lab".into();
    let other = fleet.submit(keyed, 3);
    assert_ne!(other.id, first.id);
    assert_eq!(other.submitted_index, fleet.index);
}

#[test]
fn a_duplicate_in_the_same_batch_entry_is_not_created() {
    let mut fleet = Fleet::online();
    let mut keyed = spec();
    keyed.idempotency_key = Some("once".into());
    let submit = || Command::SubmitJob {
        spec: Box::new(keyed.clone()),
        at_ms: 1,
    };
    let Response::Batch(answers) = fleet.apply(Command::Batch(vec![submit(), submit()])) else {
        panic!("a batch answers with a batch");
    };
    let created: Vec<bool> = answers
        .iter()
        .map(|answer| match answer {
            Response::Submitted { created, .. } => *created,
            other => panic!("expected a submit answer, got {other:?}"),
        })
        .collect();
    assert_eq!(created, [true, false]);
    assert_eq!(fleet.state.jobs.len(), 1);
}

fn switch(on: bool, terminate: bool, at_ms: u64) -> Command {
    Command::SetKillSwitch {
        switch: on.then(|| shoal_protocol::KillSwitch {
            reason: "bad image".into(),
            actor: "alice".into(),
            since_ms: at_ms,
        }),
        terminate,
        at_ms,
    }
}

#[test]
fn a_terminating_kill_switch_stops_running_jobs_and_holds_the_queue() {
    let mut fleet = Fleet::online();
    let running = fleet.submit(spec(), 1_000);
    let dispatched = fleet.submit(spec(), 1_001);
    let queued = fleet.submit(spec(), 1_002);
    fleet.dispatch(running.id, 1, M1, 1_100);
    fleet.report(running.id, 1, JobReport::Running, 1_200);
    fleet.dispatch(dispatched.id, 1, M1, 1_300);
    fleet.apply(switch(true, true, 2_000));
    for id in [running.id, dispatched.id] {
        assert!(fleet.job(id).cancel_requested, "job {id} is to be stopped");
    }
    assert_eq!(fleet.job(queued.id).state, JobState::Queued);
    assert!(!fleet.job(queued.id).cancel_requested);
    // The machine stops it and reports: the job ends cancelled, not failed.
    fleet.report(running.id, 1, JobReport::Exited { exit_code: 137 }, 2_100);
    assert_eq!(fleet.job(running.id).state, JobState::Cancelled);
}

#[test]
fn time_held_by_the_kill_switch_does_not_count_against_the_queue_timeout() {
    let mut fleet = Fleet::online();
    let queued = fleet.submit(spec(), 1_000);
    fleet.apply(switch(true, false, 2_000));
    assert!(fleet.state.kill_switch.is_some());
    fleet.apply(switch(false, false, 900_000));
    let job = fleet.job(queued.id);
    assert_eq!(job.updated_at_ms, 900_000);
    assert_eq!(job.queue_deadline_ms(), 900_000 + 300_000);
}

#[test]
fn prune_forgets_old_finished_jobs_with_their_children_and_keys() {
    let mut fleet = Fleet::new(&[
        (M1, MachineStatus::Online, &[]),
        (M2, MachineStatus::Online, &[]),
    ]);
    let mut keyed = spec();
    keyed.idempotency_key = Some("k".into());
    let old = fleet.submit(keyed.clone(), 1);
    fleet.apply(Command::CancelJob {
        job: old.id,
        at_ms: 2,
    });
    let mut fan = spec();
    fan.agent_id = Some("all_online".into());
    let parent = fleet.submit(fan, 3);
    fleet.apply(Command::CancelJob {
        job: parent.id,
        at_ms: 4,
    });
    let queued = fleet.submit(spec(), 5);
    let recent = fleet.submit(spec(), 6);
    fleet.apply(Command::CancelJob {
        job: recent.id,
        at_ms: 50,
    });

    let Response::Jobs(mut removed) = fleet.apply(Command::PruneJobs {
        finished_before_ms: 10,
    }) else {
        panic!("prune answers with the jobs it removed");
    };
    removed.sort();
    let mut expected = vec![old.id, parent.id];
    expected.extend(&parent.children);
    expected.sort();
    assert_eq!(removed, expected);
    let left: Vec<JobId> = fleet.state.jobs.keys().copied().collect();
    assert_eq!(
        left,
        [queued.id, recent.id],
        "queued and recently finished jobs stay"
    );
    // The key is free again: the same submission makes a new job.
    let again = fleet.submit(keyed, 60);
    assert_ne!(again.id, old.id);
}

#[test]
fn fan_out_makes_one_child_per_online_machine_with_the_labels() {
    let mut fleet = Fleet::new(&[
        (M1, MachineStatus::Online, &["gpu"]),
        (M2, MachineStatus::Online, &[]),
        (MachineId(3), MachineStatus::Busy, &["gpu"]),
        (MachineId(4), MachineStatus::Online, &["gpu"]),
    ]);
    let mut fan = spec();
    fan.agent_id = Some("all_online".into());
    fan.required_labels.insert("gpu".into(), "true".into());
    fan.idempotency_key = Some("k".into());
    let parent = fleet.submit(fan, 10);
    let index = fleet.index;
    assert_eq!(parent.id, JobId(index));
    assert_eq!(parent.children, [JobId(index + 1), JobId(index + 2)]);
    for (child, machine) in parent.children.iter().zip([M1, MachineId(4)]) {
        let child = fleet.job(*child);
        assert_eq!(child.target, JobTarget::Machine(machine));
        assert_eq!(child.spec.agent_id, Some(machine.to_string()));
        assert_eq!(child.spec.idempotency_key, None);
        assert_eq!(child.parent, Some(parent.id));
    }
    // The parent is never placed; the next job does not reuse a child's id.
    assert_eq!(queue(&fleet.state).len(), 2);
    let next = fleet.submit(spec(), 11);
    assert_eq!(next.id, JobId(index + 3));
}

#[test]
fn fan_out_with_no_machine_to_run_on_is_a_conflict() {
    let mut fleet = Fleet::new(&[(M1, MachineStatus::Offline, &[])]);
    let mut fan = spec();
    fan.agent_id = Some("all_online".into());
    let before = fleet.state.clone();
    let response = fleet.apply(Command::SubmitJob {
        spec: Box::new(fan),
        at_ms: 1,
    });
    assert_rejected(&response, ErrorCode::Conflict, "no machine is ONLINE");
    assert_eq!(fleet.state, before);
}

fn fanned_out(fleet: &mut Fleet) -> (JobId, JobId, JobId) {
    let mut fan = spec();
    fan.agent_id = Some("all_online".into());
    let parent = fleet.submit(fan, 10);
    (parent.id, parent.children[0], parent.children[1])
}

#[test]
fn a_parent_runs_with_its_children_and_completes_when_all_complete() {
    let mut fleet = Fleet::online();
    let (parent, a, b) = fanned_out(&mut fleet);
    fleet.dispatch(a, 1, M1, 20);
    assert_eq!(fleet.job(parent).state, JobState::Running);
    fleet.dispatch(b, 1, M2, 20);
    fleet.report(a, 1, JobReport::Exited { exit_code: 0 }, 30);
    assert_eq!(fleet.job(parent).state, JobState::Running);
    fleet.report(b, 1, JobReport::Exited { exit_code: 0 }, 40);
    let parent = fleet.job(parent);
    assert_eq!(
        (parent.state, parent.updated_at_ms),
        (JobState::Completed, 40)
    );
}

#[test]
fn a_parent_fails_when_a_child_does_not_complete() {
    let mut fleet = Fleet::online();
    let (parent, a, b) = fanned_out(&mut fleet);
    fleet.dispatch(a, 1, M1, 20);
    fleet.report(a, 1, JobReport::Exited { exit_code: 0 }, 30);
    fleet.apply(Command::CancelJob { job: b, at_ms: 31 });
    let parent = fleet.job(parent);
    assert_eq!(parent.state, JobState::Failed);
    assert_eq!(
        parent.error.as_deref(),
        Some("1 of 2 child jobs did not complete")
    );
}

#[test]
fn cancelling_a_parent_cancels_its_children() {
    let mut fleet = Fleet::online();
    let (parent, a, b) = fanned_out(&mut fleet);
    fleet.dispatch(a, 1, M1, 20);
    let response = record(fleet.apply(Command::CancelJob {
        job: parent,
        at_ms: 25,
    }));
    assert_eq!(
        (response.state, response.cancel_requested),
        (JobState::Running, true)
    );
    assert_eq!(fleet.job(b).state, JobState::Cancelled);
    assert!(fleet.job(a).cancel_requested);
    fleet.report(a, 1, JobReport::Exited { exit_code: 137 }, 30);
    assert_eq!(fleet.job(a).state, JobState::Cancelled);
    assert_eq!(fleet.job(parent).state, JobState::Cancelled);
    let again = fleet.apply(Command::CancelJob {
        job: parent,
        at_ms: 40,
    });
    assert_rejected(&again, ErrorCode::Conflict, "already cancelled");
}

#[test]
fn a_parent_takes_no_reports_placements_or_timeouts() {
    let mut fleet = Fleet::online();
    let (parent, _, _) = fanned_out(&mut fleet);
    assert!(fleet.dispatch(parent, 1, M1, 20).is_empty());
    let report = fleet.report(parent, 1, JobReport::Running, 21);
    assert_rejected(&report, ErrorCode::Conflict, "stale attempt 1");
    let timeout = fleet.apply(Command::TimeOutJob {
        job: parent,
        at_ms: u64::MAX,
    });
    assert_rejected(&timeout, ErrorCode::Conflict, "fans out");
}

#[test]
fn dispatch_skips_placements_that_went_stale() {
    let mut fleet = Fleet::online();
    let a = fleet.submit(spec(), 1).id;
    let mut pinned = spec();
    pinned.agent_id = Some(M2.to_string());
    let b = fleet.submit(pinned, 1).id;
    let c = fleet.submit(spec(), 1).id;
    let placements = vec![
        Placement {
            job: a,
            attempt: 2,
            machine: M1,
        }, // wrong attempt
        Placement {
            job: b,
            attempt: 1,
            machine: M1,
        }, // not its machine
        Placement {
            job: c,
            attempt: 1,
            machine: MachineId(9),
        }, // unknown machine
        Placement {
            job: JobId(999),
            attempt: 1,
            machine: M1,
        }, // no such job
        Placement {
            job: a,
            attempt: 1,
            machine: M1,
        },
        Placement {
            job: a,
            attempt: 1,
            machine: M2,
        }, // placed twice
        Placement {
            job: b,
            attempt: 1,
            machine: M2,
        },
    ];
    let response = fleet.apply(Command::Dispatch {
        placements,
        at_ms: 5,
    });
    assert_eq!(response, Response::Jobs(vec![a, b]));
    let job = fleet.job(a);
    assert_eq!(job.state, JobState::Dispatched);
    assert_eq!(job.attempts.len(), 1);
    assert_eq!(
        (job.attempts[0].machine, job.attempts[0].dispatched_at_ms),
        (M1, 5)
    );
    assert_eq!(fleet.job(c).state, JobState::Queued);
    // A dispatched job is not dispatched again.
    assert!(fleet.dispatch(a, 2, M2, 6).is_empty());
}

mod costs;
mod lifecycle;
mod properties;
mod retention;
