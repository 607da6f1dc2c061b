//! Work pages: the jobs list with its state filter and the run form, a job's attempts and
//! live output, and connecting a machine (a registration token and the join command).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::{Extension, Json};
use shoal_protocol::JobState;
use shoal_protocol::params::{JobListParams, JobOrder, ReadParams};

use super::gate::Session;
use super::pages::{Chrome, JobRow, api_failure, html, namer, state_filter};
use crate::api::{ApiQuery, jobs, machines};
use crate::node::Node;

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    chrome: Chrome,
    jobs: Vec<JobRow>,
    state: String,
    states: Vec<&'static str>,
    machines: Vec<(String, String)>,
    error: Option<String>,
}

/// `GET /jobs[?state=S]`: the newest 100 jobs of the caller's org.
pub async fn jobs(
    State(node): State<Arc<Node>>,
    Extension(session): Extension<Session>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let state = state_filter(&pairs);
    let params = JobListParams {
        state: state.clone(),
        order: JobOrder::Newest,
        limit: Some(100),
        ..Default::default()
    };
    let all = machines::views(&node);
    let name_of = namer(&all);
    let listed = jobs::list(
        State(node.clone()),
        Extension(session.caller.clone()),
        ApiQuery(params),
    )
    .await;
    let (rows, error) = match listed {
        Ok(Json(list)) => (
            list.jobs.iter().map(|j| JobRow::of(j, &name_of)).collect(),
            None,
        ),
        Err(failure) => (Vec::new(), Some(failure.0.message)),
    };
    html(JobsPage {
        chrome: Chrome::of(&session),
        jobs: rows,
        state: state.unwrap_or_default(),
        states: JobState::ALL.into_iter().map(JobState::as_str).collect(),
        machines: all
            .iter()
            .map(|m| (m.id.to_string(), m.name.clone()))
            .collect(),
        error,
    })
}

/// A job as its page shows it.
struct JobView {
    id: u64,
    state: String,
    command: String,
    image: String,
    error: Option<String>,
}

/// One attempt as its page shows it.
struct AttemptRow {
    number: u32,
    machine_id: String,
    machine: String,
    state: String,
    exit: String,
    error: String,
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    chrome: Chrome,
    job: JobView,
    attempts: Vec<AttemptRow>,
}

/// `GET /jobs/{id}`: its attempts; the script follows its output.
pub async fn job(
    State(node): State<Arc<Node>>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let shown = jobs::show(
        State(node.clone()),
        Extension(session.caller.clone()),
        Path(id),
        ApiQuery(ReadParams::default()),
    )
    .await;
    let job = match shown {
        Ok(Json(job)) => job,
        Err(failure) => return api_failure(failure),
    };
    let all = machines::views(&node);
    let name_of = namer(&all);
    let attempts = job
        .attempts
        .iter()
        .map(|a| AttemptRow {
            number: a.number,
            machine_id: a.machine.to_string(),
            machine: name_of(a.machine),
            state: match (a.started_at_ms, a.finished_at_ms) {
                (_, Some(_)) => "finished",
                (Some(_), None) => "running",
                (None, None) => "dispatched",
            }
            .to_string(),
            exit: a.exit_code.map_or(String::new(), |c| c.to_string()),
            error: a.error.clone().unwrap_or_default(),
        })
        .collect();
    html(JobPage {
        chrome: Chrome::of(&session),
        job: JobView {
            id: job.id.0,
            state: job.state.as_str().to_string(),
            command: job.spec.command.join(" "),
            image: job.spec.image.clone().unwrap_or_default(),
            error: job.error.clone(),
        },
        attempts,
    })
}

#[derive(Template)]
#[template(path = "connect.html")]
struct ConnectPage {
    chrome: Chrome,
    peer: String,
}

/// `GET /connect`: the form that makes a registration token (admin keys).
pub async fn connect(
    State(node): State<Arc<Node>>,
    Extension(session): Extension<Session>,
) -> Response {
    let peer = machines::views(&node)
        .into_iter()
        .find(|m| m.id == node.id)
        .map_or_else(String::new, |m| m.addr.p2p_addr);
    html(ConnectPage {
        chrome: Chrome::of(&session),
        peer,
    })
}
