//! Sessions through a live three-node cluster on the real Docker engine: a template with
//! versions and a rollback, a session placed on the least-loaded machine carrying its
//! labels, commands run in it from another node (output and exit code), its output read,
//! a `shoald` restart it outlives, and terminate.

use std::time::Duration;

use serde_json::{Value, json};
use shoal_daemon::exec::docker::container_name;
use shoal_daemon::testsuite::{Cluster, http_client, init_logs};

use crate::support::{IMAGE, docker, test_image};

async fn call(method: reqwest::Method, url: String, body: Value) -> (u16, Value) {
    let response = http_client()
        .request(method, &url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|err| panic!("{url}: {err}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn session(api: &str, id: u64) -> Value {
    let (status, body) = call(
        reqwest::Method::GET,
        format!("{api}/v1/sessions/{id}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn session_state(api: &str, id: u64) -> Value {
    session(api, id).await["state"].clone()
}

async fn wait_state(api: &str, id: u64, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = session(api, id).await;
        if now["state"] == state {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "session {id} did not become {state}: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn exec(api: &str, id: u64, script: &str) -> Value {
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{api}/v1/sessions/{id}/exec"),
        json!({"command": ["sh", "-c", script]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The first chunk of session `id`'s output, followed over a WebSocket through `api`.
async fn follow_first_chunk(api: &str, id: u64) -> Value {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let url = format!(
        "{}/v1/sessions/{id}/logs?follow=true",
        api.replace("https://", "wss://")
    );
    let mut request = url.into_client_request().unwrap();
    for (name, value) in &shoal_daemon::testsuite::keyed_headers() {
        request.headers_mut().insert(name, value.clone());
    }
    let (mut ws, _) = shoal_daemon::testsuite::ws_connect(request).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
    match first {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str(text.as_str()).unwrap(),
        other => panic!("no log chunk followed: {other:?}"),
    }
}

/// Attaches to session `id` through `api`, types `lines` (the last once `wait_for` shows),
/// and returns what the terminal showed and the last text message.
async fn attach(api: &str, id: u64, lines: &[&str], wait_for: &str) -> (String, Value) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let url = format!(
        "{}/v1/sessions/{id}/attach?cols=100&rows=30",
        api.replace("https://", "wss://")
    );
    let mut request = url.into_client_request().unwrap();
    for (name, value) in &shoal_daemon::testsuite::keyed_headers() {
        request.headers_mut().insert(name, value.clone());
    }
    let (mut ws, _) = shoal_daemon::testsuite::ws_connect(request).await.unwrap();
    let (last, first) = lines.split_last().unwrap();
    for line in first {
        ws.send(Message::Binary(format!("{line}\n").into_bytes().into()))
            .await
            .unwrap();
    }
    let mut shown = String::new();
    let mut sent_last = false;
    let read = async {
        while let Some(message) = ws.next().await {
            match message.unwrap() {
                Message::Binary(bytes) => {
                    shown.push_str(&String::from_utf8_lossy(&bytes));
                    if !sent_last && shown.contains(wait_for) {
                        sent_last = true;
                        ws.send(Message::Binary(format!("{last}\n").into_bytes().into()))
                            .await
                            .unwrap();
                    }
                }
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Close(_) => break,
                _ => {}
            }
        }
        Value::Null
    };
    let exit = tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .unwrap_or_else(|_| panic!("the attach did not end"));
    (shown, exit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_placed_driven_outlive_a_restart_and_terminate() {
    init_logs();
    let _image = test_image();
    let mut cluster = Cluster::start(3).await.unwrap();
    let machines: Vec<String> = (0..3).map(|i| cluster.node(i).id.to_string()).collect();
    let _left_behind = crate::cluster::LeftBehind((0..3).map(|i| cluster.node(i).id).collect());
    let api = cluster.api(0);
    let put = reqwest::Method::PUT;
    let post = reqwest::Method::POST;

    // Machines 1 and 2 carry tier=session; machine 1 already runs a job.
    for i in [1, 2] {
        let url = format!("{api}/v1/machines/{}/labels", machines[i]);
        let (status, body) = call(put.clone(), url, json!({"set": {"tier": "session"}})).await;
        assert_eq!(status, 200, "{body}");
    }
    let busy = cluster
        .submit(
            0,
            json!({"image": IMAGE, "agent_id": machines[1],
                   "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 120 & wait"]}),
        )
        .await;
    cluster
        .wait_job(0, busy, "running", |j| {
            j.state == shoal_protocol::JobState::Running
        })
        .await;

    // Version 1 runs a shell that says it is ready; version 2 names an image no machine
    // has. Rolled back to 1, new sessions run version 1.
    let v1 = json!({"image": IMAGE, "pull": "never", "max_duration_seconds": 600,
        "command": ["sh", "-c", "echo ready; trap 'exit 0' TERM; sleep 3600 & wait"],
        "required_labels": {"tier": "session"}});
    let (status, body) = call(put.clone(), format!("{api}/v1/templates/default"), v1).await;
    assert_eq!((status, body["current"].as_u64()), (200, Some(1)), "{body}");
    let v2 = json!({"image": "no-such-image:local"});
    let (status, body) = call(put.clone(), format!("{api}/v1/templates/default"), v2).await;
    assert_eq!((status, body["current"].as_u64()), (200, Some(2)), "{body}");
    let url = format!("{api}/v1/templates/default/rollback");
    let (status, body) = call(post.clone(), url.clone(), json!({"version": 1})).await;
    assert_eq!((status, body["current"].as_u64()), (200, Some(1)), "{body}");
    let (status, body) = call(post.clone(), url, json!({"version": 7})).await;
    assert_eq!(status, 404, "{body}");

    // A policy on the session machines allows only images it names: a session is placed
    // on none of them, and waits, naming the policy.
    let (status, body) = call(
        put.clone(),
        format!("{api}/v1/policies/trusted-images"),
        json!({"selector": {"tier": "session"}, "allowed_images": ["registry.lan/*"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, refused) = call(
        post.clone(),
        format!("{api}/v1/sessions"),
        json!({"template_id": "default"}),
    )
    .await;
    assert_eq!(status, 201, "{refused}");
    let refused = refused["id"].as_u64().unwrap();
    let said = "a policy refuses it on each: policy trusted-images: image shoal-test-busybox:local is not allowed";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = session(&api, refused).await;
        let reason = now["reason"].as_str().unwrap_or_default();
        if now["state"] == "pending" && reason.contains(said) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = format!("{api}/v1/sessions/{refused}/terminate");
    let (status, body) = call(post.clone(), url, Value::Null).await;
    assert_eq!(status, 200, "{body}");
    let url = format!("{api}/v1/policies/trusted-images");
    let (status, body) = call(reqwest::Method::DELETE, url, Value::Null).await;
    assert_eq!(status, 200, "{body}");

    // Created through node 2, placed on machine 2: it carries the label and runs less.
    let (status, created) = call(
        post.clone(),
        format!("{}/v1/sessions", cluster.api(2)),
        json!({"template_id": "default"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["template"], "default@v1");
    let id = created["id"].as_u64().unwrap();
    let running = wait_state(&api, id, "running").await;
    assert_eq!(running["machine"], json!(machines[2]), "{running}");

    // Commands run in it from node 0, which does not run it: output and exit code back.
    let out = exec(&api, id, "echo hello; echo oops >&2; exit 3").await;
    assert_eq!(
        (&out["stdout"], &out["stderr"], &out["exit_code"]),
        (&json!("hello\n"), &json!("oops\n"), &json!(3)),
        "{out}"
    );
    // Numbers out of range are refused naming the field; the session runs on.
    let url = format!("{api}/v1/sessions/{id}/exec");
    for (timeout, says) in [(0, "timeout_seconds"), (601, "timeout_seconds")] {
        let body = json!({"command": ["true"], "timeout_seconds": timeout});
        let (status, answer) = call(reqwest::Method::POST, url.clone(), body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{answer}"
        );
    }
    for (size, says) in [
        ("cols=0", "cols"),
        ("rows=1001", "rows"),
        ("cols=70000", "cols"),
    ] {
        let url = format!("{api}/v1/sessions/{id}/attach?{size}");
        let (status, answer) = call(reqwest::Method::GET, url, Value::Null).await;
        assert_eq!(status, 400, "{size}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{answer}"
        );
    }
    let (status, logs) = call(
        reqwest::Method::GET,
        format!("{api}/v1/sessions/{id}/logs"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{logs}");
    assert_eq!(logs["chunks"][0]["text"], "ready\n", "{logs}");
    let followed = follow_first_chunk(&cluster.api(1), id).await;
    assert_eq!(followed["text"], "ready\n", "{followed}");

    // An interactive shell from node 0, relayed to machine 2: a typed command's answer comes
    // back, and `exit 5` ends it with its exit code.
    let (shown, exit) = attach(
        &api,
        id,
        &["echo attached-$((40+2))", "exit 5"],
        "attached-42",
    )
    .await;
    assert!(shown.contains("attached-42"), "{shown}");
    assert_eq!(exit, json!({"exit": {"exit_code": 5}}), "{shown}");

    // A batch restart on machines 1 and 2 restarts a session on each in place: each says
    // `ready` a second time and runs on; update finds the template's image on both.
    let (status, other) = call(
        post.clone(),
        format!("{api}/v1/sessions"),
        json!({"template_id": "default", "agent_id": machines[1]}),
    )
    .await;
    assert_eq!(status, 201, "{other}");
    let other = other["id"].as_u64().unwrap();
    wait_state(&api, other, "running").await;
    let both = json!({"machines": [machines[1], machines[2]]});
    let (status, report) = call(
        post.clone(),
        format!("{api}/v1/batch/restart"),
        both.clone(),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    for outcome in report["machines"].as_array().unwrap() {
        assert_eq!(outcome["ok"], true, "{report}");
        assert!(
            outcome["detail"]
                .as_str()
                .unwrap()
                .starts_with("restarting sessions"),
            "{report}"
        );
    }
    for session in [id, other] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let url = format!("{api}/v1/sessions/{session}/logs");
            let (_, logs) = call(reqwest::Method::GET, url, Value::Null).await;
            let text: String = logs["chunks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["text"].as_str())
                .collect();
            if text.matches("ready").count() == 2 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "session {session}: {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(session_state(&api, session).await, "running");
    }
    let (status, report) = call(post.clone(), format!("{api}/v1/batch/update"), both).await;
    assert_eq!(status, 200, "{report}");
    let detail = report["machines"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("shoal-test-busybox:local: pull never, present (sha256:"),
        "{report}"
    );
    let (status, audit) = call(
        reqwest::Method::GET,
        format!("{api}/v1/audit?limit=2"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(audit["entries"][1]["action"], "batch_restart", "{audit}");
    let (status, body) = call(
        post.clone(),
        format!("{api}/v1/sessions/{other}/terminate"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Its machine's shoald restarts: the container keeps running and is adopted again.
    cluster.stop(2).await;
    cluster.restart(2).await.unwrap();
    // Until the others learn the restarted machine's new address, an exec is a 503.
    let url = format!("{}/v1/sessions/{id}/exec", cluster.api(1));
    let body = json!({"command": ["echo", "still here"]});
    let mut out = call(post.clone(), url.clone(), body.clone()).await;
    for _ in 0..100 {
        if out.0 != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        out = call(post.clone(), url.clone(), body.clone()).await;
    }
    let (status, out) = out;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["stdout"], "still here\n", "{out}");
    assert_eq!(session(&api, id).await["state"], "running");

    // Terminated from node 1: stopped, removed, terminated.
    let (status, body) = call(
        post.clone(),
        format!("{}/v1/sessions/{id}/terminate", cluster.api(1)),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ended = wait_state(&api, id, "terminated").await;
    assert!(ended["ended_at_ms"].is_u64(), "{ended}");
    let name = container_name(Some(&machines[2]), id, 1);
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("name={name}")]),
        ""
    );
    let (status, body) = call(
        post.clone(),
        format!("{api}/v1/sessions/{id}/exec"),
        json!({"command": ["true"]}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let (status, listed) = call(
        reqwest::Method::GET,
        format!("{api}/v1/sessions?state=terminated"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    let ids: Vec<&Value> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["id"])
        .collect();
    assert!(ids.contains(&&json!(id)), "{listed}");
    let url = format!("{api}/v1/sessions?org=lab&machine={}", machines[2]);
    let (status, other_org) = call(reqwest::Method::GET, url, Value::Null).await;
    assert_eq!(
        (status, &other_org["sessions"]),
        (200, &json!([])),
        "{other_org}"
    );
    assert_eq!(ended["reason"], "terminated", "{ended}");
    // Their run time is costed by session (the job above is not one).
    let (status, sheet) = call(
        reqwest::Method::GET,
        format!("{api}/v1/costs?by=session"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{sheet}");
    let rows = sheet["rows"].as_array().unwrap();
    let mut keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    keys.sort();
    let mut want = [id.to_string(), other.to_string()];
    want.sort();
    assert_eq!(keys, want, "{sheet}");
    assert!(
        rows.iter()
            .all(|r| r["runner_minutes"].as_f64().unwrap() > 0.0),
        "{sheet}"
    );
    cluster.shutdown().await;
}
