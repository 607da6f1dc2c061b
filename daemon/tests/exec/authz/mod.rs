//! The README's authorization table walked on a live two-node cluster: every operation,
//! for no key and for a read, operate and admin key of the owning org and of another,
//! through the leader and through the follower (which forwards writes to the leader and
//! relays session calls to the leader, where the session runs), as plain HTTP and, where
//! the route takes one, as a WebSocket upgrade. Each cell gets the answer the table says:
//!
//! ```text
//!  no key (any /v1 route)            401
//!  a scope below the row's           403
//!  another org, one org-bound thing  404          lists leave it out; new things are the key's org's
//!  otherwise                         the operation's own success
//! ```
//!
//! A refused change is read back: what it aimed at is as it was, and the audit log got no
//! entry (the read also proves the node could answer).

mod calls;
mod probes;
mod table;
mod world;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use shoal_daemon::testsuite::{Cluster, TEST_KEY, init_logs};
use shoal_protocol::keys::Scope;

use calls::{send, upgrade};
use probes::{Probe, Settle, Target, Witness, probe};
use table::{OrgBound, Row};
use world::{OWNER_ORG, World};

/// The org of the other keys.
const OTHER_ORG: &str = "rival";

/// Who calls: no key, or a key of a scope and org.
struct Caller {
    key: Option<String>,
    scope: Option<Scope>,
    org: &'static str,
}

impl Caller {
    fn name(&self) -> String {
        match self.scope {
            Some(scope) => format!("{scope} key of org {}", self.org),
            None => "no key".to_string(),
        }
    }

    fn same_org(&self) -> bool {
        self.org == OWNER_ORG
    }
}

/// No key, then each scope of each org.
async fn callers(world: &World) -> Vec<Caller> {
    let mut callers = vec![Caller {
        key: None,
        scope: None,
        org: OWNER_ORG,
    }];
    for org in [OWNER_ORG, OTHER_ORG] {
        for scope in [Scope::Read, Scope::Operate, Scope::Admin] {
            let body = json!({"scope": scope, "org": org, "name": format!("authz-{scope}-{org}")});
            let made = world.admin(Method::POST, "/v1/keys", Some(body)).await;
            callers.push(Caller {
                key: made["key"].as_str().map(str::to_string),
                scope: Some(scope),
                org,
            });
        }
    }
    callers
}

/// What a cell must answer.
#[derive(Debug, PartialEq)]
enum Expected {
    Refused(u16),
    Allowed,
}

fn expected(row: &Row, caller: &Caller, target: &Target) -> Expected {
    let Some(needed) = row.scope else {
        // Open routes answer anyone; the job-token route takes no API key.
        return match row.behind_the_key_check() {
            true => Expected::Refused(401),
            false => Expected::Allowed,
        };
    };
    match caller.scope {
        None => Expected::Refused(401),
        Some(scope) if scope < needed => Expected::Refused(403),
        _ if !caller.same_org() && row.org == OrgBound::Yes && matches!(target, Target::One) => {
            Expected::Refused(404)
        }
        _ => Expected::Allowed,
    }
}

/// Whether `caller` must see the owner's thing in a list the row answers.
fn sees_owners(row: &Row, caller: &Caller) -> bool {
    match row.org {
        OrgBound::No => true,
        OrgBound::Yes => caller.same_org(),
        OrgBound::OwnUnlessAdmin => caller.same_org() || caller.scope == Some(Scope::Admin),
    }
}

