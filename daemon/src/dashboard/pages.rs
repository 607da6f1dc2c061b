//! The fleet page, and what every page shares (its frame, rendering, job rows), rendered
//! from what the API handlers answer (the same functions, queries and types as
//! `/v1/machines` and `/v1/fleet/summary`).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use shoal_protocol::MachineId;
use shoal_protocol::api::{MachineSort, MachineView};
use shoal_protocol::keys::Scope;
use shoal_protocol::params::ReadParams;

use super::assets::URLS;
use super::gate::Session;
use super::views::{COUNTED, Card, Summary, status_class};
use crate::api::{ApiQuery, fleet, machines};
use crate::node::Node;

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

/// An API answer the page could not be made from (no such job, session or machine), with
/// the API's status and message.
pub fn api_failure(failure: crate::api::Failure) -> Response {
    let status =
        StatusCode::from_u16(failure.0.code.http_status()).unwrap_or(StatusCode::NOT_FOUND);
    (status, failure.0.message).into_response()
}

/// The `state` filter of a list page's query, when one is set.
pub fn state_filter(pairs: &[(String, String)]) -> Option<String> {
    pairs
        .iter()
        .find(|(name, value)| name == "state" && !value.is_empty())
        .map(|(_, value)| value.clone())
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
    pub fn of(job: &shoal_protocol::JobView, name_of: &impl Fn(MachineId) -> String) -> JobRow {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_page_query_is_the_apis_query_plus_text_and_layout() {
        let (query, api) = FleetQuery::split(pairs(&[
            ("sort", "cpu"),
            ("order", "desc"),
            ("status", ""),
            ("label", "tier=web"),
            ("label", "room=attic"),
            ("q", " node "),
            ("view", "rows"),
        ]));
        assert_eq!(
            api,
            pairs(&[
                ("sort", "cpu"),
                ("order", "desc"),
                ("label", "tier=web"),
                ("label", "room=attic"),
            ]),
            "empty fields, free text and the layout stay out of the API's query"
        );
        assert_eq!((query.text.as_str(), query.view.as_str()), ("node", "rows"));
        // Without a sort, by hostname.
        let (query, api) = FleetQuery::split(Vec::new());
        assert_eq!(query.sort, "hostname");
        assert_eq!(api, pairs(&[("sort", "hostname")]));
        // Unknown parameters go to the API, which names them in its 400.
        let (_, api) = FleetQuery::split(pairs(&[("bogus", "1"), ("sort", "name")]));
        assert_eq!(api, pairs(&[("bogus", "1"), ("sort", "name")]));
    }
}
