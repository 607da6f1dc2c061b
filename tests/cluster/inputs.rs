//! Every number a user can send, at values no one means: each is refused with a 400 that
//! names the field, nothing changes, and the node answers on.

use serde_json::{Value, json};
use shoal_daemon::testsuite::{Cluster, init_logs};

use crate::http::send;

/// Values wrong for every numeric field: past u64, past any sane float, and not a number
/// at all.
fn absurd() -> Vec<Value> {
    vec![
        serde_json::from_str("18446744073709551616").unwrap(),
        json!(1e308),
        json!("NaN"),
    ]
}

/// What a fleet holds that a refused write could have changed.
async fn holdings(api: &str) -> Value {
    let mut seen = serde_json::Map::new();
    for path in [
        "/v1/jobs?limit=1000",
        "/v1/templates",
        "/v1/policies",
        "/v1/budgets",
        "/v1/fleet/settings",
    ] {
        let (status, body) = send(reqwest::Method::GET, format!("{api}{path}"), Value::Null).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        seen.insert(path.to_string(), body);
    }
    Value::Object(seen)
}

/// A numeric field and the values, besides [`absurd`], it refuses.
type Field = (&'static str, Vec<Value>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_numbers_are_refused_naming_the_field_and_change_nothing() {
    init_logs();
    let cluster = Cluster::start(1).await.unwrap();
    let api = cluster.api(0);
    use reqwest::Method;
    // (method, path, a valid body, its numeric fields, values the field also refuses)
    let cases: Vec<(Method, &str, Value, Vec<Field>)> = vec![
        (
            Method::POST,
            "/v1/jobs",
            json!({"command": ["true"]}),
            vec![
                ("priority", vec![json!(1e10), json!(-1e10)]),
                ("cpus", vec![json!(-1), json!(0), json!(1e9)]),
                ("memory_mb", vec![json!(-1), json!(0), json!(u64::MAX)]),
                (
                    "timeout_seconds",
                    vec![json!(-1), json!(0), json!(u64::MAX)],
                ),
                (
                    "queue_timeout_seconds",
                    vec![json!(-1), json!(0), json!(u64::MAX)],
                ),
                ("max_attempts", vec![json!(-1), json!(0), json!(u64::MAX)]),
                (
                    "gpus",
                    vec![json!(-1), json!(0), json!(17), json!(u64::MAX)],
                ),
            ],
        ),
        (
            Method::PUT,
            "/v1/templates/absurd",
            json!({"image": "busybox:local"}),
            vec![
                ("cpus", vec![json!(-1), json!(0), json!(1e9)]),
                ("memory_mb", vec![json!(-1), json!(0), json!(u64::MAX)]),
                (
                    "max_duration_seconds",
                    vec![json!(-1), json!(0), json!(u64::MAX)],
                ),
                (
                    "gpus",
                    vec![json!(-1), json!(0), json!(17), json!(u64::MAX)],
                ),
            ],
        ),
        (
            Method::PUT,
            "/v1/policies/absurd",
            json!({"selector": {"role": "none"}}),
            vec![
                ("max_cpus", vec![json!(-1), json!(0), json!(1e9)]),
                ("max_memory_mb", vec![json!(-1), json!(0), json!(u64::MAX)]),
                (
                    "max_duration_seconds",
                    vec![json!(-1), json!(0), json!(u64::MAX)],
                ),
            ],
        ),
        (
            Method::PUT,
            "/v1/budgets/absurd",
            json!({"daily_usd": 1.0}),
            vec![
                ("daily_usd", vec![json!(-1), json!(1e9)]),
                ("daily_runner_minutes", vec![json!(-1), json!(1e12)]),
            ],
        ),
        (
            Method::PUT,
            "/v1/fleet/settings",
            json!({"job_retention_seconds": 3600}),
            vec![(
                "job_retention_seconds",
                vec![json!(-1), json!(0), json!(u64::MAX)],
            )],
        ),
    ];
    let before = holdings(&api).await;
    let mut tried = 0;
    for (method, path, valid, fields) in &cases {
        for (field, extra) in fields {
            for value in absurd().into_iter().chain(extra.iter().cloned()) {
                let mut body = valid.clone();
                body[*field] = value.clone();
                let (status, answer) = send(method.clone(), format!("{api}{path}"), body).await;
                tried += 1;
                let message = answer["message"].as_str().unwrap_or_default();
                assert!(
                    status == 400 && message.contains(field),
                    "{method} {path} with {field} = {value}: {status} {answer}"
                );
            }
        }
    }
    assert!(tried > 60, "only {tried} refusals were tried");
    assert_eq!(
        holdings(&api).await,
        before,
        "a refused write changed the fleet"
    );
    // The valid bodies are taken, so the refusals above were about the numbers.
    for (method, path, valid, _) in &cases {
        let (status, answer) = send(method.clone(), format!("{api}{path}"), valid.clone()).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
    }
}
