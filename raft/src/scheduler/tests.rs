//! Scheduler rules, one test each, and the invariants as properties.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use shoal_protocol::{JobSpec, MachineStatus::*};

use super::*;

fn machine(id: u64, labels: &[&str]) -> Candidate {
    Candidate {
        id: MachineId(id),
        status: Online,
        labels: Labels::from_pairs(labels.iter().copied()).unwrap(),
        load: 0.1,
        running: 0,
        max_running: 4,
        cpu_cores: 4,
        has_docker: false,
        runs_processes: true,
        images: Vec::new(),
        gpus: 0,
        free_gpus: 0,
    }
}

/// A machine with Docker and `gpus` GPUs, `held` of them held by work placed there.
fn gpu_machine(id: u64, gpus: u32, held: u32) -> Candidate {
    Candidate {
        has_docker: true,
        gpus,
        free_gpus: gpus - held,
        ..machine(id, &[])
    }
}

fn gpu_job(id: u64, gpus: u32) -> JobRecord {
    job(id, |spec| {
        spec.image = Some("trainer:local".into());
        spec.gpus = Some(gpus);
    })
}

fn job(id: u64, f: impl FnOnce(&mut JobSpec)) -> JobRecord {
    let mut spec = JobSpec::new(["true"]);
    f(&mut spec);
    let target = spec.target().unwrap();
    JobRecord::queued(JobId(id), spec, target, 0, id)
}

fn plain(id: u64) -> JobRecord {
    job(id, |_| {})
}

fn run(jobs: &[JobRecord], machines: &[Candidate]) -> Plan {
    let queue: Vec<&JobRecord> = jobs.iter().collect();
    place(
        &queue,
        machines,
        &Reservations::new(),
        &PlaceConfig::default(),
        1_000,
    )
}

fn placed_on(plan: &Plan) -> Vec<(u64, u64)> {
    plan.placements
        .iter()
        .map(|p| (p.job.0, p.machine.0))
        .collect()
}

fn reason(plan: &Plan, id: u64) -> &str {
    plan.waiting
        .iter()
        .find(|(job, _)| job.0 == id)
        .map(|(_, reason)| reason.as_str())
        .unwrap_or_else(|| panic!("job {id} is not waiting: {plan:?}"))
}

#[test]
fn least_loaded_wins_then_fewest_running_then_lowest_id() {
    let mut a = machine(1, &[]);
    let mut b = machine(2, &[]);
    let c = machine(3, &[]);
    a.load = 0.5;
    b.running = 1;
    let plan = run(&[plain(10)], &[a.clone(), b.clone(), c.clone()]);
    assert_eq!(placed_on(&plan), [(10, 3)]);
    let plan = run(&[plain(10)], &[a, b, machine(4, &[]), machine(5, &[])]);
    assert_eq!(placed_on(&plan), [(10, 4)]);
}

#[test]
fn a_burst_spreads_over_the_fleet() {
    let jobs: Vec<JobRecord> = (1..=4).map(plain).collect();
    let plan = run(&jobs, &[machine(1, &[]), machine(2, &[])]);
    assert_eq!(placed_on(&plan), [(1, 1), (2, 2), (3, 1), (4, 2)]);
    assert!(plan.placements.iter().all(|p| p.attempt == 1));
}

#[test]
fn reservations_count_against_the_work_limit() {
    let mut m = machine(1, &[]);
    m.running = 2;
    m.max_running = 3;
    let jobs = [plain(1), plain(2)];
    let queue: Vec<&JobRecord> = jobs.iter().collect();
    let reserved: Reservations = [(MachineId(1), 1)].into_iter().collect();
    let plan = place(&queue, &[m.clone()], &reserved, &PlaceConfig::default(), 0);
    assert!(plan.placements.is_empty());
    assert_eq!(
        reason(&plan, 1),
        "all matching machines are at their work limit"
    );
    let plan = run(&jobs, &[m]);
    assert_eq!(placed_on(&plan), [(1, 1)]);
    assert_eq!(
        reason(&plan, 2),
        "all matching machines are at their work limit"
    );
}

