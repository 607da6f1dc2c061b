//! For each operation of the table, a well-formed request and what it reaches for: the one
//! thing it addresses, the list it reads, what it makes, or the fleet as a whole; what a
//! refused request must leave as it was; and what undoes an allowed change.

use reqwest::Method;
use serde_json::{Value, json};

use super::world::{NOWHERE, World};
use crate::support::IMAGE;

/// What an operation reaches for, which decides what another org's key gets.
pub enum Target {
    /// The fleet, or a machine: the org does not matter.
    Fleet,
    /// One org-owned thing named in the path: another org's key gets 404.
    One,
    /// A list; the function says whether an answer shows the standing thing of org
    /// `default`.
    List(fn(&World, &Value) -> bool),
    /// Something new, made in the caller's org; the pointer finds its org in the answer.
    Made(&'static str),
}

/// What a refused request must leave as it was, read back after it.
pub enum Witness {
    /// The value at `pointer` of what GET `path` answers.
    Field { path: String, pointer: &'static str },
    /// The element of the list at `list` (a pointer) in GET `path` whose `key` is `value`.
    Entry {
        path: String,
        list: &'static str,
        key: &'static str,
        value: String,
    },
    /// Whether this key is still accepted.
    KeyWorks(String),
    /// Whether this file exists in the session.
    SessionFile { session: u64, file: String },
}

pub struct Probe {
    /// The concrete path, with its query.
    pub path: String,
    pub body: Option<Value>,
    /// What an allowed plain HTTP request answers.
    pub success: &'static [u16],
    pub target: Target,
    /// The path to open as a WebSocket too (allowed: 101).
    pub websocket: Option<String>,
    pub witness: Option<Witness>,
    /// Requests (as the admin) that undo an allowed change.
    pub cleanup: Vec<(Method, String, Option<Value>)>,
    /// An allowed request starts a change the leader finishes later: wait for it, so it
    /// does not land during the next cell.
    pub settle: Option<Settle>,
}

pub enum Settle {
    /// Until `/v1/cluster` shows the gossip key generation the answer names.
    GossipKeyGeneration,
}

impl Probe {
    fn new(path: impl Into<String>, success: &'static [u16], target: Target) -> Probe {
        Probe {
            path: path.into(),
            body: None,
            success,
            target,
            websocket: None,
            witness: None,
            cleanup: Vec::new(),
            settle: None,
        }
    }

    fn body(mut self, body: Value) -> Probe {
        self.body = Some(body);
        self
    }

    fn witness(mut self, witness: Witness) -> Probe {
        self.witness = Some(witness);
        self
    }

    fn websocket(mut self, path: String) -> Probe {
        self.websocket = Some(path);
        self
    }

    fn settle(mut self, settle: Settle) -> Probe {
        self.settle = Some(settle);
        self
    }

