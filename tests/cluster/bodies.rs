//! Request bodies no one meant, at the HTTP layer: valid bodies of the job, batch, session,
//! template, policy and budget routes with values swapped for random JSON, fields dropped
//! or added, sent to a live node. Each route has its own fixed seed, so a failure repeats.
//! No answer is a 5xx, every refusal says what was wrong, and the node answers on. A
//! refusal given before the route reads the body leaves the connection usable.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use shoal_daemon::config::Timings;
use shoal_daemon::testsuite::{Cluster, init_logs};

use crate::http::send;

/// Mutated bodies sent to each route.
const CASES_PER_ROUTE: usize = 150;

fn job() -> Value {
    json!({
        "command": ["sh", "-c", "true"], "image": "busybox:local", "env": {"A": "1"},
        "secret_env": {"S": "x"}, "required_labels": {"gpu": "true"}, "priority": 1,
        "timeout_seconds": 60, "queue_timeout_seconds": 60, "max_attempts": 2,
        "idempotency_key": "k", "cpus": 1.0, "memory_mb": 64, "org": "default"
    })
}

/// Each route, a valid body for it, and its seed.
fn routes() -> Vec<(reqwest::Method, &'static str, Value, u64)> {
    use reqwest::Method;
    let template = json!({
        "image": "busybox:local", "command": ["sh"], "env": {"A": "1"},
        "secret_env": {"S": "x"}, "cpus": 1, "memory_mb": 64,
        "max_duration_seconds": 60, "required_labels": {"a": "b"},
        "digest": format!("sha256:{}", "ab".repeat(32))
    });
    let policy = json!({
        "selector": {"role": "fuzz"}, "allowed_images": ["busybox:*"], "max_cpus": 2.0,
        "max_memory_mb": 512, "max_duration_seconds": 3600, "network_mode": "none"
    });
    let budget = json!({"daily_usd": 10.5, "daily_runner_minutes": 100, "on_exceed": "stop"});
    let session =
        json!({"template_id": "fuzz", "required_labels": {"a": "b"}, "idempotency_key": "s"});
    vec![
        (Method::POST, "/v1/jobs", job(), 1),
        (
            Method::POST,
            "/v1/jobs/batch",
            json!({"jobs": [job(), job()]}),
            2,
        ),
        (Method::POST, "/v1/sessions", session, 3),
        (Method::PUT, "/v1/templates/fuzz", template, 4),
        (Method::PUT, "/v1/policies/fuzz", policy, 5),
        (Method::PUT, "/v1/budgets/fuzz", budget, 6),
    ]
}

/// A JSON value of any kind, with the edges numbers and strings have.
fn any_value(rng: &mut StdRng, depth: u32) -> Value {
    let leaves: [fn(&mut StdRng) -> Value; 12] = [
        |_| Value::Null,
        |rng| json!(rng.random::<bool>()),
        |rng| json!(rng.random::<i64>()),
        |_| json!(u64::MAX),
        |_| json!(-1),
        |_| json!(0),
        |rng| json!(rng.random::<f64>() * 1e300),
        |_| serde_json::from_str("18446744073709551616").unwrap(),
        |_| json!(""),
        |rng| json!("x".repeat(rng.random_range(1..70_000))),
        |_| json!("\u{0}\u{202e}\u{1F600}NaN"),
        |_| json!("sha256:nothex"),
    ];
    if depth < 2 && rng.random_ratio(1, 4) {
        let len = rng.random_range(0..4);
        if rng.random() {
            return Value::Array((0..len).map(|_| any_value(rng, depth + 1)).collect());
        }
        let fields = (0..len).map(|i| (format!("k{i}"), any_value(rng, depth + 1)));
        return Value::Object(fields.collect());
    }
    leaves.choose(rng).unwrap()(rng)
}

/// Every place in `value` a mutation may touch, as JSON pointers.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| pointers(v, format!("{at}/{k}"), out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| pointers(v, format!("{at}/{i}"), out)),
        _ => {}
    }
    out.push(at);
}