#[test]
fn priority_first_then_submission_order() {
    let jobs = [
        plain(1),
        job(2, |s| s.priority = 5),
        plain(3),
        job(4, |s| s.priority = 5),
    ];
    let mut m = machine(9, &[]);
    m.max_running = 3;
    m.cpu_cores = 16; // placements keep the load low: the work limit binds first
    let plan = run(&jobs, &[m]);
    assert_eq!(placed_on(&plan), [(2, 9), (4, 9), (1, 9)]);
    assert!(reason(&plan, 3).contains("work limit"));
}

#[test]
fn labels_match_key_and_value() {
    let jobs = [job(1, |s| {
        s.required_labels.insert("gpu".into(), "true".into());
    })];
    let plan = run(&jobs, &[machine(1, &["gpu=false"]), machine(2, &["gpu"])]);
    assert_eq!(placed_on(&plan), [(1, 2)]);
    let plan = run(&jobs, &[machine(1, &["gpu=false"])]);
    assert_eq!(reason(&plan, 1), "no ONLINE machine has label gpu=true");
}

#[test]
fn labels_spread_over_machines_are_not_enough() {
    let jobs = [job(1, |s| {
        s.required_labels.insert("gpu".into(), "true".into());
        s.required_labels.insert("zone".into(), "attic".into());
    })];
    let plan = run(&jobs, &[machine(1, &["gpu"]), machine(2, &["zone=attic"])]);
    assert_eq!(
        reason(&plan, 1),
        "no ONLINE machine has all of the labels gpu=true,zone=attic"
    );
}

#[test]
fn only_online_machines_take_work() {
    let mut machines: Vec<Candidate> = [Registering, Busy, Draining, Offline, Stale, Dead]
        .into_iter()
        .enumerate()
        .map(|(i, status)| Candidate {
            status,
            ..machine(i as u64 + 1, &[])
        })
        .collect();
    let plan = run(&[plain(1)], &machines);
    assert_eq!(
        reason(&plan, 1),
        "no machine is ONLINE (1 BUSY, 1 DEAD, 1 DRAINING, 1 OFFLINE, 1 REGISTERING, 1 STALE)"
    );
    assert_eq!(
        reason(&run(&[plain(1)], &[]), 1),
        "no machine is ONLINE (the fleet has no machines)"
    );
    machines.push(machine(7, &[]));
    assert_eq!(placed_on(&run(&[plain(1)], &machines)), [(1, 7)]);
}

#[test]
fn load_at_or_over_the_threshold_is_refused() {
    let mut hot = machine(1, &[]);
    hot.load = 0.8;
    let mut unknown = machine(2, &[]);
    unknown.load = f32::NAN;
    let plan = run(&[plain(1)], &[hot, unknown]);
    assert_eq!(reason(&plan, 1), "2 machines match, all over load 0.8");
}

#[test]
fn an_image_needs_docker() {
    let jobs = [job(1, |s| s.image = Some("alpine:3".into()))];
    let plan = run(&jobs, &[machine(1, &[])]);
    assert_eq!(
        reason(&plan, 1),
        "1 ONLINE machine matches, none has Docker to run image alpine:3"
    );
    let mut docker = machine(2, &[]);
    docker.has_docker = true;
    docker.load = 0.7;
    assert_eq!(placed_on(&run(&jobs, &[machine(1, &[]), docker])), [(1, 2)]);
}

#[test]
fn a_machine_target_goes_there_or_says_why_not() {
    let target = |s: &mut JobSpec| s.agent_id = Some("00000000000000ab".into());
    let jobs = [job(1, target)];
    let plan = run(&jobs, &[machine(1, &[]), machine(0xab, &[])]);
    assert_eq!(placed_on(&plan), [(1, 0xab)]);

    let plan = run(&jobs, &[machine(1, &[])]);
    assert_eq!(
        reason(&plan, 1),
        "machine 00000000000000ab is not in the fleet"
    );
    let off = Candidate {
        status: Offline,
        ..machine(0xab, &[])
    };
    assert_eq!(
        reason(&run(&jobs, &[machine(1, &[]), off]), 1),
        "machine 00000000000000ab is OFFLINE"
    );
    let full = Candidate {
        running: 4,
        ..machine(0xab, &[])
    };
    assert_eq!(
        reason(&run(&jobs, &[full]), 1),
        "machine 00000000000000ab is at its work limit (4 of 4)"
    );
    let hot = Candidate {
        load: 0.95,
        ..machine(0xab, &[])
    };
    assert_eq!(
        reason(&run(&jobs, &[hot]), 1),
        "machine 00000000000000ab is over load 0.8 (0.95)"
    );
}