/// The audit log's newest entry, read through `base`.
async fn audit_head(base: &str) -> u64 {
    let answer = send(
        base,
        Some(TEST_KEY),
        &Method::GET,
        "/v1/audit?limit=1",
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body["entries"][0]["seq"]
        .as_u64()
        .expect("an audit entry")
}

/// The audit head of the node at `base` once it has applied every change the leader has
/// (the changes that set up a cell went through the leader).
async fn caught_up(world: &World, base: &str) -> u64 {
    let leader = audit_head(&world.leader).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let head = audit_head(base).await;
        if head >= leader {
            return head;
        }
        assert!(
            Instant::now() < deadline,
            "{base} did not catch up with the leader"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What `witness` reads through `base` (`null` for a thing that is not there).
async fn read_back(base: &str, witness: &Witness) -> Value {
    let get = |path: String| async move {
        let answer = send(base, Some(TEST_KEY), &Method::GET, &path, None).await;
        match answer.status {
            200 => answer.body,
            404 => Value::Null,
            status => panic!("GET {path}: {status} {}", answer.body),
        }
    };
    match witness {
        Witness::Field { path, pointer } => get(path.clone())
            .await
            .pointer(pointer)
            .cloned()
            .unwrap_or(Value::Null),
        Witness::Entry {
            path,
            list,
            key,
            value,
        } => {
            let body = get(path.clone()).await;
            let items = body.pointer(list).and_then(Value::as_array).cloned();
            let found = items
                .into_iter()
                .flatten()
                .find(|item| item[key] == *value.as_str());
            found.unwrap_or(Value::Null)
        }
        Witness::KeyWorks(key) => {
            let answer = send(base, Some(key), &Method::GET, "/v1/jobs", None).await;
            json!(answer.status)
        }
        Witness::SessionFile { session, file } => {
            let path = format!("/v1/sessions/{session}/exec");
            let body = json!({"command": ["sh", "-c", format!("test -e {file} && echo there || echo absent")]});
            let answer = send(base, Some(TEST_KEY), &Method::POST, &path, Some(&body)).await;
            assert_eq!(answer.status, 200, "{}", answer.body);
            answer.body["stdout"].clone()
        }
    }
}

/// One cell: `row` for `caller` through the node at `base`. Each way it differs from the
/// table is pushed onto `failures`.
async fn cell(
    world: &World,
    row: &Row,
    caller: &Caller,
    via: (&str, &str),
    failures: &mut Vec<String>,
) {
    let (base, via) = via;
    let operation = row.operation();
    let method = Method::from_bytes(row.method.as_bytes()).unwrap();
    let probe_of_target = probe(world, &operation, false).await;
    let expect = expected(row, caller, &probe_of_target.target);
    // An allowed change consumes its target: give it a fresh one.
    let probe: Probe = match expect {
        Expected::Allowed if method != Method::GET => probe(world, &operation, true).await,
        _ => probe_of_target,
    };
    let what = format!(
        "{operation} ({}) as {} via the {via}",
        probe.path,
        caller.name()
    );
    let mut fail = |failure: String| failures.push(failure);
    let refused_change = method != Method::GET && expect != Expected::Allowed;
    // What set the cell up went through the leader: the node asked has it too.
    let head = caught_up(world, base).await;
    let before = match &probe.witness {
        Some(witness) if method != Method::GET => Some(read_back(base, witness).await),
        _ => None,
    };
    let key = caller.key.as_deref();
    let answer = send(base, key, &method, &probe.path, probe.body.as_ref()).await;
    let (status, body) = (answer.status, short(&answer.body));
    if !answers_as_expected(&expect, probe.success, status) {
        fail(format!("{what}: {expect:?} but {status} {body}"));
    } else if expect == Expected::Allowed {
        if let Err(failure) = check_org(world, row, caller, &probe.target, &answer.body) {
            fail(format!("{what}: {failure}"));
        }
        if let Some(settle) = &probe.settle {
            settled(world, settle, &answer.body).await;
        }
    }
    if let (Some(witnessed), Some(witness)) = (before, &probe.witness) {
        assert_ne!(witnessed, Value::Null, "{what}: the witness reads nothing");
        let now = read_back(base, witness).await;
        if refused_change && now != witnessed {
            fail(format!(
                "{what}: refused, yet it changed {witnessed} to {now}"
            ));
        }
        // An allowed change shows: the witness of a refused one would have seen it too.
        let changed = expect == Expected::Allowed && probe.success.contains(&status);
        assert!(
            !changed || now != witnessed,
            "{what}: the witness misses the change ({now})"
        );
    }
    if refused_change && audit_head(base).await != head {
        fail(format!("{what}: refused, yet it left an audit entry"));
    }
    // HEAD is GET without the body, and needs what GET needs.
    if method == Method::GET {
        let status = send(base, key, &Method::HEAD, &probe.path, None)
            .await
            .status;
        if !answers_as_expected(&expect, probe.success, status) {
            fail(format!("HEAD for {what}: {expect:?} but {status}"));
        }
    }
    if let Some(path) = &probe.websocket {
        let status = upgrade(base, key, path).await;
        if !answers_as_expected(&expect, &[101], status) {
            fail(format!(
                "{what} as a WebSocket ({path}): {expect:?} but {status}"
            ));
        }
    }
    if expect == Expected::Allowed {
        for (method, path, body) in probe.cleanup {
            world.admin(method, &path, body).await;
        }
    }
}

fn answers_as_expected(expect: &Expected, success: &[u16], status: u16) -> bool {
    match expect {
        Expected::Refused(refused) => status == *refused,
        Expected::Allowed => success.contains(&status),
    }
}

/// Waits until the leader has finished what an allowed request started.
/// Waits until both nodes show what an allowed change set going (the leader finishes a key
/// rotation after it answers), so the next cell's witness reads a settled value.
async fn settled(world: &World, settle: &Settle, answer: &Value) {
    let Settle::GossipKeyGeneration = settle;
    let generation = answer["generation"]
        .as_u64()
        .expect("the generation rotated to");
    let deadline = Instant::now() + Duration::from_secs(10);
    for base in [&world.leader, &world.follower] {
        let seen = || async {
            let cluster = send(base, Some(TEST_KEY), &Method::GET, "/v1/cluster", None).await;
            cluster.body["gossip_key_generation"].as_u64()
        };
        while seen().await < Some(generation) {
            assert!(
                Instant::now() < deadline,
                "gossip key generation {generation} not made on {base}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The start of `body`, for a message.
fn short(body: &Value) -> String {
    body.to_string().chars().take(200).collect()
}

/// What an allowed answer says about orgs: a list shows the owner's thing only to whom the
/// table lets see it; what was made belongs to the caller's org.
fn check_org(
    world: &World,
    row: &Row,
    caller: &Caller,
    target: &Target,
    body: &Value,
) -> Result<(), String> {
    match target {
        Target::List(shows) if shows(world, body) != sees_owners(row, caller) => Err(format!(
            "shows org {OWNER_ORG}'s thing: {}, the table says {}",
            shows(world, body),
            sees_owners(row, caller)
        )),
        Target::Made(pointer) if body.pointer(pointer) != Some(&json!(caller.org)) => Err(format!(
            "made in another org than the caller's: {}",
            short(body)
        )),
        _ => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_each_scope_and_org_as_the_readme_table_says() {
    init_logs();
    let _image = crate::support::test_image();
    let started = Instant::now();
    let cluster = Cluster::start(2).await.unwrap();
    let machines = (0..2).map(|i| cluster.node(i).id).collect();
    let _left_behind = crate::cluster::LeftBehind(machines);

    // The table lists exactly what the API document does, with the same scopes.
    let rows = table::readme_rows();
    let document = send(
        &cluster.api(0),
        None,
        &Method::GET,
        "/v1/openapi.json",
        None,
    )
    .await;
    assert_eq!(document.status, 200);
    table::check_against_document(&rows, &document.body);

    let world = World::set_up(&cluster).await;
    let callers = callers(&world).await;
    let set_up = started.elapsed();
    let mut failures = Vec::new();
    for row in &rows {
        for via in [
            (world.leader.as_str(), "leader"),
            (world.follower.as_str(), "follower"),
        ] {
            for caller in &callers {
                cell(&world, row, caller, via, &mut failures).await;
            }
        }
    }
    let cells = rows.len() * 2 * callers.len();
    let walked = started.elapsed() - set_up;
    println!("{cells} cells walked in {walked:?}, after {set_up:?} setting up");
    world
        .admin(
            Method::POST,
            &format!("/v1/sessions/{}/terminate", world.session),
            None,
        )
        .await;
    cluster.shutdown().await;
    assert!(
        failures.is_empty(),
        "{} cells answer other than the README's table says:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the walk took {:?}",
        started.elapsed()
    );
}