/// `body` with one to three changes: a value replaced, a field dropped or one added.
fn mutate(rng: &mut StdRng, body: &Value) -> Value {
    let mut body = body.clone();
    for _ in 0..rng.random_range(1..=3) {
        let mut places = Vec::new();
        pointers(&body, String::new(), &mut places);
        let place = places.choose(rng).unwrap().clone();
        let replacement = any_value(rng, 0);
        match rng.random_range(0..3) {
            0 => *body.pointer_mut(&place).unwrap() = replacement,
            1 => {
                let (parent, key) = place.rsplit_once('/').unwrap_or_default();
                if let Some(Value::Object(map)) = body.pointer_mut(parent) {
                    map.remove(key);
                }
            }
            _ => {
                if let Some(Value::Object(map)) = body.pointer_mut(&place) {
                    map.insert("unknown_field".into(), replacement);
                }
            }
        }
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_bodies_get_a_4xx_or_a_success_never_a_5xx() {
    init_logs();
    let cluster = Cluster::start_configured(1, Timings::fast(), |config| {
        config.run_jobs = false;
    })
    .await
    .unwrap();
    let api = cluster.api(0);
    let template = json!({"image": "busybox:local"});
    let (status, _) = send(
        reqwest::Method::PUT,
        format!("{api}/v1/templates/fuzz"),
        template,
    )
    .await;
    assert_eq!(status, 200);

    let mut seen: BTreeMap<u16, usize> = BTreeMap::new();
    for (method, path, valid, seed) in routes() {
        let mut rng = StdRng::seed_from_u64(seed);
        let (status, answer) = send(method.clone(), format!("{api}{path}"), valid.clone()).await;
        assert!(
            status < 300,
            "the valid body of {method} {path}: {status} {answer}"
        );
        for case in 0..CASES_PER_ROUTE {
            let body = mutate(&mut rng, &valid);
            let (status, answer) = send(method.clone(), format!("{api}{path}"), body.clone()).await;
            let shown = || body.to_string().chars().take(300).collect::<String>();
            assert!(
                status < 500,
                "{method} {path} case {case} (seed {seed}): {status} {answer} for {}",
                shown()
            );
            if status >= 400 && status != 413 {
                let message = answer["message"].as_str().unwrap_or_default();
                assert!(
                    !message.is_empty(),
                    "{method} {path}: {status} {answer} for {}",
                    shown()
                );
            }
            *seen.entry(status).or_default() += 1;
        }
    }
    // Both kinds of answer came: the mutations reach past the first check.
    assert!(seen.contains_key(&400), "{seen:?}");
    assert!(seen.keys().any(|s| (200..300).contains(s)), "{seen:?}");
    let (status, _) = send(reqwest::Method::GET, format!("{api}/health"), Value::Null).await;
    assert_eq!(status, 200, "the node answers on");
    cluster.shutdown().await;
}

/// One HTTP/1.1 exchange on `stream`: the request's head, then its body (`body_later`: a
/// moment later, as many clients send it), then the answer's status, its head
/// (lower-cased) and its body, read by Content-Length.
async fn exchange(
    stream: &mut tokio::net::TcpStream,
    request: &str,
    body_later: bool,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let split = request.find("\r\n\r\n").expect("a request head") + 4;
    stream
        .write_all(&request.as_bytes()[..split])
        .await
        .unwrap();
    if body_later {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stream
        .write_all(&request.as_bytes()[split..])
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buf.len() >= end + 4 + length {
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]);
                    let status = head[9..12].parse().unwrap();
                    return (status, head.clone(), body.to_string());
                }
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "the node closed the connection: {}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("an answer within 10 s")
}

/// A refusal given before the route reads the body (no key: 401) leaves the connection
/// open for the client's next request on it; a body over the limit is a 413 that closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_before_the_body_is_read_keeps_the_connection() {
    init_logs();
    let cluster = Cluster::start_configured(1, Timings::fast(), |config| {
        config.api_tls = shoal_daemon::tls::ApiTls::Off;
    })
    .await
    .unwrap();
    let addr = cluster.api(0).trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = r#"{"machines": ["node-0"]}"#;
    let post = |auth: &str| {
        format!(
            "POST /v1/undrain HTTP/1.1\r\nhost: {addr}\r\n{auth}content-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    for _ in 0..3 {
        let (status, head, said) = exchange(&mut stream, &post(""), true).await;
        assert_eq!(status, 401, "{said}");
        assert!(!head.contains("connection: close"), "{head}");
        let key = format!(
            "authorization: Bearer {}\r\n",
            shoal_daemon::testsuite::TEST_KEY
        );
        let (status, _, said) = exchange(&mut stream, &post(&key), true).await;
        assert_eq!(
            status, 200,
            "the next request on the same connection: {said}"
        );
    }

    let big = "x".repeat(shoal_daemon::api::MAX_BODY_BYTES + 1);
    let request = format!(
        "POST /v1/undrain HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{big}",
        big.len()
    );
    let (status, head, said) = exchange(&mut stream, &request, false).await;
    assert_eq!(status, 413, "{said}");
    assert!(said.contains("byte limit"), "{said}");
    assert!(head.contains("connection: close"), "{head}");
    cluster.shutdown().await;
}
