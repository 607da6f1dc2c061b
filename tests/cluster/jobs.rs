//! Jobs through the API of a live cluster: label routing, a burst spreading, fan-out,
//! idempotency, queue reasons, cancel, and bad requests that change nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use shoal_daemon::testsuite::{Cluster, get_json, init_logs};
use shoal_protocol::{Command, ErrorCode, JobId, JobRecord, JobReport, JobState, MachineId};

use crate::http::{keyed, post, put_labels};

fn job_id(body: &Value) -> JobId {
    JobId(
        body["job"]["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("no job id in {body}")),
    )
}

fn placed(job: &JobRecord) -> bool {
    !job.attempts.is_empty()
}

fn machine_of(job: &JobRecord) -> MachineId {
    job.attempts.last().expect("an attempt").machine
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_go_to_the_right_machines() {
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    let api = cluster.api(1);
    let gpu = cluster.node(2).id;
    let (status, body) = put_labels(&api, gpu, &["gpu=true"]).await;
    assert_eq!(status, 200, "{body}");

    // Label routing: only node 2 carries gpu=true.
    let (status, body) = post(
        format!("{api}/v1/jobs"),
        json!({"command": ["train"], "required_labels": {"gpu": "true"}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let job = cluster
        .wait_job(0, job_id(&body), "gpu job placed", placed)
        .await;
    assert_eq!(machine_of(&job), gpu);

    // A burst spreads over the machines instead of piling onto one.
    let burst: Vec<Value> = (0..6)
        .map(|n| json!({"command": ["echo", n.to_string()]}))
        .collect();
    let (status, body) = post(format!("{api}/v1/jobs/batch"), json!({"jobs": burst})).await;
    assert_eq!(status, 200, "{body}");
    let mut used = BTreeSet::new();
    for entry in body["jobs"].as_array().unwrap() {
        let job = cluster
            .wait_job(2, job_id(entry), "burst job placed", placed)
            .await;
        used.insert(machine_of(&job));
    }
    assert_eq!(used.len(), 3, "the burst used only {used:?}");

    // Fan-out: one child per ONLINE machine.
    let (status, body) = post(
        format!("{api}/v1/jobs"),
        json!({"command": ["uptime"], "agent_id": "all_online"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let parent = cluster
        .wait_job(1, job_id(&body), "fan-out children", |j| {
            j.children.len() == 3
        })
        .await;
    let mut targets = BTreeSet::new();
    for child in parent.children {
        let job = cluster.wait_job(1, child, "child placed", placed).await;
        targets.insert(machine_of(&job));
    }
    assert_eq!(targets.len(), 3);

    // A batch holding a fan-out no machine can take is refused whole: none of its jobs
    // is submitted.
    let jobs_before = cluster.node(1).fleet.read(|s| s.jobs.len());
    let nowhere = json!({"command": ["uptime"], "agent_id": "all_online", "required_labels": {"gpu": "none"}});
    let batch = json!({"jobs": [{"command": ["echo", "first"]}, nowhere]});
    let (status, body) = post(format!("{api}/v1/jobs/batch"), batch).await;
    assert_eq!(status, 409, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "jobs[1]: agent_id \"all_online\": no ONLINE machine has the required labels gpu=none"
        ),
        "{message}"
    );
    let (status, body) = post(
        format!("{api}/v1/jobs/batch"),
        json!({"jobs": [{"command": ["echo", "after"]}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Node 1 answered the batch after that one, so it has applied what came before.
    let jobs_after = cluster.node(1).fleet.read(|s| s.jobs.len());
    assert_eq!(jobs_after, jobs_before + 1, "only the later batch's job");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_are_idempotent_explained_cancellable_and_validated() {
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    let api = cluster.api(0);

    let spec = json!({"command": ["backup"], "idempotency_key": "nightly-1", "required_labels": {"tape": "lto8"}});
    let (first, body) = post(format!("{api}/v1/jobs"), spec.clone()).await;
    assert_eq!(first, 201, "{body}");
    let id = job_id(&body);
    let (again, body) = post(format!("{}/v1/jobs", cluster.api(2)), spec).await;
    assert_eq!(
        (again, job_id(&body), body["created"].as_bool()),
        (200, id, Some(false)),
        "{body}"
    );

    // Nobody has the label: the job waits and says why.
    let job = cluster
        .wait_job(1, id, "a queue reason", |j| j.queue_reason.is_some())
        .await;
    let reason = job.queue_reason.unwrap();
    assert!(reason.contains("tape"), "{reason}");
    assert_eq!(job.state, JobState::Queued);

    let (status, body) = post(format!("{}/v1/jobs/{id}/cancel", cluster.api(1)), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "cancelled");

    // A job nobody can take gives up after its queue timeout and says why.
    let (status, body) = post(
        format!("{api}/v1/jobs"),
        json!({"command": ["x"], "required_labels": {"tape": "lto8"}, "queue_timeout_seconds": 1}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let job = cluster
        .wait_job(2, job_id(&body), "timed out in the queue", |j| {
            j.state == JobState::TimedOut
        })
        .await;
    assert!(job.attempts.is_empty());
    let error = job.error.unwrap_or_default();
    assert!(
        error.contains("no machine took the job within 1 s"),
        "{error}"
    );
    assert!(error.contains("tape=lto8"), "{error}");

    // A node answers a write only once its own replica has it: read your own writes.
    let follower = (0..3).find(|&i| Some(i) != cluster.leader()).unwrap();
    let follower_api = cluster.api(follower);
    let mut last = JobId(0);
    for _ in 0..20 {
        let (status, body) = post(
            format!("{follower_api}/v1/jobs"),
            json!({"command": ["true"]}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        last = job_id(&body);
        let shown = shoal_daemon::testsuite::http_client()
            .get(format!("{follower_api}/v1/jobs/{last}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            shown.status().as_u16(),
            200,
            "job {last} not visible where it was submitted"
        );
    }
    // Newest first, paged with `before`; consistent reads are accepted.
    let page: Value = shoal_daemon::testsuite::http_client()
        .get(format!(
            "{follower_api}/v1/jobs?order=newest&limit=2&consistent=true"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<u64> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids[0], last.0);
    assert!(ids[1] < ids[0]);
    let next: Value = shoal_daemon::testsuite::http_client()
        .get(format!(
            "{follower_api}/v1/jobs?order=newest&limit=1&before={}",
            ids[1]
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(next["jobs"][0]["id"].as_u64().unwrap() < ids[1]);
    let mixed = shoal_daemon::testsuite::http_client()
        .get(format!("{follower_api}/v1/jobs?order=newest&after=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(mixed.status().as_u16(), 400);

    // A batch too large for one log entry goes in parts (here through a follower): every
    // job in, answered in the order given.
    let padding = "p".repeat(600);
    let many: Vec<Value> = (0..1000)
        .map(|n| {
            json!({"command": ["echo", n.to_string()], "env": {"PAD": padding},
                   "required_labels": {"tape": "none"}})
        })
        .collect();
    let (status, body) = post(
        format!("{follower_api}/v1/jobs/batch"),
        json!({"jobs": many}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answers = body["jobs"].as_array().unwrap();
    assert_eq!(answers.len(), 1000);
    let mut ids = BTreeSet::new();
    for (n, answer) in answers.iter().enumerate() {
        assert_eq!(
            answer["job"]["spec"]["command"][1],
            n.to_string(),
            "{answer}"
        );
        assert_eq!(answer["created"], true);
        assert!(ids.insert(job_id(answer)), "job {n} answered twice");
    }
    // One audit entry per part, naming its jobs, not a thousand entries.
    let audit: Value = get_json(&format!("{follower_api}/v1/audit?limit=100")).await;
    let parts: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "submit_jobs")
        .collect();
    assert!((2..=4).contains(&parts.len()), "{parts:?}");
    let mut audited = BTreeSet::new();
    for part in parts {
        assert_eq!(part["outcome"], "ok", "{part}");
        let runs = part["target"]
            .as_str()
            .unwrap()
            .strip_prefix("jobs ")
            .unwrap();
        for run in runs.split(", ") {
            let (first, last) = run.split_once('-').unwrap_or((run, run));
            let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
            audited.extend((first..=last).map(JobId));
        }
    }
    assert_eq!(
        audited, ids,
        "the audit log names every job of the batch once"
    );

    // Bad requests: a clear 400 (or 413) and nothing written.
    let before = cluster.node(0).fleet.read(|s| s.jobs.len());
    let bad = [
        json!({"command": []}),
        json!({"command": ["x"], "required_labels": {"Bad Key": "1"}}),
        json!({"command": ["x"], "timeout_seconds": -5}),
        json!({"command": ["x"], "max_attempts": 0}),
        json!({"command": ["x"], "surprise": true}),
    ];
    for body in bad {
        let (status, answer) = post(format!("{api}/v1/jobs"), body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["code"], "bad_request");
        assert!(!answer["message"].as_str().unwrap().is_empty());
        if body.get("surprise").is_some() {
            assert!(
                answer["message"].as_str().unwrap().contains("`surprise`"),
                "{answer}"
            );
        }
    }
    // Just over the 1 MiB limit: the node answers once it has read that much and closes
    // the connection, and a client with much more still to send can see the close before
    // the answer.
    let huge = json!({"command": ["x".repeat(1024 * 1024 + 1024)]});
    let (status, answer) = post(format!("{api}/v1/jobs"), huge).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (413, Some("payload_too_large")),
        "{answer}"
    );
    assert_eq!(cluster.node(0).fleet.read(|s| s.jobs.len()), before);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_report_their_exit_code_and_retry_on_failure() {
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    let api = cluster.api(2);
    let (status, body) = post(
        format!("{api}/v1/jobs"),
        json!({"command": ["sh", "-c", "echo hello"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let job = cluster
        .wait_job(0, job_id(&body), "completed", |j| {
            j.state == JobState::Completed
        })
        .await;
    assert_eq!(job.attempts.len(), 1);
    assert_eq!(job.attempts[0].exit_code, Some(0));
    assert!(job.attempts[0].started_at_ms.is_some() && job.attempts[0].finished_at_ms.is_some());

    // A failing job is retried (with backoff) up to max_attempts, then fails with the exit code.
    let (status, body) = post(
        format!("{api}/v1/jobs"),
        json!({"command": ["sh", "-c", "exit 3"], "max_attempts": 2}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let job = cluster
        .wait_job(1, job_id(&body), "failed", |j| j.state == JobState::Failed)
        .await;
    assert_eq!(job.attempts.len(), 2);
    assert!(
        job.attempts.iter().all(|a| a.exit_code == Some(3)),
        "{:?}",
        job.attempts
    );
    assert!(
        job.error.as_deref().unwrap_or("").contains('3'),
        "{:?}",
        job.error
    );

    // A running job is cancelled: SIGTERM reaches it and the job ends cancelled.
    let (status, body) = post(
        format!("{api}/v1/jobs"),
        json!({"command": ["sleep", "30"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = job_id(&body);
    let job = cluster
        .wait_job(2, id, "running", |j| j.state == JobState::Running)
        .await;
    // Only the machine running an attempt may report on it.
    let leader = cluster.node(0).leader().unwrap();
    let stranger = (0..3)
        .find(|&i| ![machine_of(&job), leader].contains(&cluster.node(i).id))
        .unwrap();
    let forged = Command::ReportJob {
        job: id,
        attempt: 1,
        report: JobReport::Exited { exit_code: 0 },
        at_ms: 0,
    };
    let refused = cluster.node(stranger).write(forged).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden, "{refused}");
    assert!(
        refused.message.contains("may not report on it"),
        "{refused}"
    );
    let (status, body) = post(format!("{api}/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    cluster
        .wait_job(0, id, "cancelled", |j| j.state == JobState::Cancelled)
        .await;
    cluster.shutdown().await;
}

/// The index of a node other than the one with id `machine`.
fn other_than(cluster: &Cluster, machine: MachineId) -> usize {
    (0..cluster.len())
        .find(|&i| cluster.node(i).id != machine)
        .expect("another node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_readable_and_followable_from_any_node() {
    use futures::StreamExt;
    use shoal_protocol::api::{JobLogs, LogChunk, LogStream};
    use tokio_tungstenite::tungstenite::Message;

    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    let script = "echo one; sleep 1; echo two >&2; sleep 1; echo three";
    let (status, body) = post(
        format!("{}/v1/jobs", cluster.api(0)),
        json!({"command": ["sh", "-c", script]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = job_id(&body);
    let job = cluster
        .wait_job(0, id, "running", |j| j.state == JobState::Running)
        .await;
    // Followed from a node that did not run it: every chunk arrives, in order, with its
    // stream, and the socket closes when the job ends.
    let api = cluster.api(other_than(&cluster, machine_of(&job)));
    let ws = api.replacen("https://", "wss://", 1);
    let (mut socket, _) =
        shoal_daemon::testsuite::ws_connect(keyed(&format!("{ws}/v1/jobs/{id}/logs?follow=true")))
            .await
            .unwrap();
    let mut chunks: Vec<LogChunk> = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(message) = socket.next().await {
            match message.unwrap() {
                Message::Text(text) => chunks.push(serde_json::from_str(&text).unwrap()),
                Message::Close(frame) => return frame,
                other => panic!("unexpected message {other:?}"),
            }
        }
        None
    })
    .await
    .expect("the follow ends when the job ends");
    assert_eq!(end.map(|f| u16::from(f.code)), Some(1000));
    let text: String = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(text, "one\ntwo\nthree\n");
    let two = chunks.iter().find(|c| c.text.contains("two")).unwrap();
    assert_eq!((two.stream, two.offset), (LogStream::Stderr, 4));

    // Read at once after the end, from the same other node: the saved output.
    cluster
        .wait_job(0, id, "completed", |j| j.state == JobState::Completed)
        .await;
    let logs: JobLogs = get_json(&format!("{api}/v1/jobs/{id}/logs")).await;
    assert!(logs.complete);
    assert_eq!(
        (logs.attempt, logs.machine, logs.total),
        (1, machine_of(&job), 14)
    );
    let later: JobLogs = get_json(&format!("{api}/v1/jobs/{id}/logs?offset=8")).await;
    assert_eq!(
        later
            .chunks
            .iter()
            .map(|c| c.text.as_str())
            .collect::<String>(),
        "three\n"
    );

    // Questions without an answer say why.
    let (status, body) = post(
        format!("{api}/v1/jobs"),
        json!({"command": ["true"], "required_labels": {"nobody": "has-this"}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let queued = job_id(&body);
    for (path, code, needle) in [
        (
            format!("/v1/jobs/{queued}/logs"),
            409,
            "has not run anywhere yet",
        ),
        (format!("/v1/jobs/{id}/logs?attempt=2"), 404, "no attempt 2"),
        (format!("/v1/jobs/{id}/logs?bogus=1"), 400, "bogus"),
        (format!("/v1/jobs/{id}/logs?follow=true"), 400, "WebSocket"),
        ("/v1/jobs/999999/logs".to_string(), 404, "no job"),
    ] {
        let response = shoal_daemon::testsuite::http_client()
            .get(format!("{api}{path}"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, code, "{path}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(needle), "{path}: {message}");
    }
    cluster.shutdown().await;
}
