//! Container jobs through a live three-node cluster: CPU and memory limits reach the
//! container, so does a policy's confinement (capabilities, user), a job whose machine is
//! killed runs
//! again elsewhere as attempt 2, a running container is cancelled through the API, and a
//! restarted `shoald` adopts the container it left running and reports its real exit code.
//!
//! One test with one cluster: the scenarios share the engine and the image, and a cluster
//! takes seconds to form.

use serde_json::json;
use shoal_daemon::exec::docker::container_name;
use shoal_daemon::testsuite::{Cluster, init_logs};
use shoal_protocol::{JobRecord, JobState, MachineId};

use crate::support::{IMAGE, docker, job_output, test_image};

fn index_of(cluster: &Cluster, machine: MachineId) -> usize {
    cluster
        .running()
        .into_iter()
        .find(|&i| cluster.node(i).id == machine)
        .expect("the machine is one of the running nodes")
}

fn current_machine(job: &JobRecord) -> MachineId {
    job.current_attempt().expect("an attempt").machine
}

/// Removes the containers the cluster's machines left behind (a killed machine leaves its
/// containers running, as a powered-off one would not), also when the test fails.
pub struct LeftBehind(pub Vec<MachineId>);

impl Drop for LeftBehind {
    fn drop(&mut self) {
        for node in &self.0 {
            let ids = docker(&["ps", "-aq", "--filter", &format!("label=shoal.node={node}")]);
            for id in ids.split_whitespace() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f", id])
                    .output();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_jobs_survive_machine_loss_cancel_and_daemon_restart() {
    init_logs();
    let _image = test_image();
    let mut cluster = Cluster::start(3).await.unwrap();
    let _left_behind = LeftBehind((0..3).map(|i| cluster.node(i).id).collect());
    let sh = |script: &str| json!({"image": IMAGE, "command": ["sh", "-c", script]});

    // A running container, with the job's limits, cancelled through the API of another
    // node: stopped, removed, cancelled.
    let api = cluster.api(0);
    let limited = json!({"image": IMAGE, "command": ["sh", "-c", "trap 'exit 143' TERM; echo up; sleep 60 & wait"],
        "cpus": 0.5, "memory_mb": 64});
    let id = cluster.submit(0, limited).await;
    let job = cluster
        .wait_job(cluster.running()[0], id, "running", |j| {
            j.state == JobState::Running
        })
        .await;
    let machine = current_machine(&job).to_string();
    let name = container_name(Some(&machine), id.0, 1);
    let limits = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}",
        &name,
    ]);
    assert_eq!(limits, format!("500000000 {}", 64 << 20));
    let response = shoal_daemon::testsuite::http_client()
        .post(format!("{api}/v1/jobs/{id}/cancel"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let job = cluster
        .wait_job(cluster.running()[0], id, "cancelled", |j| {
            j.state == JobState::Cancelled
        })
        .await;
    let gone = docker(&["ps", "-aq", "--filter", &format!("name=^/{name}$")]);
    assert!(gone.is_empty(), "the cancelled container is removed");
    assert!(job.attempts[0].finished_at_ms.is_some());

    // A restarted shoald adopts the container it left running: the job keeps attempt 1,
    // ends with the container's real exit code, and all of its output is readable.
    let once = json!({"image": IMAGE, "command": ["sh", "-c", "echo before; sleep 4; echo after; exit 7"], "max_attempts": 1});
    let id = cluster.submit(cluster.running()[0], once).await;
    let job = cluster
        .wait_job(cluster.running()[0], id, "running", |j| {
            j.state == JobState::Running
        })
        .await;
    let host = index_of(&cluster, current_machine(&job));
    cluster.stop(host).await;
    cluster.restart(host).await.unwrap();
    let job = cluster
        .wait_job(cluster.running()[0], id, "finished", |j| {
            j.state.is_finished()
        })
        .await;
    assert_eq!(job.attempts.len(), 1, "{:?}", job.attempts);
    assert_eq!(job.attempts[0].exit_code, Some(7), "{:?}", job.attempts);
    let other = (host + 1) % 3;
    let text = job_output(&cluster.api(other), id).await;
    assert_eq!(text, "before\nafter\n");

    // The machine running a long job is killed: once it is STALE the job is requeued and
    // completes elsewhere as attempt 2.
    let id = cluster
        .submit(cluster.running()[0], sh("echo started; sleep 3; echo done"))
        .await;
    let job = cluster
        .wait_job(cluster.running()[0], id, "running", |j| {
            j.state == JobState::Running
        })
        .await;
    let lost = current_machine(&job);
    cluster.stop(index_of(&cluster, lost)).await;
    let job = cluster
        .wait_job(cluster.running()[0], id, "completed", |j| {
            j.state == JobState::Completed
        })
        .await;
    assert_eq!(job.attempts.len(), 2, "{:?}", job.attempts);
    assert_eq!(job.attempts[0].machine, lost);
    assert_ne!(job.attempts[1].machine, lost);
    let error = job.attempts[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("STALE"),
        "attempt 1 says why it moved: {error}"
    );
    assert_eq!(job.attempts[1].exit_code, Some(0));

    // A policy loosens (NET_RAW) and tightens (no SETUID) what containers keep and names
    // their user: the container a job then runs shows it.
    let api = cluster.api(cluster.running()[0]);
    let policy = json!({"cap_add": ["NET_RAW"], "cap_drop": ["SETUID"], "user": "1000:1000"});
    let response = shoal_daemon::testsuite::http_client()
        .put(format!("{api}/v1/policies/confined"))
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let id = cluster
        .submit(
            cluster.running()[0],
            sh("grep CapBnd /proc/self/status; id -u"),
        )
        .await;
    cluster
        .wait_job(cluster.running()[0], id, "completed", |j| {
            j.state == JobState::Completed
        })
        .await;
    let text = job_output(&api, id).await;
    assert_eq!(text, "CapBnd:\t000000000000247b\n1000\n");

    cluster.shutdown().await;
}