    fn cleanup(mut self, method: Method, path: &str, body: Value) -> Probe {
        self.cleanup.push((method, path.to_string(), Some(body)));
        self
    }
}

const OK: &[u16] = &[200];
const CREATED: &[u16] = &[201];

fn field(path: impl Into<String>, pointer: &'static str) -> Witness {
    Witness::Field {
        path: path.into(),
        pointer,
    }
}

fn entry(path: &str, list: &'static str, key: &'static str, value: &str) -> Witness {
    Witness::Entry {
        path: path.to_string(),
        list,
        key,
        value: value.to_string(),
    }
}

fn lists(items: &Value, key: &str, want: &Value) -> bool {
    items
        .as_array()
        .is_some_and(|items| items.iter().any(|item| &item[key] == want))
}

/// The probe of `operation`. `fresh`: the request is expected to succeed, so what it
/// consumes (a machine to remove, a job to cancel) is made new for it.
pub async fn probe(world: &World, operation: &str, fresh: bool) -> Probe {
    let n = world.next();
    let follower = world.follower_id.as_str();
    let machine = format!("/v1/machines/{follower}");
    let job = format!("/v1/jobs/{}", world.job);
    let session = format!("/v1/sessions/{}", world.session);
    match operation {
        "GET /health" | "GET /metrics" | "GET /v1/openapi.json" => {
            Probe::new(operation.trim_start_matches("GET "), OK, Target::Fleet)
        }
        "GET /v1/machines"
        | "GET /v1/cluster"
        | "GET /v1/fleet/summary"
        | "GET /v1/fleet/settings"
        | "GET /v1/killswitch"
        | "GET /v1/keys"
        | "GET /v1/audit"
        | "GET /v1/tokens/registration"
        | "GET /v1/policies"
        | "GET /v1/registries"
        | "GET /v1/snapshot" => Probe::new(operation.trim_start_matches("GET "), OK, Target::Fleet),
        "GET /v1/machines/{id}" => Probe::new(&machine, OK, Target::Fleet),
        "GET /v1/machines/{id}/history" => {
            Probe::new(format!("{machine}/history"), OK, Target::Fleet)
        }
        "DELETE /v1/machines/{id}" if fresh => {
            let path = format!("/v1/machines/{}", made_up_machine(world, n).await);
            Probe::new(&path, OK, Target::Fleet).witness(field(&path, "/id"))
        }
        "DELETE /v1/machines/{id}" => {
            Probe::new(&machine, OK, Target::Fleet).witness(field(&machine, "/id"))
        }
        "POST /v1/machines/{id}/approve" => {
            let id = shoal_protocol::MachineId(0xa0_7400_0000_0000 + n);
            Probe::new(format!("/v1/machines/{id}/approve"), OK, Target::Fleet)
        }
        "PUT /v1/machines/{id}/labels" => {
            Probe::new(format!("{machine}/labels"), OK, Target::Fleet)
                .body(json!({"set": {"authz-probe": n.to_string()}}))
                .witness(field(&machine, "/operator_labels/authz-probe"))
        }
        "PUT /v1/fleet/settings" => Probe::new("/v1/fleet/settings", OK, Target::Fleet)
            .body(json!({"job_retention_seconds": 86_400 + n}))
            .witness(field("/v1/fleet/settings", "/job_retention_seconds")),
        "POST /v1/fleet/rotate-key" => {
            Probe::new("/v1/fleet/rotate-key", &[200, 202], Target::Fleet)
                .witness(field("/v1/cluster", "/gossip_key_generation"))
                .settle(Settle::GossipKeyGeneration)
        }
        "GET /v1/events" => Probe::new("/v1/events", OK, Target::List(shows_job_event))
            .websocket("/v1/events".to_string()),
        "POST /v1/jobs" => Probe::new("/v1/jobs", CREATED, Target::Made("/job/spec/org"))
            .body(World::queued_job_spec()),
        "POST /v1/jobs/batch" => {
            Probe::new("/v1/jobs/batch", OK, Target::Made("/jobs/0/job/spec/org"))
                .body(json!({"jobs": [World::queued_job_spec()]}))
        }
        "GET /v1/jobs" => Probe::new("/v1/jobs", OK, Target::List(shows_job)),
        "GET /v1/jobs/{id}" => Probe::new(&job, OK, Target::One),
        "POST /v1/jobs/{id}/cancel" => {
            let id = match fresh {
                true => world.queued_job().await,
                false => world.queued_job,
            };
            Probe::new(format!("/v1/jobs/{id}/cancel"), OK, Target::One)
                .witness(field(format!("/v1/jobs/{id}"), "/state"))
        }
        "GET /v1/jobs/{id}/logs" => Probe::new(format!("{job}/logs"), OK, Target::One)
            .websocket(format!("{job}/logs?follow=true")),
        "POST /v1/drain" => {
            let machines = json!({"machines": [follower]});
            Probe::new("/v1/drain", OK, Target::Fleet)
                .body(machines.clone())
                .witness(field(&machine, "/draining"))
                .cleanup(Method::POST, "/v1/undrain", machines)
        }
        "POST /v1/undrain" => {
            let machines = json!({"machines": [follower]});
            world
                .admin(Method::POST, "/v1/drain", Some(machines.clone()))
                .await;
            Probe::new("/v1/undrain", OK, Target::Fleet)
                .body(machines.clone())
                .witness(field(&machine, "/draining"))
                .cleanup(Method::POST, "/v1/undrain", machines)
        }
        "PUT /v1/killswitch" => Probe::new("/v1/killswitch", OK, Target::Fleet)
            .body(json!({"on": true, "reason": "authz probe"}))
            .witness(field("/v1/killswitch", "/on"))
            .cleanup(Method::PUT, "/v1/killswitch", json!({"on": false})),
        "POST /v1/keys" => Probe::new("/v1/keys", CREATED, Target::Fleet)
            .body(json!({"scope": "read", "name": format!("authz-probe-{n}")})),
        "DELETE /v1/keys/{id}" => {
            let made = world.admin(Method::POST, "/v1/keys", Some(json!({"scope": "read"})));
            let made = made.await;
            let id = made["record"]["id"].as_str().unwrap();
            let key = made["key"].as_str().unwrap().to_string();
            Probe::new(format!("/v1/keys/{id}"), OK, Target::Fleet).witness(Witness::KeyWorks(key))
        }
        "POST /v1/tokens/registration" => {
            Probe::new("/v1/tokens/registration", CREATED, Target::Fleet)
                .body(json!({"count": 1, "ttl_seconds": 600}))
        }
        "DELETE /v1/tokens/registration/{id}" => {
            let body = json!({"count": 1, "ttl_seconds": 600});
            let made = world
                .admin(Method::POST, "/v1/tokens/registration", Some(body))
                .await;
            let token = made["tokens"][0].as_str().unwrap();
            let id = token.split('_').nth(1).expect("shoaljoin_<id>_<secret>");
            let tokens = "/v1/tokens/registration";
            Probe::new(format!("{tokens}/{id}"), OK, Target::Fleet)
                .witness(entry(tokens, "/tokens", "id", id))
        }
        "POST /v1/costs" => Probe::new("/v1/costs", OK, Target::Fleet)
            .body(json!({"usd": 0.01, "id": format!("authz-{n}")})),
        "GET /v1/costs" => Probe::new("/v1/costs?by=job", OK, Target::List(shows_job_cost)),
        "GET /v1/budgets" => Probe::new("/v1/budgets", OK, Target::List(shows_owner_budget)),
        "PUT /v1/budgets/{org}" | "DELETE /v1/budgets/{org}" => {
            let path = format!("/v1/budgets/authz-{n}");
            world
                .admin(Method::PUT, &path, Some(json!({"daily_usd": 1})))
                .await;
            let probe = Probe::new(&path, OK, Target::Fleet).witness(entry(
                "/v1/budgets",
                "/budgets",
                "org",
                &format!("authz-{n}"),
            ));
            match operation.starts_with("PUT") {
                true => probe.body(json!({"daily_usd": 2})),
                false => probe,
            }
        }
        "PUT /v1/policies/{name}" | "DELETE /v1/policies/{name}" => {
            let name = format!("authz-{n}");
            let path = format!("/v1/policies/{name}");
            let spec = |cpus: u32| json!({"selector": {NOWHERE.0: NOWHERE.1}, "max_cpus": cpus});
            world.admin(Method::PUT, &path, Some(spec(1))).await;
            let probe = Probe::new(&path, OK, Target::Fleet).witness(entry(
                "/v1/policies",
                "/policies",
                "name",
                &name,
            ));
            match operation.starts_with("PUT") {
                true => probe.body(spec(2)),
                false => probe,
            }
        }
        "PUT /v1/registries/{registry}" | "DELETE /v1/registries/{registry}" => {
            let registry = format!("authz-{n}.lan");
            let path = format!("/v1/registries/{registry}");
            let login = |password: &str| json!({"username": "ci", "password": password});
            world.admin(Method::PUT, &path, Some(login("first"))).await;
            let probe = Probe::new(&path, OK, Target::Fleet).witness(entry(
                "/v1/registries",
                "/registries",
                "registry",
                &registry,
            ));
            match operation.starts_with("PUT") {
                true => probe.body(login("second")),
                false => probe,
            }
        }
        "GET /v1/templates" => Probe::new("/v1/templates", OK, Target::List(shows_template)),
        "GET /v1/templates/{name}" => {
            Probe::new(format!("/v1/templates/{}", world.template), OK, Target::One)
        }
        "PUT /v1/templates/{name}" => {
            // A put makes the template in the caller's org, whatever other orgs have by
            // that name: an allowed one takes a new name, so no later cell of its org
            // finds a template it made.
            let name = match fresh {
                true => format!("authz-put-{n}"),
                false => world.probe_template.clone(),
            };
            Probe::new(format!("/v1/templates/{name}"), OK, Target::Made("/org"))
                .body(json!({"image": IMAGE, "pull": "never", "command": ["true"]}))
        }
        "POST /v1/templates/{name}/rollback" => {
            world.put_probe_template().await;
            let path = format!("/v1/templates/{}", world.probe_template);
            Probe::new(format!("{path}/rollback"), OK, Target::One)
                .body(json!({"version": 1}))
                .witness(field(path, "/current"))
        }
        "POST /v1/sessions" => {
            Probe::new("/v1/sessions", CREATED, Target::One).body(world.queued_session_spec())
        }
        "GET /v1/sessions" => Probe::new("/v1/sessions", OK, Target::List(shows_session)),
        "GET /v1/sessions/{id}" => Probe::new(&session, OK, Target::One),
        "POST /v1/sessions/{id}/terminate" => {
            let id = match fresh {
                true => world.queued_session().await,
                false => world.queued_session,
            };
            Probe::new(format!("/v1/sessions/{id}/terminate"), OK, Target::One)
                .witness(field(format!("/v1/sessions/{id}"), "/state"))
        }
        "POST /v1/sessions/{id}/exec" => {
            // The image has no /tmp: its root is writable.
            let file = format!("/authz-{n}");
            Probe::new(format!("{session}/exec"), OK, Target::One)
                .body(json!({"command": ["touch", file]}))
                .witness(Witness::SessionFile {
                    session: world.session,
                    file,
                })
        }
        "GET /v1/sessions/{id}/logs" => Probe::new(format!("{session}/logs"), OK, Target::One)
            .websocket(format!("{session}/logs?follow=true")),
        // A plain GET is no WebSocket: allowed, it is a 400 saying so.
        "GET /v1/sessions/{id}/attach" => {
            Probe::new(format!("{session}/attach"), &[400], Target::One)
                .websocket(format!("{session}/attach?cols=80&rows=24"))
        }
        "POST /v1/batch/{action}" => {
            Probe::new("/v1/batch/update", OK, Target::Fleet).body(json!({"machines": [follower]}))
        }
        other => panic!("no probe for {other}: add one to authz/probes.rs"),
    }
}

/// A machine record no node stands behind, for a removal to take.
async fn made_up_machine(world: &World, n: u64) -> shoal_protocol::MachineId {
    let id = shoal_protocol::MachineId(0xa0_7200_0000_0000 + n);
    let info = shoal_protocol::MachineInfo {
        id,
        name: format!("authz-made-up-{n}"),
        addr: Default::default(),
        // Nothing is placed on it.
        labels: Default::default(),
        max_running: 0,
        ..world.machine_info.clone()
    };
    let upsert = shoal_protocol::Command::UpsertMachine {
        info: Box::new(info),
        at_ms: shoal_daemon::node::now_ms(),
    };
    world.write(upsert).await;
    world.wait_seen_by_both(&format!("/v1/machines/{id}")).await;
    id
}

fn shows_job(world: &World, body: &Value) -> bool {
    lists(&body["jobs"], "id", &json!(world.job))
}

fn shows_job_event(world: &World, body: &Value) -> bool {
    let job = world.job.to_string();
    body.as_array().is_some_and(|events| {
        events
            .iter()
            .any(|e| e["topic"] == "job" && e["subject"].as_str() == Some(job.as_str()))
    })
}

fn shows_job_cost(world: &World, body: &Value) -> bool {
    lists(&body["rows"], "key", &json!(world.job.to_string()))
}

fn shows_owner_budget(_: &World, body: &Value) -> bool {
    lists(&body["budgets"], "org", &json!(super::world::OWNER_ORG))
}

fn shows_template(world: &World, body: &Value) -> bool {
    lists(&body["templates"], "name", &json!(world.template))
}

fn shows_session(world: &World, body: &Value) -> bool {
    lists(&body["sessions"], "id", &json!(world.session))
}
