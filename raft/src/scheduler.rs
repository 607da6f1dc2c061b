//! The pure scheduler: queued jobs and a view of the machines in, placements and the reasons
//! the rest wait out. The leader runs it and commits the plan as `Dispatch` and
//! `SetQueueReasons`; `apply` skips placements that went stale in between.
//!
//! ```text
//!  queue, by priority (high first) then id ──▶ for each job:
//!      in retry backoff? ─────────────────────────────────▶ waits
//!      ONLINE ─▶ required labels ─▶ can run it: process jobs allowed (no image), or Docker
//!             and every policy that selects the machine accepts the container (image),
//!             and as many GPUs free as the job asks for (none held by work placed there)
//!             ─▶ load < threshold ─▶ running + reserved < max_running
//!             ─▶ not tried by an earlier attempt, least loaded (to 0.1 per core; among
//!                those, one holding the image first), fewest running, lowest id
//!      any stage empty ───────────────────────────────────▶ waits, with that stage's reason
//!      placed ─▶ counts as reserved on its machine for the rest of the pass
//! ```
//!
//! The policy check is the one the machine makes before it starts a container
//! ([`shoal_protocol::policies::govern`]), and so is the GPU check
//! ([`shoal_protocol::gpus::fits`]), so the two cannot disagree.

use std::collections::{BTreeMap, BTreeSet};

use shoal_protocol::gpus;
use shoal_protocol::image_ref::image_key;
use shoal_protocol::policies::{ContainerAsk, Policy, govern};
use shoal_protocol::{
    JobId, JobRecord, JobState, JobTarget, Labels, MachineId, MachineStatus, Placement, UnixMillis,
};

/// One machine as the leader sees it now (the live gossip view over the committed record).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: MachineId,
    pub status: MachineStatus,
    /// The labels jobs match: the machine's own with operator labels on top.
    pub labels: Labels,
    /// Load per core, as in the machine's heartbeat.
    pub load: f32,
    pub running: u32,
    /// The machine's work limit; 0 means no limit, as in status derivation.
    pub max_running: u32,
    /// Each reserved placement counts as one busy core of these in the projected load.
    pub cpu_cores: u32,
    /// Whether the machine can run a job's `image` (the leader decides how it knows).
    pub has_docker: bool,
    /// Whether the machine runs jobs without an image (`allow_process_jobs`).
    pub runs_processes: bool,
    /// The machine's GPUs.
    pub gpus: u32,
    /// Its GPUs that no job placed or running there holds.
    pub free_gpus: u32,
    /// Keys of the images its engine holds, sorted ([`shoal_protocol::image_ref::image_key`]).
    pub images: Vec<u64>,
}

impl Candidate {
    /// Whether the machine holds `image` already, so a job of it starts without a pull.
    fn holds(&self, image: Option<&str>) -> bool {
        image.is_some_and(|image| self.images.binary_search(&image_key(image)).is_ok())
    }
}

/// Work the leader placed that the machines' heartbeats do not show yet, per machine, and
/// the GPUs a pass gave out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reservations {
    jobs: BTreeMap<MachineId, u32>,
    gpus: BTreeMap<MachineId, u32>,
}

impl Reservations {
    pub fn new() -> Self {
        Reservations::default()
    }

    /// Jobs reserved on `machine`.
    pub fn get(&self, machine: MachineId) -> u32 {
        self.jobs.get(&machine).copied().unwrap_or(0)
    }

    /// Reserves `n` more jobs on `machine`.
    pub fn add(&mut self, machine: MachineId, n: u32) {
        let entry = self.jobs.entry(machine).or_insert(0);
        *entry = entry.saturating_add(n);
    }

    /// Releases up to `n` jobs on `machine` (its heartbeat now counts them).
    pub fn release(&mut self, machine: MachineId, n: u32) {
        if let Some(entry) = self.jobs.get_mut(&machine) {
            *entry = entry.saturating_sub(n);
            if *entry == 0 {
                self.jobs.remove(&machine);
            }
        }
    }

    /// GPUs given out on `machine` (beyond those [`Candidate::free_gpus`] counts held).
    pub fn gpus(&self, machine: MachineId) -> u32 {
        self.gpus.get(&machine).copied().unwrap_or(0)
    }

    /// Gives out `n` more GPUs on `machine`.
    pub fn add_gpus(&mut self, machine: MachineId, n: u32) {
        let entry = self.gpus.entry(machine).or_insert(0);
        *entry = entry.saturating_add(n);
    }

    pub fn iter(&self) -> impl Iterator<Item = (MachineId, u32)> + '_ {
        self.jobs.iter().map(|(id, n)| (*id, *n))
    }
}

impl FromIterator<(MachineId, u32)> for Reservations {
    fn from_iter<I: IntoIterator<Item = (MachineId, u32)>>(iter: I) -> Self {
        let mut out = Reservations::new();
        for (machine, n) in iter {
            out.add(machine, n);
        }
        out
    }
}

