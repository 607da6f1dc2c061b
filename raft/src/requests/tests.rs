//! A repeated request applies once and is answered alike; the ids kept are pruned alike on
//! every replica.

use shoal_protocol::events::Event;
use shoal_protocol::requests::{REQUESTS_KEPT, REQUESTS_WINDOW_MS, RequestId};
use shoal_protocol::{Command, FleetState, JobSpec, Labels, MachineId, MachineInfo, Response};

use crate::apply::{ApplyCtx, apply};
use crate::events::apply_with_events;

/// A replica: its state and the index of the last entry it applied.
#[derive(Default)]
struct Replica {
    state: FleetState,
    index: u64,
}

impl Replica {
    fn apply(&mut self, cmd: Command) -> Response {
        self.index += 1;
        let ctx = ApplyCtx {
            log_index: self.index,
        };
        apply(&mut self.state, cmd, &ctx)
    }

    fn apply_with_events(&mut self, cmd: Command) -> (Response, Vec<Event>) {
        self.index += 1;
        let ctx = ApplyCtx {
            log_index: self.index,
        };
        let mut events = Vec::new();
        let response = apply_with_events(&mut self.state, cmd, &ctx, &mut events);
        (response, events)
    }
}

fn request(id: u128, at_ms: u64, command: Command) -> Command {
    Command::Request {
        id: RequestId(id),
        at_ms,
        command: Box::new(command),
    }
}

fn submit(at_ms: u64) -> Command {
    Command::SubmitJob {
        spec: Box::new(JobSpec::new(["true"])),
        at_ms,
    }
}

fn label(id: MachineId, value: &str) -> Command {
    Command::LabelMachine {
        id,
        set: Labels::from_pairs([format!("k={value}").as_str()]).unwrap(),
        remove: vec![],
    }
}

fn upsert(id: MachineId) -> Command {
    Command::UpsertMachine {
        info: Box::new(MachineInfo {
            id,
            ..MachineInfo::default()
        }),
        at_ms: 1,
    }
}

#[test]
fn a_repeated_submit_makes_one_job_and_gets_the_same_answer() {
    let mut replica = Replica::default();
    let first = replica.apply(request(7, 1_000, submit(1_000)));
    let again = replica.apply(request(7, 1_000, submit(1_000)));
    assert!(matches!(first, Response::Submitted { created: true, .. }));
    assert_eq!(again, first);
    assert_eq!(replica.state.jobs.len(), 1);
    assert_eq!(replica.state.open_jobs().count(), 1);

    // Another id is another write.
    replica.apply(request(8, 1_001, submit(1_001)));
    assert_eq!(replica.state.jobs.len(), 2);
}

#[test]
fn a_repeat_inside_one_batch_applies_once_and_makes_no_events() {
    let mut replica = Replica::default();
    replica.apply(upsert(MachineId(1)));
    let (response, events) = replica.apply_with_events(Command::Batch(vec![
        request(1, 5, label(MachineId(1), "a")),
        request(1, 5, label(MachineId(1), "a")),
        request(2, 5, label(MachineId(9), "b")),
        request(2, 5, label(MachineId(9), "b")),
    ]));
    let Response::Batch(answers) = response else {
        panic!("expected a batch answer, got {response:?}");
    };
    assert_eq!(answers[0], answers[1]);
    assert!(matches!(answers[0], Response::Machine(_)));
    // A rejection is recorded too: the repeat is refused the same way.
    assert_eq!(answers[2], answers[3]);
    assert!(matches!(answers[2], Response::Rejected { .. }));
    let labelled: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == shoal_protocol::events::kind::MACHINE_LABELS)
        .collect();
    assert_eq!(labelled.len(), 1, "{events:#?}");
}

#[test]
fn a_repeated_cost_report_without_an_id_counts_once() {
    let mut replica = Replica::default();
    let cost = Command::ReportCost {
        job: shoal_protocol::JobId(1),
        attempt: 1,
        micro_usd: 5,
        report_id: None,
        at_ms: 10,
    };
    let first = replica.apply(request(3, 10, cost.clone()));
    let again = replica.apply(request(3, 10, cost.clone()));
    // No such job: refused, and the repeat answered from the record without applying.
    assert_eq!(first, again);
    assert_eq!(replica.state.requests.len(), 1);
}

#[test]
fn replicas_prune_the_same_ids_and_a_forgotten_id_applies_again() {
    let (mut a, mut b) = (Replica::default(), Replica::default());
    let log: Vec<Command> = (0..(REQUESTS_KEPT as u128 + 10))
        .map(|i| request(i, 1_000, Command::SetQueueReasons { reasons: vec![] }))
        .collect();
    for cmd in &log {
        a.apply(cmd.clone());
        b.apply(cmd.clone());
    }
    assert_eq!(a.state.requests.len(), REQUESTS_KEPT);
    assert_eq!(a.state, b.state);
    assert!(a.state.requests.get(RequestId(9)).is_none());
    assert!(a.state.requests.get(RequestId(10)).is_some());

    // Past the window, a new request makes the old ones go, on both.
    let later = 1_000 + REQUESTS_WINDOW_MS + 1;
    for replica in [&mut a, &mut b] {
        replica.apply(request(u128::MAX, later, submit(later)));
    }
    assert_eq!(a.state.requests.len(), 1);
    assert_eq!(a.state, b.state);

    // An id no longer kept is a new write.
    let jobs = a.state.jobs.len();
    a.apply(request(10, later, submit(later)));
    assert_eq!(a.state.jobs.len(), jobs + 1);
}

#[test]
fn the_table_survives_a_snapshot_encoding() {
    let mut replica = Replica::default();
    replica.apply(request(u128::MAX - 1, 1, submit(1)));
    let bytes = shoal_protocol::frame::encode(&replica.state).unwrap();
    let back: FleetState = shoal_protocol::frame::decode(&bytes).unwrap();
    assert_eq!(back.requests, replica.state.requests);
    let mut restored = Replica {
        state: back,
        index: replica.index,
    };
    restored.state.rebuild_indexes();
    restored.apply(request(u128::MAX - 1, 1, submit(1)));
    assert_eq!(restored.state.jobs.len(), 1);
}
