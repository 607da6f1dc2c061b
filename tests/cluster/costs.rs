//! Budgets and costs on a live cluster: costs reported from inside a job count once, a
//! token stops counting when its attempt ends, a budget refuses work on every node once
//! met, a runner-minute quota with `on_exceed = stop` stops running work, and every node
//! tells the same spend, before and after the leader fails.

use std::time::Duration;

use serde_json::{Value, json};
use shoal_daemon::testsuite::{Cluster, init_logs};
use shoal_protocol::JobState;

use crate::http::{job_output, machines, post, send};

/// Sends `body` to `url` with `key`, returning the status and the body as JSON.
async fn send_as(key: &str, method: reqwest::Method, url: String, body: Value) -> (u16, Value) {
    let response = shoal_daemon::testsuite::http_client_builder()
        .build()
        .unwrap()
        .request(method, &url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|err| panic!("{url}: {err}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(url: String) -> Value {
    let (status, body) = send(reqwest::Method::GET, url.clone(), Value::Null).await;
    assert_eq!(status, 200, "GET {url}: {body}");
    body
}

/// Reports $0.013 twice under one id from inside the job (over HTTPS, trusting the fleet CA
/// the job gets in SHOAL_CACERT_PEM), then prints its token.
const REPORTER: &str = r#"ca=$(mktemp); printf '%s\n' "$SHOAL_CACERT_PEM" > "$ca"
for i in 1 2; do
  curl -sS --cacert "$ca" -H "Authorization: Bearer $SHOAL_JOB_TOKEN" \
    -H "Content-Type: application/json" \
    -d '{"usd": 0.013, "note": "model call", "id": "call-1"}' "$SHOAL_API/v1/costs"
  echo
done
rm -f "$ca"
echo "token $SHOAL_JOB_TOKEN""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_hold_everywhere_reports_count_once_and_spend_survives_failover() {
    init_logs();
    let mut cluster = Cluster::start(3).await.unwrap();
    let api = cluster.api(0);
    // Every machine costs $36 an hour: a cent a second.
    for machine in machines(&api).await {
        let url = format!("{api}/v1/machines/{}/labels", machine.id);
        let body = json!({"set": {"cost_per_hour": "36"}});
        let (status, answer) = send(reqwest::Method::PUT, url, body).await;
        assert_eq!(status, 200, "{answer}");
    }

    // A job reports a cost twice with one id: it counts once. Once the attempt has
    // ended, its token no longer counts.
    let id = cluster
        .submit(1, json!({"command": ["sh", "-c", REPORTER]}))
        .await;
    cluster
        .wait_job(0, id, "completed", |j| j.state == JobState::Completed)
        .await;
    let output = job_output(&api, id).await;
    let answers: Vec<Value> = output
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 2, "{output}");
    assert_eq!(
        (&answers[0]["counted"], &answers[1]["counted"]),
        (&json!(true), &json!(false)),
        "{output}"
    );
    let token = output
        .lines()
        .find_map(|l| l.strip_prefix("token "))
        .expect("the job printed its token");
    // The token works only on the machine that ran the attempt, and there only while it
    // runs; every report needs an id.
    let ran_on = cluster
        .node(0)
        .fleet
        .read(|s| s.jobs[&id].attempts[0].machine);
    let here = (0..3).find(|&i| cluster.node(i).id == ran_on).unwrap();
    let elsewhere = (here + 1) % 3;
    let report = |i: usize, body: Value| {
        send_as(
            token,
            reqwest::Method::POST,
            format!("{}/v1/costs", cluster.api(i)),
            body,
        )
    };
    let (status, answer) = report(here, json!({"usd": 1.0, "id": "late"})).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("forbidden")),
        "{answer}"
    );
    let (status, answer) = report(elsewhere, json!({"usd": 1.0, "id": "copied"})).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("forbidden")),
        "{answer}"
    );
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("only on the machine"),
        "{answer}"
    );
    let (status, answer) = report(here, json!({"usd": 1.0})).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("bad_request")),
        "{answer}"
    );
    assert!(
        answer["message"].as_str().unwrap().contains("id"),
        "{answer}"
    );
    let job = cluster.node(0).fleet.read(|s| s.jobs[&id].clone());
    assert_eq!(job.attempts[0].reported_micro_usd, 13_000);
    assert_eq!(job.attempts[0].rate_micro_usd_per_hour, 36_000_000);

    // A budget three cents above today's spend: one-second jobs run until it is met,
    // then every node refuses the next with budget_exceeded.
    let spent = get(format!("{api}/v1/costs")).await["total"]["usd"]
        .as_f64()
        .unwrap();
    let (status, answer) = send(
        reqwest::Method::PUT,
        format!("{api}/v1/budgets/default"),
        json!({"daily_usd": spent + 0.03}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let mut ran = 0;
    let refusal = loop {
        assert!(ran < 10, "ten jobs ran and the budget still admits more");
        let (status, answer) = post(
            format!("{}/v1/jobs", cluster.api(ran % 3)),
            json!({"command": ["sleep", "1"]}),
        )
        .await;
        if status != 201 {
            break (status, answer);
        }
        let id = shoal_protocol::JobId(answer["job"]["id"].as_u64().unwrap());
        cluster
            .wait_job(0, id, "completed", |j| j.state == JobState::Completed)
            .await;
        ran += 1;
    };
    assert!(ran >= 1, "the first job after the budget was set ran");
    assert_eq!(refusal.0, 429, "{}", refusal.1);
    assert_eq!(refusal.1["code"], "budget_exceeded");
    let message = refusal.1["message"].as_str().unwrap();
    assert!(
        message.contains("daily budget is $") && message.contains("resets at"),
        "{message}"
    );
    for i in 0..3 {
        let url = format!("{}/v1/jobs", cluster.api(i));
        let (status, answer) = post(url, json!({"command": ["true"]})).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (429, Some("budget_exceeded")),
            "node {i}"
        );
    }
    let summary = get(format!("{}/v1/fleet/summary", cluster.api(2))).await;
    assert!(
        summary["spend_today"]["usd"].as_f64().unwrap() >= spent + 0.03,
        "{summary}"
    );

    // Another org with a 3-second runner quota and on_exceed = stop: its long job is
    // stopped when the quota is crossed, and its next job is refused.
    let (status, created) = post(
        format!("{api}/v1/keys"),
        json!({"scope": "operate", "org": "lab"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let lab = created["key"].as_str().unwrap().to_string();
    let (status, answer) = send(
        reqwest::Method::PUT,
        format!("{api}/v1/budgets/lab"),
        json!({"daily_runner_minutes": 0.05, "on_exceed": "stop"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = send_as(
        &lab,
        reqwest::Method::POST,
        format!("{}/v1/jobs", cluster.api(1)),
        json!({"command": ["sleep", "60"]}),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let long = shoal_protocol::JobId(answer["job"]["id"].as_u64().unwrap());
    let stopped = cluster
        .wait_job(0, long, "stopped by its org's quota", |j| {
            j.state == JobState::Cancelled
        })
        .await;
    let attempt = &stopped.attempts[0];
    let ran_ms = attempt.finished_at_ms.unwrap() - attempt.started_at_ms.unwrap();
    assert!((3_000..20_000).contains(&ran_ms), "ran {ran_ms} ms");
    let (status, answer) = send_as(
        &lab,
        reqwest::Method::POST,
        format!("{}/v1/jobs", cluster.api(2)),
        json!({"command": ["true"]}),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (429, Some("quota_exceeded")),
        "{answer}"
    );

    // All work has ended: every node tells the same spend, by job and by org, and so do
    // the survivors after the leader is killed.
    let sheets = |cluster: &Cluster| {
        let urls: Vec<String> = cluster
            .running()
            .into_iter()
            .map(|i| format!("{}/v1/costs?by=job", cluster.api(i)))
            .collect();
        async move {
            let mut sheets = Vec::new();
            for url in urls {
                sheets.push(get(url).await["rows"].clone());
            }
            sheets
        }
    };
    // A replica may be an entry behind the one that answered last: wait until all agree.
    let mut seen = sheets(&cluster).await;
    for _ in 0..50 {
        if seen.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = sheets(&cluster).await;
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:#?}");
    let before = seen[0].clone();
    assert!(before.as_array().unwrap().len() >= 3, "{before}");
    let leader = cluster.leader().unwrap();
    cluster.stop(leader).await;
    cluster.wait_leader(Duration::from_secs(10)).await.unwrap();
    for sheet in sheets(&cluster).await {
        assert_eq!(sheet, before);
    }
    cluster.shutdown().await;
}

/// Reports $0.015 twice under two ids from inside the job.
const TWO_REPORTS: &str = r#"ca=$(mktemp); printf '%s\n' "$SHOAL_CACERT_PEM" > "$ca"
for i in 1 2; do
  curl -sS --cacert "$ca" -H "Authorization: Bearer $SHOAL_JOB_TOKEN" \
    -H "Content-Type: application/json" \
    -d "{\"usd\": 0.015, \"id\": \"call-$i\"}" "$SHOAL_API/v1/costs"
  echo
done
rm -f "$ca""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_reports_at_most_its_orgs_daily_budget_in_all() {
    init_logs();
    let cluster = Cluster::start(1).await.unwrap();
    let api = cluster.api(0);
    let budget = json!({"daily_usd": 0.02});
    let url = format!("{api}/v1/budgets/default");
    let (status, answer) = send(reqwest::Method::PUT, url, budget).await;
    assert_eq!(status, 200, "{answer}");
    let id = cluster
        .submit(0, json!({"command": ["sh", "-c", TWO_REPORTS]}))
        .await;
    cluster
        .wait_job(0, id, "completed", |j| j.state == JobState::Completed)
        .await;
    let output = job_output(&api, id).await;
    let answers: Vec<Value> = output
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers[0]["counted"], true, "{output}");
    let refused = answers[1]["message"].as_str().unwrap_or_default();
    assert!(refused.contains("all its reports together"), "{output}");
    let job = cluster.node(0).fleet.read(|s| s.jobs[&id].clone());
    assert_eq!(job.attempts[0].reported_micro_usd, 15_000);
}
