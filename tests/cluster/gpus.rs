//! GPUs with a fake GPU source: machines publish them as documented labels and facts, a
//! job that asks for GPUs goes only where that many are free (or waits, saying so), and a
//! fleet below protocol level 9 refuses such a job.
//!
//! node-0 has no GPU, node-1 one, node-2 two. node-2 runs no jobs, so what is placed there
//! stays dispatched and holds its GPUs for as long as the test looks.

use serde_json::{Value, json};
use shoal_daemon::config::Timings;
use shoal_daemon::gpus::FakeGpus;
use shoal_daemon::testsuite::{Cluster, init_logs};
use shoal_protocol::api::MachineView;
use shoal_protocol::{Gpu, JobId, JobState, MachineId, ProtocolLevel};

use crate::http::{machines, post};

/// Two GPUs in use as the fake reports them: the API shows this live use.
fn two_gpus() -> FakeGpus {
    FakeGpus::new(
        (0..2)
            .map(|index| Gpu {
                index,
                uuid: format!("GPU-two-{index}"),
                model: "Fake GPU X2".into(),
                memory_mb: 16384,
                memory_used_mb: 512 * (index as u64 + 1),
                utilization_percent: 40 + index,
            })
            .collect(),
    )
}

fn gpu_job(gpus: u32) -> Value {
    // Never pulled: nothing leaves the machine, and where the job went is what counts.
    json!({"image": "shoal-never-pulled:local", "command": ["true"], "gpus": gpus,
        "pull": "never", "max_attempts": 1})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_jobs_go_only_where_enough_gpus_are_free() {
    init_logs();
    let cluster = Cluster::start_configured(3, Timings::fast(), |config| {
        match config.node_name.as_str() {
            "node-1" => config.fake_gpus = Some(FakeGpus::of(1, "Fake GPU X1", 8192)),
            "node-2" => {
                config.fake_gpus = Some(two_gpus());
                config.run_jobs = false;
            }
            _ => config.fake_gpus = Some(FakeGpus::new(Vec::new())),
        }
    })
    .await
    .unwrap();
    let ids: Vec<MachineId> = (0..3).map(|i| cluster.node(i).id).collect();
    let api = cluster.api(0);

    // The labels and facts, as a user reads them.
    let listed = machines(&api).await;
    let seen = |i: usize| -> &MachineView {
        listed
            .iter()
            .find(|m| m.id == ids[i])
            .expect("every machine listed")
    };
    let gpu_labels = |i: usize| -> Vec<(String, String)> {
        seen(i)
            .labels
            .iter()
            .filter(|(k, _)| k.starts_with("gpu"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(gpu_labels(0), pairs(&[]));
    assert!(seen(0).gpus.is_empty());
    assert_eq!(
        gpu_labels(1),
        pairs(&[
            ("gpu", "true"),
            ("gpu_count", "1"),
            ("gpu_memory_mb", "8192"),
            ("gpu_model", "Fake-GPU-X1"),
        ])
    );
    assert_eq!(
        gpu_labels(2),
        pairs(&[
            ("gpu", "true"),
            ("gpu_count", "2"),
            ("gpu_memory_mb", "16384"),
            ("gpu_model", "Fake-GPU-X2"),
        ])
    );
    let used: Vec<(u32, u64, u32)> = seen(2)
        .gpus
        .iter()
        .map(|g| (g.index, g.memory_used_mb, g.utilization_percent))
        .collect();
    assert_eq!(used, [(0, 512, 40), (1, 1024, 41)], "the GPUs' live use");
    let has_docker = listed.iter().all(|m| m.labels.get("docker").is_some());
    assert!(
        has_docker,
        "the test machine runs a Docker engine, as CI's does"
    );

    let attempts_of = |id: JobId| -> Vec<MachineId> {
        let job = cluster.node(0).fleet.read(|s| s.jobs[&id].clone());
        job.attempts.iter().map(|a| a.machine).collect()
    };

    // Two GPUs: only node-2 has them free, at the first attempt.
    let first = cluster.submit(0, gpu_job(2)).await;
    cluster
        .wait_job(0, first, "dispatched", |j| !j.attempts.is_empty())
        .await;
    assert_eq!(attempts_of(first), [ids[2]]);

    // While it holds both, a second such job waits, saying why, and never goes to node-1.
    let second = cluster.submit(1, gpu_job(2)).await;
    let job = cluster
        .wait_job(0, second, "a queue reason", |j| j.queue_reason.is_some())
        .await;
    assert_eq!(
        job.queue_reason.as_deref(),
        Some("no ONLINE machine has 2 free GPUs (3 ONLINE machines match)")
    );
    assert_eq!(job.state, JobState::Queued);
    assert!(job.attempts.is_empty(), "{:?}", job.attempts);

    // One GPU fits node-1 (node-2's are held).
    let third = cluster.submit(2, gpu_job(1)).await;
    cluster
        .wait_job(0, third, "dispatched", |j| !j.attempts.is_empty())
        .await;
    assert_eq!(attempts_of(third), [ids[1]]);
    // Nothing moved the waiting job meanwhile.
    assert!(attempts_of(second).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_below_level_nine_refuses_gpu_jobs() {
    init_logs();
    let cluster = Cluster::start_at_level(1, ProtocolLevel(8)).await.unwrap();
    let (code, body) = post(format!("{}/v1/jobs", cluster.api(0)), gpu_job(1)).await;
    assert_eq!(code, 409, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("needs protocol level 9"), "{message}");
    let jobs = cluster.node(0).fleet.read(|s| s.jobs.len());
    assert_eq!(jobs, 0, "nothing was submitted");
    // The document says what `gpus` is, for jobs, templates and machines.
    let document: Value = crate::http::get(format!("{}/v1/openapi.json", cluster.api(0))).await;
    let schemas = &document["components"]["schemas"];
    for (schema, field) in [
        ("JobRequest", "gpus"),
        ("TemplateRequest", "gpus"),
        ("MachineView", "gpus"),
        ("Gpu", "utilization_percent"),
    ] {
        let properties = &schemas[schema]["properties"];
        assert!(
            properties.get(field).is_some(),
            "{schema}.{field}: {properties}"
        );
    }
    // A process job asking for GPUs is a 400 naming the field, at any level.
    let process = json!({"command": ["true"], "gpus": 1});
    let (code, body) = post(format!("{}/v1/jobs", cluster.api(0)), process).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("gpus are handed to a container"),
        "{body}"
    );
}
