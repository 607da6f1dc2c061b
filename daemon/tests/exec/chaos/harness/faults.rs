//! The faults, each done to live containers while the clients write, and what is measured
//! around them: leader fault → first acknowledged write, the write gap when a follower
//! partition heals (and whether the term moved), and liveness: a job pinned to each
//! affected machine, once it is back, completes within [`LIVENESS`].

use std::fmt;
use std::time::Duration;

use shoal_protocol::{JobState, JobView};

use super::Plan;
use super::client::{Book, first_ack_after, mark_job, probe_gap, submit_until_acked};
use super::fleet::{Fleet, docker_async};

/// How soon a machine that is back must complete a job pinned to it.
pub const LIVENESS: Duration = Duration::from_secs(15);
/// How long a liveness job is watched in all, to say how long a stall lasted.
const WATCH: Duration = Duration::from_secs(45);
/// The shortest window after a follower partition heals in which the probe's gap is
/// measured and the term compared.
const HEAL_WINDOW: Duration = Duration::from_secs(8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `docker kill` the leader, `docker start` it after `down_for`.
    LeaderKill,
    FollowerKill,
    /// `docker network disconnect` the leader, connect it again after `down_for`.
    LeaderPartition,
    FollowerPartition,
    /// Kill the leader while it runs a job pinned to it.
    LeaderKillWhileRunning,
    /// `docker restart` each machine in turn (SIGTERM, SIGKILL after 10 s).
    RollingRestart,
    /// `docker kill` and `docker start` each machine in turn.
    RollingSigkill,
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::LeaderKill,
        Fault::FollowerKill,
        Fault::LeaderPartition,
        Fault::FollowerPartition,
        Fault::LeaderKillWhileRunning,
        Fault::RollingRestart,
        Fault::RollingSigkill,
    ];
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::LeaderKill => "leader kill",
            Fault::FollowerKill => "follower kill",
            Fault::LeaderPartition => "leader partition",
            Fault::FollowerPartition => "follower partition",
            Fault::LeaderKillWhileRunning => "leader killed while running a job",
            Fault::RollingRestart => "rolling docker restart",
            Fault::RollingSigkill => "rolling SIGKILL",
        })
    }
}

/// What one fault did and what was measured around it.
#[derive(Debug, Clone)]
pub struct Round {
    pub number: usize,
    pub fault: Fault,
    /// When it began, since the run began.
    pub at: Duration,
    /// Rolling restart: how long each `docker restart` took (stop, then start).
    pub restarts: Vec<Duration>,
    /// Leader fault (kill or cut) → first acknowledged write sent after it, per leader
    /// fault (a roll has one for the leader's turn, or two when leadership moves to a
    /// machine still to come); `None` inside: no write acknowledged at all.
    pub failovers: Vec<Option<Duration>>,
    /// Follower partition: the probe's longest gap in the 8 s (at least) after healing.
    pub heal_gap: Option<Duration>,
    /// Follower partition: whether the leader's term changed when it healed.
    pub term_changed_on_heal: Option<bool>,
    /// Per affected machine: time from its return to its pinned job completing, or why not.
    pub liveness: Vec<(String, Result<Duration, String>)>,
    pub notes: Vec<String>,
}

impl Round {
    /// Machines whose pinned job did not complete within [`LIVENESS`].
    pub fn stalled(&self) -> Vec<String> {
        self.liveness
            .iter()
            .filter(|(_, r)| !matches!(r, Ok(d) if *d <= LIVENESS))
            .map(|(name, r)| format!("{name}: {r:?}"))
            .collect()
    }
}

impl fmt::Display for Round {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "round {} at +{:.0}s ({}):",
            self.number,
            self.at.as_secs_f64(),
            self.fault
        )?;
        for failover in &self.failovers {
            match failover {
                Some(d) => write!(f, " leader fault → first write {:.2}s;", d.as_secs_f64())?,
                None => write!(f, " leader fault → no write acknowledged;")?,
            }
        }
        if let Some(gap) = self.heal_gap {
            write!(f, " heal gap {:.2}s;", gap.as_secs_f64())?;
        }
        if let Some(changed) = self.term_changed_on_heal {
            write!(f, " term changed on heal: {changed};")?;
        }
        for (name, result) in &self.liveness {
            match result {
                Ok(d) => write!(f, " {name} pinned job {:.1}s;", d.as_secs_f64())?,
                Err(why) => write!(f, " {name} pinned job FAILED: {why};")?,
            }
        }
        if let Some(max) = self.restarts.iter().max() {
            write!(f, " docker restart took at most {:.1}s;", max.as_secs_f64())?;
        }
        for note in &self.notes {
            write!(f, " {note};")?;
        }
        Ok(())
    }
}

