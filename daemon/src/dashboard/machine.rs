//! A machine's page: its card, the Resources chart (server-drawn SVG from
//! `/v1/machines/{id}/history`), Work (its jobs and sessions), Policies (those that select
//! it), Audit (admin keys) and Diagnostics, each read through the API's handlers.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::{Extension, Json};
use shoal_protocol::Check;
use shoal_protocol::keys::Scope;
use shoal_protocol::params::{AuditParams, JobListParams, JobOrder, ReadParams};
use shoal_protocol::policies::{PolicyView, selects};

use super::chart::{self, Line};
use super::gate::Session;
use super::pages::{Chrome, JobRow, api_failure, html, namer};
use super::views::Card;
use crate::api::{ApiQuery, audit, jobs, machines, policies, sessions};
use crate::node::{Node, now_ms};

/// An audit entry as the page lists it.
pub struct AuditRow {
    pub at: String,
    pub action: String,
    pub actor: String,
    pub detail: String,
}

/// How long ago `then_ms` was, in a few words.
pub fn ago(now_ms: u64, then_ms: u64) -> String {
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..120 => format!("{s} s ago"),
        120..7200 => format!("{} min ago", s / 60),
        7200..172_800 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// A policy that selects the machine, and what it sets.
pub struct PolicyRow {
    pub name: String,
    pub sets: String,
}

impl PolicyRow {
    fn of(policy: &PolicyView) -> PolicyRow {
        let spec = &policy.spec;
        let mut sets = Vec::new();
        if !spec.allowed_images.is_empty() {
            sets.push(format!("images {}", spec.allowed_images.join(", ")));
        }
        if let Some(cpus) = spec.max_cpus {
            sets.push(format!("at most {cpus} CPUs"));
        }
        if let Some(mb) = spec.max_memory_mb {
            sets.push(format!("at most {mb} MB of memory"));
        }
        if let Some(s) = spec.max_duration_seconds {
            sets.push(format!("at most {s} s a session"));
        }
        if let Some(mode) = &spec.network_mode {
            sets.push(format!("network {mode}"));
        }
        if !spec.cap_add.is_empty() {
            sets.push(format!("adds {}", spec.cap_add.join(", ")));
        }
        if !spec.cap_drop.is_empty() {
            sets.push(format!("drops {}", spec.cap_drop.join(", ")));
        }
        if let Some(pids) = spec.pids_limit {
            sets.push(format!("at most {pids} processes"));
        }
        if let Some(user) = &spec.user {
            sets.push(format!("runs as {user}"));
        }
        PolicyRow {
            name: policy.name.clone(),
            sets: if sets.is_empty() {
                "nothing".into()
            } else {
                sets.join("; ")
            },
        }
    }
}

#[derive(Template)]
#[template(path = "machine.html")]
struct MachinePage {
    chrome: Chrome,
    card: Card,
    version: String,
    lines: Vec<Line>,
    samples: usize,
    span: String,
    history_error: Option<String>,
    width: f64,
    height: f64,
    jobs: Vec<JobRow>,
    audit: Vec<AuditRow>,
    checks: Vec<Check>,
    policies: Vec<PolicyRow>,
    /// The machine's sessions: id, state, template.
    sessions: Vec<(u64, String, String)>,
}

/// `GET /machines/{id}`: Resources, Work, Policies, Audit (admin keys) and Diagnostics.
pub async fn page(
    State(node): State<Arc<Node>>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let shown = machines::show(
        State(node.clone()),
        Path(id.clone()),
        ApiQuery(ReadParams::default()),
    )
    .await;
    let machine = match shown {
        Ok(Json(machine)) => machine,
        Err(failure) => return api_failure(failure),
    };
    let all = machines::views(&node);
    let name_of = namer(&all);
    let (samples, history_error) = match crate::history::read(&node, machine.id, None).await {
        Ok(history) => (history.samples, None),
        Err(err) => (Vec::new(), Some(err.message)),
    };
    let span = match (samples.first(), samples.last()) {
        (Some(first), Some(last)) => ago(last.at_ms, first.at_ms).replace(" ago", ""),
        _ => "0 s".to_string(),
    };
    let job_params = JobListParams {
        machine: Some(machine.id.to_string()),
        order: JobOrder::Newest,
        limit: Some(20),
        ..Default::default()
    };
    let jobs = match jobs::list(
        State(node.clone()),
        Extension(session.caller.clone()),
        ApiQuery(job_params),
    )
    .await
    {
        Ok(Json(list)) => list.jobs.iter().map(|j| JobRow::of(j, &name_of)).collect(),
        Err(_) => Vec::new(),
    };
    let audit = if session.caller.scope >= Scope::Admin {
        let params = AuditParams {
            machine: Some(machine.id.to_string()),
            limit: Some(50),
            ..Default::default()
        };
        let now = now_ms();
        match audit::list(State(node.clone()), ApiQuery(params)).await {
            Ok(Json(list)) => list
                .entries
                .into_iter()
                .map(|e| AuditRow {
                    at: ago(now, e.at_ms),
                    action: e.action,
                    actor: e.actor,
                    detail: format!("{} {}", e.target, e.outcome).trim().to_string(),
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    } else {
        Vec::new()
    };
    let session_params = shoal_protocol::params::SessionParams {
        machine: Some(machine.id.to_string()),
        ..Default::default()
    };
    let sessions = match sessions::list(
        State(node.clone()),
        Extension(session.caller.clone()),
        ApiQuery(session_params),
    )
    .await
    {
        Ok(Json(list)) => list
            .sessions
            .iter()
            .map(|s| (s.id.0, s.state.as_str().to_string(), s.template.clone()))
            .collect(),
        Err(_) => Vec::new(),
    };
    let Json(policies) = policies::list(State(node.clone())).await;
    let policies = policies
        .policies
        .iter()
        .filter(|p| selects(&p.spec.selector, &machine.labels))
        .map(PolicyRow::of)
        .collect();
    let samples_count = samples.len();
    html(MachinePage {
        chrome: Chrome::of(&session),
        card: Card::of(&machine),
        version: machine.version.clone(),
        lines: chart::lines(&samples, machine.resources.disk_total_bytes),
        samples: samples_count,
        span,
        history_error,
        width: chart::WIDTH,
        height: chart::HEIGHT,
        jobs,
        audit,
        checks: machine.diagnosis.clone(),
        policies,
        sessions,
    })
}
