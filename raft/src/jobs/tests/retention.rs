//! Pruning walks the finished-jobs index: oldest first, only what finished before the
//! cutoff, and the index stays what a rebuild from the records would make.

use super::*;

/// Runs a job to completion, finishing at `end`.
fn finish(fleet: &mut Fleet, end: u64) -> JobId {
    let id = fleet.submit(spec(), end - 3).id;
    fleet.dispatch(id, 1, M1, end - 2);
    fleet.report(id, 1, JobReport::Running, end - 1);
    fleet.report(id, 1, JobReport::Exited { exit_code: 0 }, end);
    id
}

fn assert_indexes_sound(state: &FleetState) {
    let mut rebuilt = state.clone();
    rebuilt.rebuild_indexes();
    assert_eq!(rebuilt.finished_jobs, state.finished_jobs);
    assert_eq!(rebuilt.queued_jobs, state.queued_jobs);
    assert_eq!(rebuilt.placed_jobs, state.placed_jobs);
}

#[test]
fn finished_jobs_are_indexed_by_when_they_finished_not_by_id() {
    let mut fleet = Fleet::online();
    // Submitted in id order, finishing in another order.
    let late = fleet.submit(spec(), 10).id;
    let early = finish(&mut fleet, 20);
    fleet.dispatch(late, 1, M2, 30);
    fleet.report(late, 1, JobReport::Failed { error: "x".into() }, 40);
    fleet.apply(Command::CancelJob {
        job: late,
        at_ms: 50,
    });
    let open = fleet.submit(spec(), 60).id;
    assert_eq!(prunable(&fleet.state, 51), [early, late]);
    assert_eq!(prunable(&fleet.state, 50), [early]);
    assert_eq!(prunable(&fleet.state, 20), []);
    assert!(!prunable(&fleet.state, u64::MAX).contains(&open));
    assert_indexes_sound(&fleet.state);
}

#[test]
fn a_prune_takes_what_it_removes_out_of_the_index() {
    let mut fleet = Fleet::online();
    let old: Vec<JobId> = (0..5).map(|i| finish(&mut fleet, 100 + i)).collect();
    let kept: Vec<JobId> = (0..3).map(|i| finish(&mut fleet, 1_000 + i)).collect();
    let mut fan = spec();
    fan.agent_id = Some("all_online".into());
    let parent = fleet.submit(fan, 200);
    fleet.apply(Command::CancelJob {
        job: parent.id,
        at_ms: 201,
    });
    // Children are not in the index: they go with their parent.
    assert_eq!(fleet.state.finished_jobs.len(), old.len() + kept.len() + 1);

    let Response::Jobs(removed) = fleet.apply(Command::PruneJobs {
        finished_before_ms: 500,
    }) else {
        panic!("prune answers with the jobs it removed");
    };
    assert_eq!(removed.len(), old.len() + 1 + parent.children.len());
    assert_eq!(prunable(&fleet.state, 500), []);
    assert_eq!(prunable(&fleet.state, u64::MAX), kept);
    assert_indexes_sound(&fleet.state);
    // Nothing left to prune: the same command removes nothing.
    let again = fleet.apply(Command::PruneJobs {
        finished_before_ms: 500,
    });
    assert_eq!(again, Response::Jobs(Vec::new()));
}

#[test]
fn indexes_come_back_after_a_snapshot_is_read() {
    let mut fleet = Fleet::online();
    finish(&mut fleet, 100);
    let running = fleet.submit(spec(), 200).id;
    fleet.dispatch(running, 1, M1, 201);
    fleet.report(running, 1, JobReport::Running, 202);
    fleet.submit(spec(), 300);
    let bytes = frame::encode(&fleet.state).unwrap();
    let mut read: FleetState = frame::decode(&bytes).unwrap();
    assert!(
        read.finished_jobs.is_empty()
            && read.queued_jobs.is_empty()
            && read.placed_jobs.is_empty()
            && read.running.is_empty()
    );
    read.rebuild_indexes();
    assert_eq!(read, fleet.state);
}