async fn kill(fleet: &Fleet, i: usize) -> anyhow::Result<()> {
    docker_async(&["kill", &fleet.members[i].container]).await?;
    Ok(())
}

async fn start(fleet: &Fleet, i: usize) -> anyhow::Result<()> {
    docker_async(&["start", &fleet.members[i].container]).await?;
    fleet.refresh_port(i).await;
    Ok(())
}

async fn disconnect(fleet: &Fleet, i: usize) -> anyhow::Result<()> {
    let container = &fleet.members[i].container;
    docker_async(&["network", "disconnect", &fleet.network, container]).await?;
    fleet.refresh_port(i).await;
    Ok(())
}

async fn connect(fleet: &Fleet, i: usize) -> anyhow::Result<()> {
    let (container, ip) = (&fleet.members[i].container, fleet.members[i].ip.to_string());
    docker_async(&["network", "connect", "--ip", &ip, &fleet.network, container]).await?;
    fleet.refresh_port(i).await;
    Ok(())
}

/// The job, as the first member that answers has it.
pub async fn job_record(fleet: &Fleet, job: u64) -> Option<JobView> {
    for i in 0..fleet.members.len() {
        let path = format!("/v1/jobs/{job}");
        if let Ok(record) = fleet.get(i, &path, Duration::from_secs(1)).await {
            return Some(record);
        }
    }
    None
}