#[test]
fn backoff_waits_and_others_are_passed_over() {
    let mut retry = plain(1);
    retry.failures = 1;
    retry.not_before_ms = 1_001;
    let mut parent = job(2, |s| s.agent_id = Some("all_online".into()));
    parent.children = vec![JobId(3)];
    let mut running = plain(4);
    running.state = JobState::Running;
    let plan = run(&[retry, parent, running], &[machine(1, &[])]);
    assert!(plan.placements.is_empty());
    assert_eq!(
        plan.waiting,
        [(
            JobId(1),
            "waiting out the retry backoff after 1 failed attempt".to_string()
        )]
    );
}

#[test]
fn the_next_attempt_number_is_placed_once() {
    let mut again = plain(1);
    again.attempts.push(shoal_protocol::Attempt {
        number: 1,
        machine: MachineId(1),
        dispatched_at_ms: 0,
        started_at_ms: None,
        finished_at_ms: Some(1),
        exit_code: Some(1),
        error: None,
        ..Default::default()
    });
    let plan = run(&[again.clone(), again], &[machine(1, &[])]);
    assert_eq!(plan.placements.len(), 1);
    assert_eq!(plan.placements[0].attempt, 2);
}

fn any_job() -> impl Strategy<Value = JobRecord> {
    (
        1u64..30,
        -2i32..3,
        prop::collection::btree_map(prop::sample::select(vec!["gpu", "zone"]), "[ab]", 0..2),
        prop::option::weighted(0.2, 0u64..5),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(id, priority, labels, target, image, backoff)| {
            let mut job = job(id, |s| {
                s.priority = priority;
                s.required_labels = labels
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                s.agent_id = target.map(|m| MachineId(m).to_string());
                s.image = image.then(|| "alpine".to_string());
            });
            if backoff {
                job.not_before_ms = 5_000;
            }
            job
        })
}

fn any_machine() -> impl Strategy<Value = Candidate> {
    (
        0u64..5,
        prop_oneof![3 => Just(Online), 1 => prop::sample::select(MachineStatus::ALL.to_vec())],
        prop::collection::btree_map(prop::sample::select(vec!["gpu", "zone"]), "[ab]", 0..3),
        prop_oneof![8 => 0f32..1.0, 1 => Just(f32::NAN)],
        0u32..4,
        0u32..4,
        any::<bool>(),
    )
        .prop_map(
            |(id, status, labels, load, running, max_running, has_docker)| {
                let labels: BTreeMap<String, String> = labels
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                Candidate {
                    id: MachineId(id),
                    status,
                    labels: Labels::try_from(labels).unwrap(),
                    load,
                    running,
                    max_running,
                    cpu_cores: 2,
                    has_docker,
                    runs_processes: id % 3 != 0,
                    images: Vec::new(),
                    gpus: (id % 3) as u32,
                    free_gpus: (id % 2) as u32,
                }
            },
        )
}

/// The scheduler's inputs, with job and machine ids made unique.
fn scenario() -> impl Strategy<Value = (Vec<JobRecord>, Vec<Candidate>, Reservations)> {
    (
        prop::collection::vec(any_job(), 0..25),
        prop::collection::vec(any_machine(), 0..6),
        prop::collection::vec((0u64..5, 0u32..3), 0..4),
    )
        .prop_map(|(mut jobs, mut machines, reserved)| {
            let mut seen = BTreeSet::new();
            jobs.retain(|j| seen.insert(j.id));
            let mut seen = BTreeSet::new();
            machines.retain(|m| seen.insert(m.id));
            (
                jobs,
                machines,
                reserved
                    .into_iter()
                    .map(|(m, n)| (MachineId(m), n))
                    .collect(),
            )
        })
}

