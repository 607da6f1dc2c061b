//! The fleet page and a machine's page, rendered from what the API handlers answer (the
//! same functions, queries and types as `/v1/machines`, `/v1/fleet/summary`,
//! `/v1/machines/{id}/history`, `/v1/jobs` and `/v1/audit`).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use shoal_protocol::api::{MachineSort, MachineView};
use shoal_protocol::keys::Scope;
use shoal_protocol::params::{AuditParams, JobListParams, JobOrder, ReadParams};
use shoal_protocol::{Check, MachineId};

use super::assets::URLS;
use super::chart::{self, Line};
use super::gate::Session;
use super::views::{COUNTED, Card, Summary, status_class};
use crate::api::{ApiQuery, audit, fleet, jobs, machines, policies, sessions};
use crate::node::{Node, now_ms};

/// What every page's frame shows: the assets, the CSRF token, who is logged in and what
/// the key may do (a read key gets no action buttons; the API refuses them anyway).
pub struct Chrome {
    pub css: &'static str,
    pub js: &'static str,
    pub csrf: String,
    pub key_id: String,
    pub scope: String,
    pub operate: bool,
    pub admin: bool,
}

impl Chrome {
    pub fn of(session: &Session) -> Chrome {
        Chrome {
            css: &URLS.css,
            js: &URLS.js,
            csrf: session.csrf.clone(),
            key_id: session.caller.key_id.clone(),
            scope: session.caller.scope.to_string(),
            operate: session.caller.scope >= Scope::Operate,
            admin: session.caller.scope >= Scope::Admin,
        }
    }
}

/// A template as an HTML answer.
pub fn html(page: impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(err) => render_failed(err),
    }
}

pub fn render_failed(err: askama::Error) -> Response {
    tracing::error!(%err, "dashboard template failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "the page failed to render",
    )
        .into_response()
}

/// The fleet page's query, as the form shows it.
#[derive(Default)]
pub struct FleetQuery {
    pub sort: String,
    pub order: String,
    pub status: String,
    pub provider: String,
    pub os: String,
    pub label: String,
    pub text: String,
    /// `rows` for one line per machine; cards otherwise.
    pub view: String,
}

impl FleetQuery {
    /// Splits the page's query: free text and the layout stay here, the rest goes to `/v1/machines` as
    /// it is (empty fields, which a form sends, are left out). Sorted by hostname unless
    /// asked otherwise.
    fn split(pairs: Vec<(String, String)>) -> (FleetQuery, Vec<(String, String)>) {
        let mut query = FleetQuery::default();
        let mut api = Vec::new();
        for (name, value) in pairs {
            let value = value.trim().to_string();
            if value.is_empty() {
                continue;
            }
            match name.as_str() {
                "q" => query.text = value,
                "view" => query.view = value,
                _ => {
                    let field = match name.as_str() {
                        "sort" => Some(&mut query.sort),
                        "order" => Some(&mut query.order),
                        "status" => Some(&mut query.status),
                        "provider" => Some(&mut query.provider),
                        "os" => Some(&mut query.os),
                        "label" => Some(&mut query.label),
                        _ => None,
                    };
                    if let Some(field) = field {
                        *field = value.clone();
                    }
                    api.push((name, value));
                }
            }
        }
        if query.sort.is_empty() {
            query.sort = "hostname".into();
            api.push(("sort".into(), "hostname".into()));
        }
        (query, api)
    }
}

#[derive(Template)]
#[template(path = "fleet.html")]
struct FleetPage {
    chrome: Chrome,
    summary: Summary,
    cards: Vec<Card>,
    query: FleetQuery,
    error: Option<String>,
    sorts: Vec<(&'static str, &'static str)>,
    statuses: Vec<String>,
}

/// The leader's (or any machine's) name, from the machines listed.
pub fn namer(all: &[MachineView]) -> impl Fn(MachineId) -> String + '_ {
    move |id| {
        all.iter()
            .find(|m| m.id == id)
            .map_or_else(|| id.to_string(), |m| m.name.clone())
    }
}

/// `GET /?sort=&order=&status=&provider=&os=&label=&q=`: the summary bar and the grid.
pub async fn fleet(
    State(node): State<Arc<Node>>,
    Extension(session): Extension<Session>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let (query, api_pairs) = FleetQuery::split(pairs);
    let listed = machines::list(State(node.clone()), ApiQuery(api_pairs)).await;
    let (machines, error) = match listed {
        Ok(Json(list)) => (list.machines, None),
        Err(failure) => (Vec::new(), Some(failure.0.message)),
    };
    let summary = match fleet::summary(
        State(node.clone()),
        Extension(session.caller.clone()),
        ApiQuery(ReadParams::default()),
    )
    .await
    {
        Ok(Json(summary)) => summary,
        Err(failure) => return failure_page(failure.0.message),
    };
    let all = machines::views(&node);
    let cards = machines
        .iter()
        .map(Card::of)
        .filter(|card| query.text.is_empty() || card.matches_text(&query.text))
        .collect();
    let sorts = [
        MachineSort::Hostname,
        MachineSort::Status,
        MachineSort::Uptime,
        MachineSort::Cpu,
        MachineSort::Memory,
        MachineSort::LastHeartbeat,
    ]
    .into_iter()
    .map(|s| (s.as_str(), sort_label(s)))
    .collect();
    html(FleetPage {
        chrome: Chrome::of(&session),
        summary: Summary::of(&summary, namer(&all)),
        cards,
        query,
        error,
        sorts,
        statuses: COUNTED.into_iter().map(status_class).collect(),
    })
}

fn sort_label(sort: MachineSort) -> &'static str {
    match sort {
        MachineSort::Hostname | MachineSort::Name => "hostname",
        MachineSort::Status => "status",
        MachineSort::Uptime => "uptime",
        MachineSort::Cpu => "CPU",
        MachineSort::Memory => "memory",
        MachineSort::LastHeartbeat => "last heartbeat",
    }
}

/// A page that only says what went wrong.
pub fn failure_page(message: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the dashboard cannot show this page: {message}"),
    )
        .into_response()
}

/// A job in a table.
pub struct JobRow {
    pub id: u64,
    pub state: String,
    pub command: String,
    pub machine: String,
    pub attempts: usize,
}

impl JobRow {
    pub fn of(job: &shoal_protocol::JobRecord, name_of: &impl Fn(MachineId) -> String) -> JobRow {
        JobRow {
            id: job.id.0,
            state: job.state.as_str().to_string(),
            command: job.spec.command.join(" "),
            machine: job
                .attempts
                .last()
                .map_or(String::new(), |a| name_of(a.machine)),
            attempts: job.attempts.len(),
        }
    }
}

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
    fn of(policy: &shoal_protocol::policies::Policy) -> PolicyRow {
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
pub async fn machine(
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
        Err(failure) => {
            let status =
                StatusCode::from_u16(failure.0.code.http_status()).unwrap_or(StatusCode::NOT_FOUND);
            return (status, failure.0.message).into_response();
        }
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
        .filter(|p| p.spec.selects(&machine.labels))
        .map(PolicyRow::of)
        .collect();
    let samples_count = samples.len();
    html(MachinePage {
        chrome: Chrome::of(&session),
        card: Card::of(&machine),
        version: machine.version.clone(),
        lines: chart::lines(&samples),
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
