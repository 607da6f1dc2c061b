//! What the walk needs standing on the cluster, all of org `default` (the org of the test
//! cluster's admin key): a finished job, a running session on the leader (so a call through
//! the follower relays) made from a template, a queued job and session nothing can take,
//! a budget, and the follower's machine as the target of fleet-wide changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use shoal_daemon::node::Node;
use shoal_daemon::testsuite::{Cluster, TEST_KEY};

use super::calls::{Answer, send};
use crate::support::IMAGE;

/// The org of the things the walk reaches for.
pub const OWNER_ORG: &str = "default";
/// A label no machine has: work that asks for it stays queued.
pub const NOWHERE: (&str, &str) = ("authz-nowhere", "true");

pub struct World {
    /// The API base of the leader and of the other node.
    pub leader: String,
    pub follower: String,
    pub leader_id: String,
    pub follower_id: String,
    /// A finished job, with output.
    pub job: u64,
    /// A queued job and a queued session, the targets of refused cancels and terminates.
    pub queued_job: u64,
    pub queued_session: u64,
    /// A running session on the leader, and its template.
    pub session: u64,
    pub template: String,
    /// A second template, the one the walk puts new versions of and rolls back.
    pub probe_template: String,
    /// A machine's info to copy for made-up machines (a recent version and level).
    pub machine_info: shoal_protocol::MachineInfo,
    /// The leader's node, for a record no API makes (a machine no node stands behind).
    leader_node: Arc<Node>,
    counter: AtomicU64,
}

impl World {
    pub async fn set_up(cluster: &Cluster) -> World {
        let leader = cluster
            .wait_leader(Duration::from_secs(10))
            .await
            .expect("a leader");
        let follower = 1 - leader;
        let mut world = World {
            leader: cluster.api(leader),
            follower: cluster.api(follower),
            leader_id: cluster.node(leader).id.to_string(),
            follower_id: cluster.node(follower).id.to_string(),
            job: 0,
            queued_job: 0,
            queued_session: 0,
            session: 0,
            template: "authz-shell".to_string(),
            probe_template: "authz-probe".to_string(),
            machine_info: cluster.node(leader).info.borrow().clone(),
            leader_node: cluster.node(leader).clone(),
            counter: AtomicU64::new(0),
        };
        world.job = world.finished_job().await;
        world.queued_job = world.queued_job().await;
        // Pull `never`: the test image is built here, and `batch update` pulls what may be.
        let shell = json!({"image": IMAGE, "pull": "never",
            "command": ["sh", "-c", "echo ready; trap 'exit 0' TERM; sleep 3600 & wait"]});
        world
            .admin(
                Method::PUT,
                &format!("/v1/templates/{}", world.template),
                Some(shell),
            )
            .await;
        world.put_probe_template().await;
        world.session = world.running_session().await;
        world.queued_session = world.queued_session().await;
        let budget = json!({"daily_usd": 1_000_000});
        world
            .admin(
                Method::PUT,
                &format!("/v1/budgets/{OWNER_ORG}"),
                Some(budget),
            )
            .await;
        let settings = json!({"job_retention_seconds": 86_400});
        world
            .admin(Method::PUT, "/v1/fleet/settings", Some(settings))
            .await;
        let label = json!({"set": {"authz-probe": "0"}});
        let path = format!("/v1/machines/{}/labels", world.follower_id);
        world.admin(Method::PUT, &path, Some(label)).await;
        world
    }

    /// A number not used before in this walk, for names.
    pub fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// `method path` as the cluster's admin (org `default`) through the leader; panics
    /// unless it succeeded.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let Answer { status, body } =
            send(&self.leader, Some(TEST_KEY), &method, path, body.as_ref()).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {body}"
        );
        body
    }

    /// Commits `command` as the leader would, past the API.
    pub async fn write(&self, command: shoal_protocol::Command) {
        let outcome = self.leader_node.write_request(command).await;
        let response = outcome.expect("the write is committed").response;
        let refused = matches!(response, shoal_protocol::Response::Rejected { .. });
        assert!(!refused, "{response:?}");
    }

    /// The body of a job that stays queued.
    pub fn queued_job_spec() -> Value {
        json!({"command": ["true"], "required_labels": {NOWHERE.0: NOWHERE.1}})
    }

    pub async fn queued_job(&self) -> u64 {
        let made = self
            .admin(Method::POST, "/v1/jobs", Some(Self::queued_job_spec()))
            .await;
        made["job"]["id"].as_u64().expect("a job id")
    }

    /// The body of a session that stays queued.
    pub fn queued_session_spec(&self) -> Value {
        json!({"template_id": self.template, "required_labels": {NOWHERE.0: NOWHERE.1}})
    }

    pub async fn queued_session(&self) -> u64 {
        let body = self.queued_session_spec();
        let made = self.admin(Method::POST, "/v1/sessions", Some(body)).await;
        made["id"].as_u64().expect("a session id")
    }

    /// A new version of the probe template; its number.
    pub async fn put_probe_template(&self) -> u64 {
        let spec = json!({"image": IMAGE, "pull": "never", "command": ["true"]});
        let path = format!("/v1/templates/{}", self.probe_template);
        let template = self.admin(Method::PUT, &path, Some(spec)).await;
        template["current"].as_u64().expect("a version")
    }

    async fn finished_job(&self) -> u64 {
        let spec = json!({"command": ["echo", "authz"]});
        let made = self.admin(Method::POST, "/v1/jobs", Some(spec)).await;
        let id = made["job"]["id"].as_u64().expect("a job id");
        self.wait_for(&format!("/v1/jobs/{id}"), "/state", "completed")
            .await;
        id
    }

    async fn running_session(&self) -> u64 {
        let body = json!({"template_id": self.template, "agent_id": self.leader_id});
        let made = self.admin(Method::POST, "/v1/sessions", Some(body)).await;
        let id = made["id"].as_u64().expect("a session id");
        self.wait_for(&format!("/v1/sessions/{id}"), "/state", "running")
            .await;
        // Its output is there once it said it is ready.
        self.wait_for(
            &format!("/v1/sessions/{id}/logs"),
            "/chunks/0/text",
            "ready\n",
        )
        .await;
        id
    }

    /// Waits until both nodes answer GET `path` (a change made past the API, which leaves
    /// no audit entry to wait for).
    pub async fn wait_seen_by_both(&self, path: &str) {
        for base in [&self.leader, &self.follower] {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while send(base, Some(TEST_KEY), &Method::GET, path, None)
                .await
                .status
                != 200
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{base} does not show {path}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    async fn wait_for(&self, path: &str, pointer: &str, want: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.admin(Method::GET, path, None).await;
            let value = now
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default();
            if value.eq_ignore_ascii_case(want) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path}{pointer} is not {want}: {now}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