/// Submits a job pinned to member `i` and watches it: time from `back` (when the machine
/// returned) to its completion, or why not.
async fn pinned_job(
    fleet: &Fleet,
    book: &Book,
    i: usize,
    label: &str,
    back: Duration,
) -> Result<Duration, String> {
    let member = &fleet.members[i];
    let id = *member.id.get().ok_or("machine id unknown")?;
    let key = format!("{}-live-{label}-{}", fleet.name, member.name);
    let spec = mark_job(&key, Some(id), "true");
    let ack = submit_until_acked(fleet, book, &spec, i, WATCH)
        .await
        .ok_or_else(|| format!("not acknowledged within {WATCH:?}"))?;
    let mut state = None;
    while fleet.now() < back + WATCH {
        if let Some(record) = job_record(fleet, ack.job.0).await {
            if record.state == JobState::Completed {
                return Ok(fleet.now() - back);
            }
            if record.state.is_finished() {
                return Err(format!("job {} ended {}", ack.job, record.state));
            }
            state = Some(record.state);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("job {} still {state:?} after {WATCH:?}", ack.job))
}

/// Liveness for each of `members`, together.
async fn liveness(
    fleet: &Fleet,
    book: &Book,
    members: &[usize],
    label: &str,
    back: Duration,
) -> Vec<(String, Result<Duration, String>)> {
    let checks = members
        .iter()
        .map(|&i| async move { (i, pinned_job(fleet, book, i, label, back).await) });
    futures::future::join_all(checks)
        .await
        .into_iter()
        .map(|(i, r)| (fleet.members[i].name.clone(), r))
        .collect()
}

/// A member other than `leader`, changing with the round.
fn follower(fleet: &Fleet, leader: usize, number: usize) -> usize {
    (leader + 1 + number % (fleet.members.len() - 1)) % fleet.members.len()
}

/// Does `fault` and measures around it; failures of Docker itself become notes.
pub async fn run_fault(
    fleet: &Fleet,
    book: &Book,
    fault: Fault,
    number: usize,
    plan: &Plan,
) -> Round {
    let mut round = Round {
        number,
        fault,
        at: fleet.now(),
        restarts: Vec::new(),
        failovers: Vec::new(),
        heal_gap: None,
        term_changed_on_heal: None,
        liveness: Vec::new(),
        notes: Vec::new(),
    };
    if let Err(err) = fault_inner(fleet, book, plan, &mut round).await {
        round.notes.push(format!("error: {err:#}"));
    }
    round
}

async fn fault_inner(
    fleet: &Fleet,
    book: &Book,
    plan: &Plan,
    round: &mut Round,
) -> anyhow::Result<()> {
    let label = round.number.to_string();
    let Some((leader, term)) = fleet.wait_leader(Duration::from_secs(20)).await else {
        anyhow::bail!("no leader before the fault");
    };
    round.notes.push(format!(
        "leader {} at term {term}",
        fleet.members[leader].name
    ));
    let target = match round.fault {
        Fault::FollowerKill | Fault::FollowerPartition => follower(fleet, leader, round.number),
        _ => leader,
    };
    let name = fleet.members[target].name.clone();
    match round.fault {
        Fault::LeaderKill | Fault::FollowerKill | Fault::LeaderKillWhileRunning => {
            if round.fault == Fault::LeaderKillWhileRunning {
                let id = fleet.members[target].id.get().copied();
                let key = format!("{}-long-{label}", fleet.name);
                let spec = mark_job(&key, id, "sleep 5");
                let ack = submit_until_acked(fleet, book, &spec, target, Duration::from_secs(20))
                    .await
                    .ok_or_else(|| anyhow::anyhow!("the long job was not acknowledged"))?;
                let deadline = fleet.now() + Duration::from_secs(15);
                loop {
                    let state = job_record(fleet, ack.job.0).await.map(|r| r.state);
                    if state == Some(JobState::Running) {
                        break;
                    }
                    if fleet.now() > deadline {
                        round.notes.push(format!(
                            "job {} was {state:?}, not running, when {name} was killed",
                            ack.job
                        ));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            // The fault counts from when Docker says it is done (the process is dead).
            kill(fleet, target).await?;
            let t0 = fleet.now();
            tokio::time::sleep(plan.down_for).await;
            start(fleet, target).await?;
            let back = fleet.now();
            round.liveness = liveness(fleet, book, &[target], &label, back).await;
            if round.fault != Fault::FollowerKill {
                round.failovers.push(first_ack_after(&book.acks(), t0));
            }
        }
        Fault::LeaderPartition => {
            disconnect(fleet, target).await?;
            let t0 = fleet.now();
            tokio::time::sleep(plan.down_for).await;
            connect(fleet, target).await?;
            let back = fleet.now();
            round.liveness = liveness(fleet, book, &[target], &label, back).await;
            round.failovers.push(first_ack_after(&book.acks(), t0));
        }
        Fault::FollowerPartition => {
            disconnect(fleet, target).await?;
            tokio::time::sleep(plan.down_for).await;
            let before = fleet.cluster(leader).await.ok().map(|s| s.term);
            connect(fleet, target).await?;
            let back = fleet.now();
            round.liveness = liveness(fleet, book, &[target], &label, back).await;
            // An election the returning node forces can come seconds later, once its peer
            // connections are back: watch at least HEAL_WINDOW.
            let end = fleet.now().max(back + HEAL_WINDOW);
            tokio::time::sleep(end.saturating_sub(fleet.now())).await;
            round.heal_gap = Some(probe_gap(&book.acks(), back, end));
            let after = fleet.leader().await;
            round.term_changed_on_heal = match (before, after) {
                (Some(b), Some((_, a))) => Some(a != b),
                _ => None,
            };
            if let Some((l, t)) = after {
                round.notes.push(format!(
                    "after heal: leader {} at term {t}",
                    fleet.members[l].name
                ));
            }
        }
        Fault::RollingRestart | Fault::RollingSigkill => {
            for i in 0..fleet.members.len() {
                let was_leader = fleet.leader().await.map(|(l, _)| l) == Some(i);
                let mut t0 = fleet.now();
                if round.fault == Fault::RollingRestart {
                    docker_async(&["restart", &fleet.members[i].container]).await?;
                    fleet.refresh_port(i).await;
                    let took = fleet.now() - t0;
                    round.restarts.push(took);
                    if took >= Duration::from_secs(10) {
                        round.notes.push(format!(
                            "{} took {:.1}s to restart (SIGKILL after 10s)",
                            fleet.members[i].name,
                            took.as_secs_f64()
                        ));
                    }
                } else {
                    kill(fleet, i).await?;
                    t0 = fleet.now();
                    start(fleet, i).await?;
                }
                let back = fleet.now();
                let label = format!("{label}-{i}");
                round
                    .liveness
                    .extend(liveness(fleet, book, &[i], &label, back).await);
                if was_leader && round.fault == Fault::RollingSigkill {
                    round.failovers.push(first_ack_after(&book.acks(), t0));
                }
                if was_leader && round.fault == Fault::RollingRestart {
                    // A stopping leader may serve until it exits, so its restart is timed
                    // by the gap it leaves in the probe's writes, not the first write.
                    let gap = probe_gap(&book.acks(), t0, fleet.now());
                    round.notes.push(format!(
                        "leader {} restarted: longest write gap {:.2}s",
                        fleet.members[i].name,
                        gap.as_secs_f64()
                    ));
                }
            }
        }
    }
    Ok(())
}