/// Two jobs any machine would take or refuse alike.
fn same_fit(a: &JobRecord, b: &JobRecord) -> bool {
    a.spec.required_labels == b.spec.required_labels
        && a.spec.image.is_some() == b.spec.image.is_some()
        && a.target == b.target
}

proptest! {
    #[test]
    fn placements_keep_every_rule((jobs, machines, reserved) in scenario()) {
        let queue: Vec<&JobRecord> = jobs.iter().collect();
        let cfg = PlaceConfig::default();
        let plan = place(&queue, &machines, &reserved, &cfg, 1_000);
        let by_id: BTreeMap<JobId, &JobRecord> = jobs.iter().map(|j| (j.id, j)).collect();
        let mut placed = BTreeSet::new();
        let mut per_machine: BTreeMap<MachineId, u32> = BTreeMap::new();
        for p in &plan.placements {
            prop_assert!(placed.insert(p.job), "job {} placed twice", p.job);
            let job = by_id[&p.job];
            let m = machines.iter().find(|m| m.id == p.machine).unwrap();
            prop_assert_eq!(m.status, MachineStatus::Online);
            for (k, v) in &job.spec.required_labels {
                prop_assert_eq!(m.labels.get(k), Some(v.as_str()), "label {}", k);
            }
            prop_assert!(m.load < cfg.load_threshold);
            prop_assert!(job.spec.image.is_none() || m.has_docker);
            prop_assert!(job.spec.image.is_some() || m.runs_processes);
            prop_assert!(job.not_before_ms <= 1_000);
            if let JobTarget::Machine(id) = job.target {
                prop_assert_eq!(id, m.id);
            }
            *per_machine.entry(m.id).or_default() += 1;
        }
        for (id, n) in per_machine {
            let m = machines.iter().find(|m| m.id == id).unwrap();
            prop_assert!(
                m.max_running == 0 || m.running + reserved.get(id) + n <= m.max_running,
                "machine {} over its limit", id
            );
        }
        // Every job is placed or waits, never both.
        let waiting: BTreeSet<JobId> = plan.waiting.iter().map(|(id, _)| *id).collect();
        prop_assert!(placed.is_disjoint(&waiting));
        let all: BTreeSet<JobId> = jobs.iter().map(|j| j.id).collect();
        prop_assert_eq!(placed.union(&waiting).copied().collect::<BTreeSet<_>>(), all);
        // A higher priority never waits for a machine while an equal fit of lower priority
        // got one.
        for (id, _) in &plan.waiting {
            let high = by_id[id];
            if high.not_before_ms > 1_000 {
                continue;
            }
            for p in &plan.placements {
                let low = by_id[&p.job];
                prop_assert!(
                    !(low.spec.priority < high.spec.priority && same_fit(low, high)),
                    "job {} (priority {}) waits while job {} (priority {}) was placed",
                    high.id, high.spec.priority, low.id, low.spec.priority
                );
            }
        }
    }
}

#[test]
fn a_burst_spreads_because_each_placement_adds_load() {
    let machines = [machine(1, &[]), machine(2, &[]), machine(3, &[])];
    let burst: Vec<JobRecord> = (1..=6).map(plain).collect();
    let plan = run(&burst, &machines);
    let mut per_machine = BTreeMap::new();
    for p in &plan.placements {
        *per_machine.entry(p.machine).or_insert(0) += 1;
    }
    assert_eq!(
        per_machine.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "{per_machine:?}"
    );
}

#[test]
fn process_jobs_go_only_where_they_are_allowed() {
    let closed = |id| Candidate {
        runs_processes: false,
        ..machine(id, &[])
    };
    let plan = run(&[plain(1)], &[closed(1), closed(2), closed(3)]);
    assert_eq!(
        reason(&plan, 1),
        "no ONLINE machine allows process jobs (3 ONLINE machines match)"
    );
    let plan = run(&[plain(1)], &[closed(1), machine(2, &[]), closed(3)]);
    assert_eq!(placed_on(&plan), [(1, 2)]);
    let pinned = job(2, |s| s.agent_id = Some(MachineId(1).to_string()));
    let plan = run(&[pinned], &[closed(1)]);
    assert_eq!(
        reason(&plan, 2),
        "machine 0000000000000001 does not allow process jobs"
    );
}

