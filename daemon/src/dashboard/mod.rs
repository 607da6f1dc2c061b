//! The web dashboard every node serves: server-rendered pages from the same API handlers
//! and types the CLI uses, one small script for the live parts, and a session cookie that
//! holds the user's API key sealed (so every `/v1` call the page makes is an ordinary API
//! call with that key, audited under it).
//!
//! ```text
//!  GET /login, POST /login ─▶ key checked as the API checks it ─▶ sealed cookie (session.rs)
//!  GET /, /machines/{id}, /jobs, /jobs/{id}, /sessions, /sessions/{id}, /costs, /connect ─▶ gate::require_session ─▶ pages
//!       the page's script ──▶ /v1/... with the cookie + x-shoal-csrf (api/auth.rs)
//!                      └───▶ /ui/live: events + machine figures over one WebSocket (live.rs)
//! ```

mod assets;
mod chart;
mod costs;
pub mod gate;
mod live;
mod login;
mod pages;
pub mod session;
mod sessions;
mod views;
mod work;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post};

use crate::node::Node;

/// What the page may load: its own assets and API, nothing inline, nothing framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes (pages, login, assets, the live socket), merged into the API's
/// router.
pub fn router(node: Arc<Node>) -> Router<Arc<Node>> {
    let pages = Router::new()
        .route("/", get(pages::fleet))
        .route("/machines/{id}", get(pages::machine))
        .route("/jobs", get(work::jobs))
        .route("/jobs/{id}", get(work::job))
        .route("/connect", get(work::connect))
        .route("/costs", get(costs::page))
        .route("/sessions", get(sessions::list))
        .route("/sessions/{id}", get(sessions::show))
        .route_layer(axum::middleware::from_fn_with_state(
            node,
            gate::require_session,
        ));
    Router::new()
        .merge(pages)
        .route("/login", get(login::page).post(login::login))
        .route("/logout", post(login::logout))
        .route("/ui/live", get(live::live))
        .route("/ui/assets/{file}", get(assets::serve))
        .layer(axum::middleware::map_response(secure_headers))
}

/// Headers every dashboard answer carries.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not no-referrer: under it a browser sends `Origin: null` with a form's POST, which
    // the origin check must refuse.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
