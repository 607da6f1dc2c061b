//! Adoption: after a daemon restart, find the containers this node's executor started
//! (label `shoal.managed=true`, and `shoal.node` when configured) and take them back.
//!
//! ```text
//!  list (all, by label) ─┬─ running / paused / restarting ─▶ supervisor as for a new run,
//!                        │     all its logs, timeout from the shoal.deadline_ms label
//!                        └─ exited / dead / created ─▶ real outcome + kept logs, removed
//! ```

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::ContainerSummaryStateEnum as State;
use bollard::query_parameters::ListContainersOptionsBuilder;
use tokio::time::Instant;

use super::docker::{
    DockerExecutor, LABEL_ATTEMPT, LABEL_DEADLINE, LABEL_JOB, LABEL_MANAGED, LABEL_NODE, pump_logs,
    remove,
};
use super::output::{OutputSnapshot, output_channel};
use super::{Outcome, RunHandle, run_channel};

/// A container found by [`DockerExecutor::adopt`].
pub enum Adopted {
    /// Still running: the handle reads its logs from the start, waits for its exit
    /// and can cancel it, as for a run this executor started.
    Running {
        job: u64,
        attempt: u32,
        handle: RunHandle,
        /// The GPU indices it was handed (its `shoal.gpus` label).
        gpus: Vec<u32>,
    },
    /// It ended while no daemon watched. The container has been removed.
    Finished {
        job: u64,
        attempt: u32,
        /// [`Outcome::Exited`] with its real exit code; [`Outcome::Failed`] for a container
        /// that was created but never started, or that the engine marks dead.
        outcome: Outcome,
        /// Its logs, up to the executor's output limit.
        output: OutputSnapshot,
    },
}

impl Adopted {
    pub fn job(&self) -> u64 {
        match self {
            Adopted::Running { job, .. } | Adopted::Finished { job, .. } => *job,
        }
    }

    pub fn attempt(&self) -> u32 {
        match self {
            Adopted::Running { attempt, .. } | Adopted::Finished { attempt, .. } => *attempt,
        }
    }
}

impl DockerExecutor {
    /// Takes back the containers a previous daemon left. Empty when Docker is absent (that
    /// is logged) or nothing is left.
    pub async fn adopt(&self) -> Vec<Adopted> {
        let docker = match self.client().await {
            Ok(docker) => docker,
            Err(error) => {
                tracing::warn!(%error, "nothing to adopt");
                return Vec::new();
            }
        };
        let mut labels = vec![format!("{LABEL_MANAGED}=true")];
        if let Some(node) = &self.inner.config.node {
            labels.push(format!("{LABEL_NODE}={node}"));
        }
        // Several label filters must all match.
        let filters = HashMap::from([("label", labels)]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = match docker.list_containers(Some(options)).await {
            Ok(containers) => containers,
            Err(error) => {
                tracing::warn!(%error, "listing containers to adopt failed");
                return Vec::new();
            }
        };
        let mut adopted = Vec::new();
        for summary in containers {
            let labels = summary.labels.unwrap_or_default();
            let (Some(id), Some((job, attempt))) = (summary.id, run_of(&labels)) else {
                tracing::warn!(?labels, "managed container without job labels; left alone");
                continue;
            };
            let found = match summary.state {
                Some(State::RUNNING | State::PAUSED | State::RESTARTING) => {
                    let limit = self.inner.config.output_limit;
                    let (handle, control) = run_channel(job, attempt, limit);
                    let deadline = deadline_of(&labels, SystemTime::now());
                    let watched = self.watched(docker.clone(), id, deadline);
                    tokio::spawn(watched.supervise(control));
                    Adopted::Running {
                        job,
                        attempt,
                        handle,
                        gpus: labels
                            .get(crate::gpus::handoff::LABEL_GPUS)
                            .map(|value| crate::gpus::handoff::parse_label(value))
                            .unwrap_or_default(),
                    }
                }
                Some(state @ (State::EXITED | State::DEAD | State::CREATED)) => {
                    let (outcome, output) = self.collect(&docker, &id, state).await;
                    Adopted::Finished {
                        job,
                        attempt,
                        outcome,
                        output,
                    }
                }
                // Being removed or stopped by someone else: not ours to take.
                state => {
                    tracing::info!(container = %id, ?state, "container not adopted");
                    continue;
                }
            };
            tracing::info!(
                job,
                attempt,
                running = matches!(found, Adopted::Running { .. }),
                "container adopted"
            );
            adopted.push(found);
        }
        adopted
    }

    /// The outcome and logs of a container that is not running, which is then removed.
    async fn collect(&self, docker: &Docker, id: &str, state: State) -> (Outcome, OutputSnapshot) {
        let outcome = match docker.inspect_container(id, None).await {
            Err(error) => Outcome::Failed {
                error: format!("inspecting the container: {error}"),
            },
            Ok(inspect) => {
                let state_info = inspect.state.unwrap_or_default();
                match state {
                    State::CREATED => Outcome::Failed {
                        error: "the container was created but never started".into(),
                    },
                    State::DEAD => Outcome::Failed {
                        error: format!(
                            "the engine marks the container dead: {}",
                            state_info.error.unwrap_or_default()
                        ),
                    },
                    _ => Outcome::Exited {
                        exit_code: state_info
                            .exit_code
                            .and_then(|code| i32::try_from(code).ok())
                            .unwrap_or(-1),
                    },
                }
            }
        };
        let (writer, output) = output_channel(self.inner.config.output_limit);
        pump_logs(
            docker.clone(),
            id.to_string(),
            writer.clone(),
            false,
            "all",
            0,
        )
        .await;
        writer.close();
        remove(docker, id).await;
        (outcome, output.snapshot())
    }
}

/// The job and attempt a container's labels name.
fn run_of(labels: &HashMap<String, String>) -> Option<(u64, u32)> {
    let job = labels.get(LABEL_JOB)?.parse().ok()?;
    let attempt = labels.get(LABEL_ATTEMPT)?.parse().ok()?;
    Some((job, attempt))
}

/// When an adopted run times out, from its deadline label; at once if that has passed.
fn deadline_of(labels: &HashMap<String, String>, now: SystemTime) -> Option<Instant> {
    let deadline_ms: u64 = labels.get(LABEL_DEADLINE)?.parse().ok()?;
    let deadline = UNIX_EPOCH + Duration::from_millis(deadline_ms);
    let left = deadline.duration_since(now).unwrap_or_default();
    Instant::now().checked_add(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn job_and_attempt_come_from_the_labels() {
        let good = labels(&[(LABEL_JOB, "42"), (LABEL_ATTEMPT, "2")]);
        assert_eq!(run_of(&good), Some((42, 2)));
        assert_eq!(run_of(&labels(&[(LABEL_JOB, "42")])), None);
        assert_eq!(
            run_of(&labels(&[(LABEL_JOB, "x"), (LABEL_ATTEMPT, "2")])),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_survives_the_restart() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let ahead = labels(&[(LABEL_DEADLINE, "1030000")]);
        let deadline = deadline_of(&ahead, now).unwrap();
        assert_eq!(deadline - Instant::now(), Duration::from_secs(30));
        let passed = labels(&[(LABEL_DEADLINE, "999000")]);
        assert_eq!(deadline_of(&passed, now).unwrap(), Instant::now());
        assert_eq!(deadline_of(&HashMap::new(), now), None);
    }
}