fn docker_machine(id: u64, labels: &[&str]) -> Candidate {
    Candidate {
        has_docker: true,
        ..machine(id, labels)
    }
}

fn container(id: u64, image: &str) -> JobRecord {
    job(id, |s| s.image = Some(image.to_string()))
}

#[test]
fn a_container_goes_only_where_every_policy_accepts_it() {
    use shoal_protocol::policies::{Policy, PolicySpec};
    let strict = Policy {
        name: "strict".into(),
        spec: PolicySpec {
            selector: [("zone".to_string(), "dmz".to_string())].into(),
            allowed_images: vec!["busybox:*".into()],
            ..PolicySpec::default()
        },
        updated_at_ms: 0,
        updated_by: "k".into(),
    };
    let cfg = PlaceConfig {
        policies: vec![&strict],
        ..PlaceConfig::default()
    };
    let machines = [docker_machine(1, &["zone=dmz"]), docker_machine(2, &[])];
    let alpine = container(1, "alpine:3");
    let plan = place(&[&alpine], &machines, &Reservations::new(), &cfg, 1_000);
    assert_eq!(
        placed_on(&plan),
        [(1, 2)],
        "the machine the policy governs is passed over"
    );
    let plan = place(
        &[&alpine],
        &machines[..1],
        &Reservations::new(),
        &cfg,
        1_000,
    );
    let why = reason(&plan, 1);
    assert!(
        why.starts_with("1 ONLINE machine matches with Docker, a policy refuses it on each: policy strict: image alpine:3"),
        "{why}"
    );
    let busybox = container(2, "busybox:1");
    let plan = place(
        &[&busybox],
        &machines[..1],
        &Reservations::new(),
        &cfg,
        1_000,
    );
    assert_eq!(placed_on(&plan), [(2, 1)]);
}

#[test]
fn a_retry_goes_to_a_machine_the_job_has_not_failed_on() {
    let mut retried = plain(1);
    retried.attempts.push(shoal_protocol::Attempt {
        number: 1,
        machine: MachineId(1),
        ..shoal_protocol::Attempt::default()
    });
    // Machine 1 is the least loaded, but the first attempt failed there.
    let cooler = Candidate {
        load: 0.0,
        ..machine(1, &[])
    };
    let plan = run(&[retried.clone()], &[cooler.clone(), machine(2, &[])]);
    assert_eq!(placed_on(&plan), [(1, 2)]);
    // Alone, it takes the retry after all.
    let plan = run(&[retried], &[cooler]);
    assert_eq!(placed_on(&plan), [(1, 1)]);
}

#[test]
fn among_machines_about_as_loaded_one_holding_the_image_comes_first() {
    use shoal_protocol::image_ref::image_key;
    let holding = |id, load| Candidate {
        load,
        images: vec![image_key("docker.io/library/busybox:latest")],
        ..docker_machine(id, &[])
    };
    let bare = |id, load| Candidate {
        load,
        ..docker_machine(id, &[])
    };
    // Same tenth of a core: the one holding the image, though a little busier.
    let plan = run(
        &[container(1, "busybox")],
        &[bare(1, 0.31), holding(2, 0.38)],
    );
    assert_eq!(placed_on(&plan), [(1, 2)]);
    // Clearly less loaded wins over holding the image.
    let plan = run(&[container(1, "busybox")], &[bare(1, 0.1), holding(2, 0.5)]);
    assert_eq!(placed_on(&plan), [(1, 1)]);
    // Another image: no preference, the least loaded.
    let plan = run(
        &[container(1, "alpine:3.20")],
        &[bare(1, 0.31), holding(2, 0.30)],
    );
    assert_eq!(placed_on(&plan), [(1, 2)]);
    let plan = run(
        &[container(1, "alpine:3.20")],
        &[bare(1, 0.30), holding(2, 0.31)],
    );
    assert_eq!(placed_on(&plan), [(1, 1)]);
}

