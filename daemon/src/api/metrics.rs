//! `GET /metrics` (Prometheus text format, no auth) and the middleware that counts every
//! API request by its route template; the metrics themselves live in [`crate::metrics`].

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::metrics::{CONTENT_TYPE, Scrape, UNMATCHED, method_label};
use crate::node::Node;

/// `GET /metrics`: this node's view, read now.
#[utoipa::path(get, path = "/metrics", tag = "fleet",
    responses((status = OK, content_type = "text/plain; version=0.0.4; charset=utf-8", body = String, description = "Prometheus text format")))]
pub async fn serve(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let text = node.metrics.encode(&Scrape::read(&node));
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

/// Counts and times each request under the route it matched (`/v1/jobs/{id}`, not the
/// raw path), its method and the status it was answered with.
pub async fn track(State(node): State<Arc<Node>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    node.metrics
        .request(route, method, response.status().as_u16(), started.elapsed());
    response
}
