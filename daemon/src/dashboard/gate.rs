//! Who a dashboard request is: the key sealed in its session cookie, checked for the API
//! (origin and CSRF token, see [`cookie_key`]) and for pages (a missing or dead session
//! goes to the login page, see [`require_session`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use shoal_protocol::{ApiError, ErrorCode};

use super::session::{COOKIE, CSRF_HEADER, SessionKeys, cookie_value, same_origin};
use crate::keys::Caller;
use crate::node::{Node, now_ms};

/// A page's caller and the CSRF token the page embeds for its API calls.
#[derive(Clone)]
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
}

/// The session keys of `node`'s fleet.
pub fn keys(node: &Node) -> SessionKeys {
    SessionKeys::from_secret(&node.cluster_secret)
}

/// The session cookie's value, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| cookie_value(value, COOKIE))
        .filter(|value| !value.is_empty())
}

fn header_str<'a>(headers: &'a HeaderMap, name: impl header::AsHeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The API key in the request's session cookie (`None` without one), for a request the
/// page makes to the `/v1` API: a request from another origin is refused, and so is a
/// change (anything but GET and HEAD) without the session's CSRF token.
pub fn cookie_key(
    node: &Node,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Option<String>, ApiError> {
    let Some(cookie) = session_cookie(headers) else {
        return Ok(None);
    };
    let keys = keys(node);
    let key = keys
        .open(cookie, now_ms())
        .map_err(|err| ApiError::new(ErrorCode::Unauthorized, err.to_string()))?;
    let origin = header_str(headers, header::ORIGIN);
    let host = header_str(headers, header::HOST);
    if !same_origin(origin, host) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "a request with the dashboard session from another origin ({}) is refused",
                origin.unwrap_or("none")
            ),
        ));
    }
    if !matches!(*method, Method::GET | Method::HEAD) {
        let token = header_str(headers, CSRF_HEADER).unwrap_or_default();
        if !keys.csrf_matches(cookie, token) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "a change made with the dashboard session needs the page's CSRF token in \
                     the {CSRF_HEADER} header: reload the page and try again"
                ),
            ));
        }
    }
    Ok(Some(key))
}

/// Lets a page request through with its [`Session`] in the extensions, or sends the
/// browser to the login page.
pub async fn require_session(
    State(node): State<Arc<Node>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(cookie) = session_cookie(request.headers()).map(str::to_string) else {
        return Redirect::to("/login").into_response();
    };
    let keys = keys(&node);
    let Ok(key) = keys.open(&cookie, now_ms()) else {
        return Redirect::to("/login?ended=1").into_response();
    };
    match crate::api::caller_of(&node, &key).await {
        Ok(caller) => {
            request.extensions_mut().insert(Session {
                caller,
                csrf: keys.csrf_token(&cookie),
            });
            next.run(request).await
        }
        Err(_) => Redirect::to("/login?ended=1").into_response(),
    }
}
