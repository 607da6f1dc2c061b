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

/// Moves and places jobs. Runs on the leader only.
pub async fn dispatch_pass(node: &Node, now: u64) -> Result<(), ApiError> {
    let (commands, mut waits) = node.fleet.read(|state| {
        let commands = plan(node, state, now);
        let waits = crate::metrics::QueueWaits::of(state, &commands);
        (commands, waits)
    });
    for cmd in commands {
        let placed = waits.take(&cmd);
        let outcome = node.write(cmd).await?;
        node.metrics.dispatched(placed, &outcome.response);
    }
    Ok(())
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
        if !reasons.is_empty() {
            commands.push(Command::SetQueueReasons { reasons });
        }
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
    if !plan.placements.is_empty() {
        commands.push(Command::Dispatch {
            placements: plan.placements,
            at_ms: now,
        });
    }
    let reasons: Vec<(JobId, String)> = jobs::changed_reasons(state, &plan.waiting);
    if !reasons.is_empty() {
        commands.push(Command::SetQueueReasons { reasons });
    }
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