#[test]
fn a_gpu_job_goes_only_where_enough_gpus_are_free() {
    let fleet = [
        gpu_machine(1, 1, 0),
        gpu_machine(2, 2, 0),
        gpu_machine(3, 0, 0),
    ];
    let plan = run(&[gpu_job(10, 2)], &fleet);
    assert_eq!(placed_on(&plan), [(10, 2)]);
    // One GPU fits either GPU machine; the least loaded, lowest id wins.
    let plan = run(&[gpu_job(11, 1)], &fleet);
    assert_eq!(placed_on(&plan), [(11, 1)]);
    // A job without GPUs may still go to a machine with them.
    let plain_container = job(12, |spec| spec.image = Some("app:local".into()));
    assert_eq!(placed_on(&run(&[plain_container], &fleet)), [(12, 1)]);
}

#[test]
fn gpus_held_or_given_out_in_the_pass_are_not_free() {
    // Two jobs of two GPUs: the second waits, since the first holds both of machine 2's.
    let fleet = [
        gpu_machine(1, 1, 0),
        gpu_machine(2, 2, 0),
        gpu_machine(3, 0, 0),
    ];
    let plan = run(&[gpu_job(10, 2), gpu_job(11, 2)], &fleet);
    assert_eq!(placed_on(&plan), [(10, 2)]);
    assert_eq!(
        reason(&plan, 11),
        "no ONLINE machine has 2 free GPUs (3 ONLINE machines match)"
    );
    // Held by work the log placed there: the same.
    let held = [gpu_machine(1, 1, 0), gpu_machine(2, 2, 1)];
    let plan = run(&[gpu_job(12, 2)], &held);
    assert_eq!(
        reason(&plan, 12),
        "no ONLINE machine has 2 free GPUs (2 ONLINE machines match)"
    );
    // Three one-GPU jobs on a 1-GPU and a 2-GPU machine: all placed, then one waits.
    let jobs: Vec<JobRecord> = (20..24).map(|id| gpu_job(id, 1)).collect();
    let plan = run(&jobs, &fleet[..2]);
    assert_eq!(placed_on(&plan), [(20, 1), (21, 2), (22, 2)]);
    assert_eq!(
        reason(&plan, 23),
        "no ONLINE machine has 1 free GPU (2 ONLINE machines match)"
    );
}

#[test]
fn a_gpu_job_held_to_one_machine_says_how_many_are_free() {
    let pinned = |id, machine: u64, gpus| {
        job(id, |spec| {
            spec.image = Some("trainer:local".into());
            spec.gpus = Some(gpus);
            spec.agent_id = Some(MachineId(machine).to_string());
        })
    };
    let fleet = [gpu_machine(1, 2, 1), gpu_machine(3, 0, 0)];
    let plan = run(&[pinned(10, 1, 2)], &fleet);
    assert_eq!(
        reason(&plan, 10),
        format!(
            "machine {} has 1 free GPU of 2, the job needs 2",
            MachineId(1)
        )
    );
    let plan = run(&[pinned(11, 3, 1)], &fleet);
    assert_eq!(
        reason(&plan, 11),
        format!("machine {} has no GPU, the job needs 1", MachineId(3))
    );
}

proptest! {
    /// However GPUs are held and asked for, no machine is given more GPUs than it has free.
    #[test]
    fn no_machine_is_given_more_gpus_than_are_free(
        machines in prop::collection::vec((0u32..4, 0u32..4), 1..5),
        asks in prop::collection::vec(1u32..4, 1..12),
    ) {
        let fleet: Vec<Candidate> = machines
            .iter()
            .enumerate()
            .map(|(i, (gpus, held))| gpu_machine(i as u64 + 1, gpus + held, *held))
            .collect();
        let jobs: Vec<JobRecord> = asks
            .iter()
            .enumerate()
            .map(|(i, n)| gpu_job(100 + i as u64, *n))
            .collect();
        let plan = run(&jobs, &fleet);
        let mut given: BTreeMap<u64, u32> = BTreeMap::new();
        for p in &plan.placements {
            let job = jobs.iter().find(|j| j.id == p.job).unwrap();
            *given.entry(p.machine.0).or_default() += job.spec.gpus.unwrap();
        }
        for m in &fleet {
            prop_assert!(given.get(&m.id.0).copied().unwrap_or(0) <= m.free_gpus);
        }
        prop_assert_eq!(plan.placements.len() + plan.waiting.len(), jobs.len());
    }
}
