//! The leader's dispatch pass: time out and requeue what must move (machines lost, or
//! drained past their deadline), then place queued jobs with the pure scheduler and commit
//! the placements and the reasons others wait. With the kill switch on, nothing moves.
//!
//! The log knows a placement the moment it commits; the machine's heartbeat shows it
//! seconds later. Placements the heartbeat does not show yet are reservations: the
//! scheduler counts each as one busy core of the machine's load and one running job, so a
//! burst spreads over machines instead of piling onto the one that was least loaded.
//! GPUs are counted from the log alone: a machine's GPUs less those its placed and
//! running jobs asked for are free.

use shoal_protocol::{ApiError, Command, FleetState, JobId, MachineStatus};
use shoal_raft::{Candidate, PlaceConfig, Reservations, jobs, place};

use crate::metrics::QueueWaits;
use crate::node::Node;

/// A job dispatched but not running after this long goes back to the queue.
pub const DISPATCH_TIMEOUT_MS: u64 = 5 * 60 * 1000;
/// The same for an attempt whose machine said it pulls the image: the longest pull
/// (`exec::pull::PULL_TIMEOUT`, 10 minutes) and then some.
pub const PULLING_TIMEOUT_MS: u64 = 15 * 60 * 1000;

/// The label a machine carries when its Docker engine answers.
pub const DOCKER_LABEL: &str = "docker";

/// The label a machine carries when it runs process jobs (`allow_process_jobs`). A machine
/// on an older build does not say so: process jobs wait for machines that do.
pub const PROCESS_JOBS_LABEL: &str = "process_jobs";

/// Most placements, or queue reasons, one command carries: a pass over a long queue
/// writes several, so no entry outgrows what a follower takes in within one Raft
/// heartbeat (openraft's deadline for an append) on a modest link.
pub const MAX_PER_COMMAND: usize = 500;

/// `items` as commands of at most [`MAX_PER_COMMAND`] each, made by `command`.
fn in_chunks<T>(items: Vec<T>, command: impl Fn(Vec<T>) -> Command) -> Vec<Command> {
    let mut items = items.into_iter().peekable();
    let mut commands = Vec::new();
    while items.peek().is_some() {
        commands.push(command(items.by_ref().take(MAX_PER_COMMAND).collect()));
    }
    commands
}

/// Moves and places jobs. Runs on the leader only.
pub async fn dispatch_pass(node: &Node, now: u64) -> Result<(), ApiError> {
    // Each command with the queue waits it observes once it commits.
    let commands: Vec<(Command, QueueWaits)> = node.fleet.read(|state| {
        let commands = plan(node, state, now).into_iter();
        commands
            .map(|cmd| {
                let waits = QueueWaits::of(state, &cmd);
                (cmd, waits)
            })
            .collect()
    });
    let mut commands = commands.into_iter().peekable();
    while let Some(first) = commands.next() {
        // The chunks of one long list go together: the proposer joins them into as few
        // entries as its batch size allows.
        let mut group = vec![first];
        while let Some(next) = commands.next_if(|(next, _)| same_list(&group[0].0, next)) {
            group.push(next);
        }
        let writes = group.into_iter().map(|(cmd, placed)| async move {
            let outcome = node.write(cmd).await?;
            node.metrics.dispatched(placed, &outcome.response);
            Ok::<_, ApiError>(())
        });
        futures::future::try_join_all(writes).await?;
    }
    Ok(())
}

/// Whether `a` and `b` are chunks of the same list ([`in_chunks`]).
fn same_list(a: &Command, b: &Command) -> bool {
    matches!(
        (a, b),
        (Command::Dispatch { .. }, Command::Dispatch { .. })
            | (
                Command::SetQueueReasons { .. },
                Command::SetQueueReasons { .. }
            )
    )
}