/// The scheduler's settings, and the fleet's policies (borrowed from the state a pass
/// reads, so a pass copies none).
#[derive(Debug, Clone, PartialEq)]
pub struct PlaceConfig<'a> {
    /// A machine at or over this load per core takes no new job.
    pub load_threshold: f32,
    /// Every policy: a container goes only where each one that selects the machine
    /// accepts it.
    pub policies: Vec<&'a Policy>,
}

impl Default for PlaceConfig<'_> {
    fn default() -> Self {
        PlaceConfig {
            load_threshold: 0.8,
            policies: Vec::new(),
        }
    }
}

/// One pass's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub placements: Vec<Placement>,
    /// Jobs left queued, each with why, in the order they were considered.
    pub waiting: Vec<(JobId, String)>,
}

/// Places what it can of `queue` on `machines`. Jobs that are not queued, fan-out parents
/// and jobs with a cancel pending are passed over without a reason.
pub fn place(
    queue: &[&JobRecord],
    machines: &[Candidate],
    reservations: &Reservations,
    cfg: &PlaceConfig<'_>,
    now_ms: UnixMillis,
) -> Plan {
    let mut order: Vec<&JobRecord> = queue
        .iter()
        .copied()
        .filter(|job| job.state == JobState::Queued && !job.is_parent() && !job.cancel_requested)
        .collect();
    order.sort_by(|a, b| b.spec.priority.cmp(&a.spec.priority).then(a.id.cmp(&b.id)));
    let mut seen = BTreeSet::new();
    order.retain(|job| seen.insert(job.id));

    let mut reserved = reservations.clone();
    let mut plan = Plan::default();
    for job in order {
        if job.not_before_ms > now_ms {
            let reason = format!(
                "waiting out the retry backoff after {} failed attempt{}",
                job.failures,
                plural(job.failures as usize)
            );
            plan.waiting.push((job.id, reason));
            continue;
        }
        match choose(job, machines, &reserved, cfg) {
            Ok(machine) => {
                reserved.add(machine, 1);
                reserved.add_gpus(machine, job.spec.gpus.unwrap_or(0));
                plan.placements.push(Placement {
                    job: job.id,
                    attempt: job.next_attempt(),
                    machine,
                });
            }
            Err(reason) => plan.waiting.push((job.id, reason)),
        }
    }
    plan
}

/// The best machine for `job`, or why there is none.
fn choose(
    job: &JobRecord,
    machines: &[Candidate],
    reserved: &Reservations,
    cfg: &PlaceConfig<'_>,
) -> Result<MachineId, String> {
    let single = match job.target {
        JobTarget::Machine(id) => Some(id),
        JobTarget::Any | JobTarget::AllOnline => None,
    };
    let pool: Vec<&Candidate> = match single {
        Some(id) => match machines.iter().find(|m| m.id == id) {
            None => return Err(format!("machine {id} is not in the fleet")),
            Some(m) if m.status != MachineStatus::Online => {
                return Err(format!("machine {id} is {}", m.status));
            }
            Some(m) => vec![m],
        },
        None => machines
            .iter()
            .filter(|m| m.status == MachineStatus::Online)
            .collect(),
    };
    if pool.is_empty() {
        return Err(no_machine_online(machines));
    }

    let required = &job.spec.required_labels;
    let has = |m: &Candidate, k: &str, v: &str| m.labels.get(k) == Some(v);
    let labelled: Vec<&Candidate> = pool
        .iter()
        .copied()
        .filter(|m| required.iter().all(|(k, v)| has(m, k, v)))
        .collect();
    if labelled.is_empty() {
        let missing = required
            .iter()
            .find(|(k, v)| !pool.iter().any(|m| has(m, k, v)));
        return Err(match (single, missing) {
            (Some(id), Some((k, v))) => format!("machine {id} lacks label {k}={v}"),
            (None, Some((k, v))) => format!("no ONLINE machine has label {k}={v}"),
            (_, None) => {
                let all: Vec<String> = required.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("no ONLINE machine has all of the labels {}", all.join(","))
            }
        });
    }

    let pool = able(job, labelled, single, reserved, cfg)?;

    let threshold = cfg.load_threshold;
    // The load the machine will have once its reserved placements run: one busy core each.
    let load = |m: &Candidate| m.load + reserved.get(m.id) as f32 / m.cpu_cores.max(1) as f32;
    // A load that is not a number fails the comparison, so it counts as over the threshold.
    let cool: Vec<&Candidate> = pool
        .iter()
        .copied()
        .filter(|m| load(m) < threshold)
        .collect();
    if cool.is_empty() {
        return Err(match single {
            Some(id) => format!(
                "machine {id} is over load {threshold} ({:.2})",
                load(pool[0])
            ),
            None => format!(
                "{} machine{} match{}, all over load {threshold}",
                pool.len(),
                plural(pool.len()),
                verb_s(pool.len())
            ),
        });
    }

    let busy = |m: &Candidate| m.running.saturating_add(reserved.get(m.id));
    // A retry goes to a machine no earlier attempt ran on, when one can take it.
    let tried = |m: &Candidate| job.attempts.iter().any(|a| a.machine == m.id);
    let free: Vec<&Candidate> = cool
        .iter()
        .copied()
        .filter(|m| m.max_running == 0 || busy(m) < m.max_running)
        .collect();
    // Loads within the same tenth of a core count as equal, and among equals a machine
    // that holds the image needs no pull. Loads here are below the threshold, so finite.
    let tenths = |m: &Candidate| (load(m) * 10.0).floor() as i64;
    let image = job.spec.image.as_deref();
    let Some(best) = free.iter().min_by(|a, b| {
        tried(a)
            .cmp(&tried(b))
            .then(tenths(a).cmp(&tenths(b)))
            .then(b.holds(image).cmp(&a.holds(image)))
            .then(load(a).total_cmp(&load(b)))
            .then(busy(a).cmp(&busy(b)))
            .then(a.id.cmp(&b.id))
    }) else {
        return Err(match single {
            Some(id) => format!(
                "machine {id} is at its work limit ({} of {})",
                busy(cool[0]),
                cool[0].max_running
            ),
            None => "all matching machines are at their work limit".to_string(),
        });
    };
    Ok(best.id)
}

