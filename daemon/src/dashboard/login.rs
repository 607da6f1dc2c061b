//! Logging in and out: the key a user pastes is checked exactly as the API checks a key,
//! then kept sealed in the session cookie (see `session.rs`).

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::assets::URLS;
use super::gate::{from_own_origin, keys, session_cookie};
use super::session::{SESSION_MS, clear_cookie, set_cookie};
use crate::node::{Node, now_ms};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    css: &'static str,
    message: Option<String>,
}

fn render(status: StatusCode, message: Option<String>) -> Response {
    let page = LoginPage {
        css: &URLS.css,
        message,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => super::pages::render_failed(err),
    }
}

/// `GET /login[?ended=1]`.
pub async fn page(Query(query): Query<Vec<(String, String)>>) -> Response {
    let ended = query.iter().any(|(k, _)| k == "ended");
    let message = ended.then(|| {
        "Your session ended (logged out, expired or the key was revoked): log in again.".to_string()
    });
    render(StatusCode::OK, message)
}

fn secure(node: &Node) -> bool {
    node.config.api_tls.is_https()
}

/// `POST /login` with the form field `key`: a session cookie and the fleet page, or the
/// login page again saying why not.
pub async fn login(
    State(node): State<Arc<Node>>,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if !from_own_origin(&uri, &headers) {
        return render(
            StatusCode::FORBIDDEN,
            Some("A login from another site is refused.".into()),
        );
    }
    let key = form
        .iter()
        .find(|(name, _)| name == "key")
        .map(|(_, value)| value.trim().to_string())
        .unwrap_or_default();
    if key.is_empty() {
        return render(
            StatusCode::BAD_REQUEST,
            Some("Paste an API key (shoal_…) to log in.".into()),
        );
    }
    match crate::api::caller_of(&node, &key).await {
        Ok(caller) => {
            tracing::info!(key_id = %caller.key_id, "dashboard login");
            let cookie = keys(&node).seal(&key, now_ms() + SESSION_MS);
            (
                [(header::SET_COOKIE, set_cookie(&cookie, secure(&node)))],
                Redirect::to("/"),
            )
                .into_response()
        }
        Err(failure) => render(
            StatusCode::UNAUTHORIZED,
            Some(format!(
                "That key does not open this fleet: {}",
                failure.0.message
            )),
        ),
    }
}

/// `POST /logout` with the page's CSRF token: clears the cookie.
pub async fn logout(
    State(node): State<Arc<Node>>,
    uri: Uri,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(cookie) = session_cookie(&headers) {
        let token = form
            .iter()
            .find(|(name, _)| name == "csrf")
            .map_or("", |(_, value)| value.as_str());
        if !from_own_origin(&uri, &headers) || !keys(&node).csrf_matches(cookie, token) {
            return (
                StatusCode::FORBIDDEN,
                "logging out needs the page's CSRF token: reload the page and try again",
            )
                .into_response();
        }
    }
    (
        [(header::SET_COOKIE, clear_cookie(secure(&node)))],
        Redirect::to("/login?ended=1"),
    )
        .into_response()
}
