//! Sessions: the list with its state filter, and a session's page that follows its output
//! and runs `exec` commands (the script calls `/v1/sessions/{id}/logs` and `/exec`).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::{Extension, Json};
use shoal_protocol::params::SessionParams;
use shoal_protocol::sessions::{SessionState, SessionView};

use super::gate::Session;
use super::pages::{Chrome, api_failure, html, namer, state_filter};
use crate::api::{ApiQuery, machines, sessions};
use crate::node::Node;

const STATES: [SessionState; 5] = [
    SessionState::Pending,
    SessionState::Starting,
    SessionState::Running,
    SessionState::Terminated,
    SessionState::Failed,
];

/// A session as a row or a page shows it.
pub struct SessionRow {
    pub id: u64,
    pub template: String,
    pub image: String,
    pub state: String,
    pub reason: String,
    pub machine_id: String,
    pub machine: String,
}

impl SessionRow {
    fn of(view: &SessionView, name_of: &impl Fn(shoal_protocol::MachineId) -> String) -> Self {
        SessionRow {
            id: view.id.0,
            template: view.template.clone(),
            image: view.image.clone(),
            state: view.state.as_str().to_string(),
            reason: view.reason.clone().unwrap_or_default(),
            machine_id: view.machine.map_or(String::new(), |m| m.to_string()),
            machine: view.machine.map_or(String::new(), name_of),
        }
    }
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage {
    chrome: Chrome,
    sessions: Vec<SessionRow>,
    state: String,
    states: Vec<&'static str>,
    error: Option<String>,
}

/// `GET /sessions[?state=S]`.
pub async fn list(
    State(node): State<Arc<Node>>,
    Extension(session): Extension<Session>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let state = state_filter(&pairs);
    let params = SessionParams {
        state: state.clone(),
        ..Default::default()
    };
    let all = machines::views(&node);
    let name_of = namer(&all);
    let listed = sessions::list(
        State(node.clone()),
        Extension(session.caller.clone()),
        ApiQuery(params),
    )
    .await;
    let (rows, error) = match listed {
        Ok(Json(list)) => (
            list.sessions
                .iter()
                .map(|s| SessionRow::of(s, &name_of))
                .collect(),
            None,
        ),
        Err(failure) => (Vec::new(), Some(failure.0.message)),
    };
    html(SessionsPage {
        chrome: Chrome::of(&session),
        sessions: rows,
        state: state.unwrap_or_default(),
        states: STATES.into_iter().map(SessionState::as_str).collect(),
        error,
    })
}

#[derive(Template)]
#[template(path = "session.html")]
struct SessionPage {
    chrome: Chrome,
    session: SessionRow,
}

/// `GET /sessions/{id}`.
pub async fn show(
    State(node): State<Arc<Node>>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let shown = sessions::show(
        State(node.clone()),
        Extension(session.caller.clone()),
        Path(id),
    )
    .await;
    let view = match shown {
        Ok(Json(view)) => view,
        Err(failure) => return api_failure(failure),
    };
    let all = machines::views(&node);
    html(SessionPage {
        chrome: Chrome::of(&session),
        session: SessionRow::of(&view, &namer(&all)),
    })
}
