//! Events from any node: a job's life followed live as NDJSON, a client that reconnects
//! to another node with the last index it saw getting exactly what it missed, the same
//! over a WebSocket, a restarted node saying which old events it no longer has, follows
//! that end when their key is revoked, and a follow that ends when its node shuts down.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use shoal_daemon::testsuite::{Cluster, init_logs, wait_until};
use shoal_protocol::events::{Event, EventLine, StreamEnd, Topic, kind};
use shoal_protocol::{JobId, JobState};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::http::keyed;

/// How long one line of a followed stream may take.
const LINE_WAIT: Duration = Duration::from_secs(20);

async fn send(cluster: &Cluster, method: reqwest::Method, url: &str, body: Value) -> (u16, Value) {
    let response = cluster
        .http()
        .request(method, url)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|err| panic!("{url}: {err}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Submits `true` through node `via`.
async fn submit(cluster: &Cluster, via: usize) -> JobId {
    let url = format!("{}/v1/jobs", cluster.api(via));
    let (status, body) = send(
        cluster,
        reqwest::Method::POST,
        &url,
        json!({"command": ["true"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    JobId(body["job"]["id"].as_u64().unwrap())
}

/// Waits until every running node has job `id` completed.
async fn wait_completed(cluster: &Cluster, id: JobId) {
    cluster
        .wait_every_replica(
            Duration::from_secs(20),
            "the job completed everywhere",
            |s| s.jobs.get(&id).map(|j| j.state) == Some(JobState::Completed),
        )
        .await
        .unwrap();
}

/// An NDJSON event stream, read line by line as it arrives.
struct Lines {
    response: reqwest::Response,
    buf: Vec<u8>,
}

impl Lines {
    async fn open(cluster: &Cluster, url: &str) -> Lines {
        Lines::open_as(cluster, url, None).await
    }

    /// Opens `url` with the cluster's client, with `key` in place of its own when given.
    async fn open_as(cluster: &Cluster, url: &str, key: Option<&str>) -> Lines {
        let mut request = cluster.http().get(url);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"].clone();
        assert_eq!(status, 200, "GET {url}");
        assert_eq!(content_type, "application/x-ndjson");
        Lines {
            response,
            buf: Vec::new(),
        }
    }

    /// The next line, or `None` once the stream ended.
    async fn next(&mut self) -> Option<EventLine> {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let chunk = tokio::time::timeout(LINE_WAIT, self.response.chunk())
                .await
                .expect("a line in time")
                .unwrap();
            match chunk {
                Some(bytes) => self.buf.extend_from_slice(&bytes),
                None => {
                    assert!(self.buf.is_empty(), "a partial last line");
                    return None;
                }
            }
        }
    }

    async fn next_event(&mut self) -> Event {
        match self.next().await {
            Some(EventLine::Event(event)) => event,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Every line up to the end of a stream that is not followed.
    async fn all(mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(line) = self.next().await {
            match line {
                EventLine::Event(event) => events.push(event),
                EventLine::End(end) => panic!("ended early: {end:?}"),
            }
        }
        events
    }
}

/// `GET /v1/events?{query}` on node `via`, without follow: every event it answers with.
async fn backlog(cluster: &Cluster, via: usize, query: &str) -> Vec<Event> {
    Lines::open(cluster, &format!("{}/v1/events?{query}", cluster.api(via)))
        .await
        .all()
        .await
}

/// The kinds of the events about job `id`, in order.
fn life(events: &[Event], id: JobId) -> Vec<&str> {
    let subject = id.to_string();
    events
        .iter()
        .filter(|e| e.subject.as_deref() == Some(subject.as_str()))
        .map(|e| e.kind.as_str())
        .collect()
}

const LIFE: [&str; 4] = [
    kind::JOB_SUBMITTED,
    kind::JOB_DISPATCHED,
    kind::JOB_RUNNING,
    kind::JOB_FINISHED,
];

fn assert_ordered(events: &[Event]) {
    let at: Vec<(u64, u32)> = events.iter().map(|e| (e.index, e.seq)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "out of order: {at:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_followed_live_and_a_client_resumes_on_another_node() {
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();

    // Follow job events on node 1; submit on node 2.
    let url = format!("{}/v1/events?follow=true&topic=job", cluster.api(1));
    let mut follow = Lines::open(&cluster, &url).await;
    let first = submit(&cluster, 2).await;
    let mut seen = Vec::new();
    while life(&seen, first).last() != Some(&kind::JOB_FINISHED) {
        seen.push(follow.next_event().await);
    }
    assert_eq!(life(&seen, first), LIFE, "{seen:#?}");
    assert_ordered(&seen);
    assert!(seen.iter().all(|e| e.topic == Topic::Job));
    let finished = seen.last().unwrap();
    assert_eq!(
        finished.detail.value()["state"],
        json!("completed"),
        "{finished:?}"
    );
    assert_eq!(finished.detail.value()["exit_code"], json!(0));
    assert_eq!(seen[0].index, first.0, "a job's id is its submit's index");
    let last = finished.index;

    // Disconnect; more happens meanwhile.
    drop(follow);
    let second = submit(&cluster, 2).await;
    wait_completed(&cluster, second).await;

    // Reconnecting to node 0 with the last index seen gives exactly what was missed.
    let missed = backlog(&cluster, 0, &format!("since={last}&topic=job")).await;
    assert_eq!(life(&missed, second), LIFE, "{missed:#?}");
    assert!(
        life(&missed, first).is_empty(),
        "nothing twice: {missed:#?}"
    );
    assert!(missed.iter().all(|e| e.index > last));
    assert_ordered(&missed);
    // Every node tells the same story with the same numbers.
    assert_eq!(
        backlog(&cluster, 1, &format!("since={last}&topic=job")).await,
        missed
    );
    let replay = backlog(&cluster, 0, &format!("since={}&topic=job", first.0 - 1)).await;
    assert_eq!(
        replay[..seen.len()],
        seen[..],
        "node 0 against what node 1 streamed"
    );
    // Other topics are there too, and the filter takes a list.
    let all = backlog(&cluster, 2, "since=0").await;
    assert!(all.iter().any(|e| e.topic == Topic::Machine), "{all:#?}");
    assert!(all.iter().any(|e| e.topic == Topic::Fleet));
    let listed = backlog(&cluster, 2, "since=0&topic=machine,fleet").await;
    assert!(!listed.is_empty());
    assert!(listed.iter().all(|e| e.topic != Topic::Job));

    // Over a WebSocket on node 2: the backlog, then live events, one per message.
    let ws = cluster.ws(2);
    let request = keyed(&format!(
        "{ws}/v1/events?since={last}&topic=job&follow=true"
    ));
    let (mut socket, _) = shoal_daemon::testsuite::ws_connect(request).await.unwrap();
    let mut got: Vec<Event> = Vec::new();
    let mut third = None;
    loop {
        if got.len() == missed.len() && third.is_none() {
            assert_eq!(got, missed, "the backlog over the socket");
            third = Some(submit(&cluster, 0).await);
        }
        if let Some(third) = third
            && life(&got, third).last() == Some(&kind::JOB_FINISHED)
        {
            assert_eq!(life(&got, third), LIFE);
            break;
        }
        let message = tokio::time::timeout(LINE_WAIT, socket.next())
            .await
            .expect("a message in time")
            .unwrap()
            .unwrap();
        match message {
            Message::Text(text) => got.push(serde_json::from_str(&text).unwrap()),
            other => panic!("unexpected message {other:?}"),
        }
    }
    assert_ordered(&got);
    socket.close(None).await.unwrap();

    // Without follow, a socket closes normally after the backlog.
    let request = keyed(&format!("{ws}/v1/events?since={last}&topic=job"));
    let (mut socket, _) = shoal_daemon::testsuite::ws_connect(request).await.unwrap();
    let mut count = 0;
    while let Some(message) = socket.next().await {
        match message.unwrap() {
            Message::Text(_) => count += 1,
            Message::Close(frame) => {
                assert_eq!(u16::from(frame.unwrap().code), 1000);
                break;
            }
            other => panic!("unexpected message {other:?}"),
        }
    }
    assert_eq!(count, got.len());

    // Bad queries are plain 400s.
    for (query, needle) in [
        ("topic=jobs", "\"jobs\""),
        ("since=yesterday", "since"),
        ("follow=true&surprise=1", "surprise"),
    ] {
        let url = format!("{}/v1/events?{query}", cluster.api(0));
        let (status, body) = send(&cluster, reqwest::Method::GET, &url, Value::Null).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["message"].as_str().unwrap().contains(needle), "{body}");
    }

    // A key sees its own org's jobs, and the audit log only with admin scope.
    let url = format!("{}/v1/keys", cluster.api(0));
    let body = json!({"scope": "read", "org": "elsewhere", "name": "viewer"});
    let (status, made) = send(&cluster, reqwest::Method::POST, &url, body).await;
    assert_eq!(status, 201, "{made}");
    let viewer = made["key"].as_str().unwrap();
    let url = format!("{}/v1/events?since=0", cluster.api(0));
    let seen = Lines::open_as(&cluster, &url, Some(viewer))
        .await
        .all()
        .await;
    assert!(seen.iter().any(|e| e.topic == Topic::Machine), "{seen:#?}");
    assert!(
        seen.iter()
            .all(|e| !matches!(e.topic, Topic::Job | Topic::Audit) && e.kind != kind::KEY_CREATED),
        "{seen:#?}"
    );
    let url = format!("{}/v1/events?topic=audit", cluster.api(0));
    let refused = cluster
        .http()
        .get(&url)
        .bearer_auth(viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);

    // Follows opened with a key end, on every node, once it is revoked: NDJSON with a last
    // line saying why, a WebSocket with that line and a close 1008.
    let url = format!("{}/v1/events?follow=true&topic=machine", cluster.api(1));
    let mut ndjson = Lines::open_as(&cluster, &url, Some(viewer)).await;
    let mut request = format!("{}/v1/events?follow=true&topic=machine", cluster.ws(2))
        .into_client_request()
        .unwrap();
    let bearer = format!("Bearer {viewer}").parse().unwrap();
    request.headers_mut().insert("authorization", bearer);
    let (mut socket, _) = shoal_daemon::testsuite::ws_connect(request).await.unwrap();
    let viewer_id = made["record"]["id"].as_str().unwrap();
    let url = format!("{}/v1/keys/{viewer_id}", cluster.api(0));
    let (status, body) = send(&cluster, reqwest::Method::DELETE, &url, Value::Null).await;
    assert_eq!(status, 200, "{body}");
    let end = loop {
        match ndjson.next().await {
            Some(EventLine::Event(_)) => continue,
            Some(EventLine::End(end)) => break end,
            None => panic!("the stream ended without saying why"),
        }
    };
    assert_eq!(end.error, "this API key was revoked", "{end:?}");
    let mut said = None;
    loop {
        let message = tokio::time::timeout(LINE_WAIT, socket.next())
            .await
            .expect("a message in time")
            .expect("a close before the end")
            .unwrap();
        match message {
            Message::Text(text) => {
                if let Ok(EventLine::End(end)) = serde_json::from_str(&text) {
                    said = Some(end.error);
                }
            }
            Message::Close(frame) => {
                let frame = frame.expect("a close saying why");
                assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
                assert_eq!(frame.reason.as_str(), "this API key was revoked");
                break;
            }
            other => panic!("unexpected message {other:?}"),
        }
    }
    assert_eq!(said.as_deref(), Some("this API key was revoked"));

    // A follow in progress ends, with where to resume, when its node shuts down; the
    // node does not wait on it.
    let url = format!("{}/v1/events?follow=true", cluster.api(0));
    let mut follow = Lines::open(&cluster, &url).await;
    let reader = tokio::spawn(async move {
        loop {
            match follow.next().await {
                Some(EventLine::Event(_)) => continue,
                Some(EventLine::End(end)) => return Some(end),
                None => return None,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), cluster.shutdown())
        .await
        .expect("shutdown does not wait for followers");
    let end: Option<StreamEnd> = reader.await.unwrap();
    let end = end.expect("a last line saying why");
    assert!(end.error.contains("shutting down"), "{end:?}");
    assert!(end.resume_from >= last, "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_says_which_old_events_it_no_longer_has() {
    init_logs();
    let mut cluster = Cluster::start(3).await.unwrap();
    let machine = cluster.node(0).id;
    let start = cluster.node(0).fleet.applied().borrow().unwrap_or(0);

    // Operators' label changes until node 0 has written a snapshot (every 200 entries
    // with the fast timings).
    let url = format!("{}/v1/machines/{machine}/labels", cluster.api(0));
    let mut n = 0;
    while cluster.node(0).raft.metrics().borrow().snapshot.is_none() {
        assert!(n < 1000, "no snapshot after {n} label changes");
        let body = json!({"set": {"round": n.to_string()}});
        let (status, answer) = send(&cluster, reqwest::Method::PUT, &url, body).await;
        assert_eq!(status, 200, "{answer}");
        n += 1;
    }
    let applied = cluster.node(0).fleet.applied().borrow().unwrap_or(0);
    wait_until(Duration::from_secs(10), "node 1 to apply as far", || {
        (cluster.node(1).fleet.applied().borrow().unwrap_or(0) >= applied).then_some(())
    })
    .await
    .unwrap();
    // Each change is told twice: what changed on the machine, and the audit log's entry.
    let audit = backlog(&cluster, 1, &format!("since={start}&topic=audit")).await;
    assert_eq!(audit.len(), n, "one audit event per change: {audit:#?}");
    assert_eq!(audit[0].kind, "label_machine");
    assert_eq!(audit[0].subject, Some(format!("machine {machine}")));
    assert_eq!(audit[0].detail.value()["actor"], json!("7e57000000000001"));
    assert_eq!(audit[0].detail.value()["outcome"], json!("ok"));
    let changes = backlog(&cluster, 1, &format!("since={start}&topic=machine")).await;
    let labels: Vec<&Event> = changes
        .iter()
        .filter(|e| e.kind == kind::MACHINE_LABELS)
        .collect();
    assert_eq!(labels.len(), n);
    assert_eq!(labels[0].subject, Some(machine.to_string()));
    assert_eq!(
        labels[0].detail.value()["operator_labels"],
        json!({"round": "0"})
    );
    assert_eq!(
        (labels[0].index, labels[0].seq + 1),
        (audit[0].index, audit[0].seq)
    );

    // Restarted, node 0 starts from its snapshot: it never applied the entries before it
    // again, so it has no events for them, and says so instead of leaving a gap.
    cluster.stop(0).await;
    cluster.restart(0).await.unwrap();
    let (oldest, _) = cluster.node(0).fleet.events().bounds();
    assert!(oldest > start, "{oldest}");
    let url = format!("{}/v1/events?since={start}", cluster.api(0));
    let (status, body) = send(&cluster, reqwest::Method::GET, &url, Value::Null).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("every event after index {oldest}")),
        "{message}"
    );
    let url = format!("{}/v1/events?since={start}&follow=true", cluster.api(0));
    let (status, _) = send(&cluster, reqwest::Method::GET, &url, Value::Null).await;
    assert_eq!(status, 409, "a follow from there too");
    // From what it keeps on, it answers; node 1 still has the older events.
    backlog(&cluster, 0, &format!("since={oldest}")).await;
    assert_eq!(
        backlog(&cluster, 1, &format!("since={start}&topic=audit")).await,
        audit
    );
    cluster.shutdown().await;
}