/// The commands one pass writes, from the state and the live view.
fn plan(node: &Node, state: &FleetState, now: u64) -> Vec<Command> {
    let mut commands = Vec::new();
    // Orgs with on_exceed = stop that crossed a limit: their running work stops.
    if !shoal_raft::costs::to_stop(state, now).is_empty() {
        commands.push(Command::EnforceBudgets { at_ms: now });
    }
    if let Some(switch) = &state.kill_switch {
        // Nothing moves: queued jobs wait, saying why, and do not time out.
        let reason = format!(
            "dispatch is stopped fleet-wide: kill switch turned on by {}: {}",
            switch.actor, switch.reason
        );
        let waiting: Vec<(JobId, String)> = jobs::queue(state)
            .into_iter()
            .map(|job| (job.id, reason.clone()))
            .collect();
        let reasons = jobs::changed_reasons(state, &waiting);
        commands.extend(in_chunks(reasons, |reasons| Command::SetQueueReasons {
            reasons,
        }));
        return commands;
    }
    for job in jobs::queue_expired(state, now) {
        commands.push(Command::TimeOutJob { job, at_ms: now });
    }
    let slow = jobs::dispatched_before(
        state,
        now.saturating_sub(DISPATCH_TIMEOUT_MS),
        now.saturating_sub(PULLING_TIMEOUT_MS),
    );
    for (job, attempt, pulling) in slow {
        let reason = match pulling {
            true => "dispatched, pulling its image, and not running within 15 minutes",
            false => "dispatched but not running within 5 minutes",
        }
        .to_string();
        commands.push(Command::RequeueJob {
            job,
            attempt,
            reason,
            at_ms: now,
        });
    }
    for (id, record) in &state.machines {
        let lost = matches!(record.status, MachineStatus::Stale | MachineStatus::Dead);
        let drained = record
            .drain
            .as_ref()
            .and_then(|drain| drain.deadline_ms)
            .is_some_and(|deadline| now >= deadline);
        if lost || drained {
            for (job, attempt) in jobs::running_on(state, *id) {
                let reason = if lost {
                    format!("machine {} went {}", record.info.name, record.status)
                } else {
                    format!(
                        "machine {} was drained and its deadline passed",
                        record.info.name
                    )
                };
                commands.push(Command::RequeueJob {
                    job,
                    attempt,
                    reason,
                    at_ms: now,
                });
            }
        }
    }

    let queue = jobs::queue(state);
    if queue.is_empty() {
        return commands;
    }
    // The log knows every placement at once; a machine's heartbeat catches up later.
    // What the heartbeat does not show yet is reserved, and weighs on the projected load.
    let mut reservations = Reservations::new();
    let held = jobs::held_on_machines(state);
    let candidates: Vec<Candidate> = state
        .machines
        .values()
        .map(|record| {
            let id = record.info.id;
            let labels = record.labels();
            let on_machine = held.get(&id).copied().unwrap_or_default();
            let holds = on_machine.jobs;
            let (load, reported, cpu_cores, images, gpus) = match node.peer(id) {
                Some(peer) => (
                    peer.info.resources.load,
                    peer.info.running,
                    peer.info.resources.cpu_cores,
                    peer.info.images.clone(),
                    peer.info.gpus.len(),
                ),
                None => (
                    record.info.resources.load,
                    0,
                    record.info.resources.cpu_cores,
                    Vec::new(),
                    record.info.gpus.len(),
                ),
            };
            let gpus = u32::try_from(gpus).unwrap_or(u32::MAX);
            let running = reported.min(holds);
            reservations.add(id, holds - running);
            Candidate {
                id,
                // A drain counts at once, before the leader commits the DRAINING status.
                status: if record.drain.is_some() {
                    MachineStatus::Draining
                } else {
                    record.status
                },
                has_docker: labels.get(DOCKER_LABEL).is_some(),
                runs_processes: labels.get(PROCESS_JOBS_LABEL).is_some(),
                labels,
                load,
                running,
                max_running: record.info.max_running,
                cpu_cores,
                images,
                gpus,
                free_gpus: gpus.saturating_sub(on_machine.gpus),
            }
        })
        .collect();
    let config = PlaceConfig {
        load_threshold: node.config.load_threshold,
        policies: state.policies.values().collect(),
    };
    let plan = place(&queue, &candidates, &reservations, &config, now);
    commands.extend(in_chunks(plan.placements, |placements| Command::Dispatch {
        placements,
        at_ms: now,
    }));
    let reasons: Vec<(JobId, String)> = jobs::changed_reasons(state, &plan.waiting);
    commands.extend(in_chunks(reasons, |reasons| Command::SetQueueReasons {
        reasons,
    }));
    commands
}

/// Runs a dispatch pass on the leader whenever the log moves (a submission, a report,
/// a status change) and at least every reconcile interval (timeouts).
pub async fn dispatch_loop(
    node: std::sync::Arc<Node>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut applied = node.fleet.applied();
    let mut tick = tokio::time::interval(node.config.timings.reconcile_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = applied.changed() => {}
            _ = tick.tick() => {}
        }
        if node.raft.metrics().borrow().state != openraft::ServerState::Leader {
            continue;
        }
        if let Err(err) = dispatch_pass(&node, crate::node::now_ms()).await {
            tracing::debug!(error = %err.message, "dispatch pass stopped early");
        }
    }
}

#[cfg(test)]
mod tests {
    use shoal_protocol::{MachineId, Placement};

    use super::*;

    #[test]
    fn a_long_pass_is_written_as_commands_of_bounded_size() {
        let placements: Vec<Placement> = (0..1_201)
            .map(|n| Placement {
                job: JobId(n),
                attempt: 1,
                machine: MachineId(1),
            })
            .collect();
        let commands = in_chunks(placements, |placements| Command::Dispatch {
            placements,
            at_ms: 5,
        });
        let sizes: Vec<usize> = commands
            .iter()
            .map(|cmd| match cmd {
                Command::Dispatch { placements, .. } => placements.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, [MAX_PER_COMMAND, MAX_PER_COMMAND, 201]);
        let none = in_chunks(Vec::<(JobId, String)>::new(), |reasons| {
            Command::SetQueueReasons { reasons }
        });
        assert!(none.is_empty(), "nothing to say writes nothing");
    }
}