/// The machines of `pool` that can run `job`: process jobs where they are allowed; a
/// container where Docker answers, every policy selecting the machine accepts it, and as
/// many GPUs as it asks for are free.
fn able<'a>(
    job: &JobRecord,
    pool: Vec<&'a Candidate>,
    single: Option<MachineId>,
    reserved: &Reservations,
    cfg: &PlaceConfig<'_>,
) -> Result<Vec<&'a Candidate>, String> {
    let n = pool.len();
    let matching = format!("{n} ONLINE machine{} match{}", plural(n), verb_s(n));
    let Some(image) = &job.spec.image else {
        let allowed: Vec<&Candidate> = pool.into_iter().filter(|m| m.runs_processes).collect();
        if allowed.is_empty() {
            return Err(match single {
                Some(id) => format!("machine {id} does not allow process jobs"),
                None => format!("no ONLINE machine allows process jobs ({matching})"),
            });
        }
        return Ok(allowed);
    };
    let docker: Vec<&Candidate> = pool.into_iter().filter(|m| m.has_docker).collect();
    if docker.is_empty() {
        return Err(match single {
            Some(id) => format!("machine {id} has no Docker to run image {image}"),
            None => format!("{matching}, none has Docker to run image {image}"),
        });
    }
    let ask = ContainerAsk::for_job(&job.spec);
    let mut refusal = None;
    let accepted: Vec<&Candidate> = docker
        .into_iter()
        .filter(
            |m| match govern(cfg.policies.iter().copied(), &m.labels, ask.clone()) {
                Ok(_) => true,
                Err(why) => {
                    refusal.get_or_insert(why);
                    false
                }
            },
        )
        .collect();
    let accepted = match (accepted.is_empty(), refusal, single) {
        (true, Some(why), Some(id)) => return Err(format!("machine {id} refuses it: {why}")),
        (true, Some(why), None) => {
            return Err(format!(
                "{matching} with Docker, a policy refuses it on each: {why}"
            ));
        }
        _ => accepted,
    };
    with_free_gpus(job, accepted, single, reserved, &matching)
}

/// The machines of `pool` with as many free GPUs as `job` asks for: its GPUs less those
/// held by work placed there and those this pass gave out.
fn with_free_gpus<'a>(
    job: &JobRecord,
    pool: Vec<&'a Candidate>,
    single: Option<MachineId>,
    reserved: &Reservations,
    matching: &str,
) -> Result<Vec<&'a Candidate>, String> {
    let Some(want) = job.spec.gpus else {
        return Ok(pool);
    };
    let free = |m: &Candidate| m.free_gpus.saturating_sub(reserved.gpus(m.id));
    let fit: Vec<&Candidate> = pool
        .iter()
        .copied()
        .filter(|m| gpus::fits(Some(want), free(m)))
        .collect();
    if !fit.is_empty() {
        return Ok(fit);
    }
    Err(match (single, pool.first()) {
        (Some(id), Some(m)) if m.gpus == 0 => {
            format!("machine {id} has no GPU, the job needs {want}")
        }
        (Some(id), Some(m)) => format!(
            "machine {id} has {} free GPU{} of {}, the job needs {want}",
            free(m),
            plural(free(m) as usize),
            m.gpus
        ),
        _ => format!(
            "no ONLINE machine has {want} free GPU{} ({matching})",
            plural(want as usize)
        ),
    })
}

/// "no machine is ONLINE", with how many are in each other status.
fn no_machine_online(machines: &[Candidate]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in machines {
        *counts.entry(m.status.to_string()).or_default() += 1;
    }
    if counts.is_empty() {
        return "no machine is ONLINE (the fleet has no machines)".to_string();
    }
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!("no machine is ONLINE ({})", counts.join(", "))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// "1 machine matches", "2 machines match".
fn verb_s(n: usize) -> &'static str {
    if n == 1 { "es" } else { "" }
}

#[cfg(test)]
mod tests;
