//! Who a dashboard request is: the key sealed in its session cookie, checked for the API
//! (origin and CSRF token, see [`cookie_key`]) and for pages (a missing or dead session
//! goes to the login page, see [`require_session`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, Uri, header};
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

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Whether the request's `Origin`, if any, is the host it was sent to: the `Host` header,
/// or over HTTP/2 (which has none) the URI's authority.
pub fn from_own_origin(uri: &Uri, headers: &HeaderMap) -> bool {
    let host = header_str(headers, header::HOST).or_else(|| uri.authority().map(|a| a.as_str()));
    same_origin(header_str(headers, header::ORIGIN), host)
}

/// The API key in the request's session cookie (`None` without one), for a request the
/// page makes to the `/v1` API: a request from another origin is refused, and so is a
/// change (anything but GET and HEAD) without the session's CSRF token.
pub fn cookie_key(
    node: &Node,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Option<String>, ApiError> {
    let Some(cookie) = session_cookie(headers) else {
        return Ok(None);
    };
    let keys = keys(node);
    let key = keys
        .open(cookie, now_ms())
        .map_err(|err| ApiError::new(ErrorCode::Unauthorized, err.to_string()))?;
    if !from_own_origin(uri, headers) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "a request with the dashboard session from another origin ({}) is refused",
                header_str(headers, header::ORIGIN).unwrap_or("none")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn the_origin_is_checked_against_the_host_or_the_http2_authority() {
        let path: Uri = "/v1/jobs".parse().unwrap();
        let h1 = headers(&[
            ("host", "127.0.0.1:7400"),
            ("origin", "https://127.0.0.1:7400"),
        ]);
        assert!(from_own_origin(&path, &h1));
        // HTTP/2 has no Host header: the authority is in the URI.
        let h2_uri: Uri = "https://127.0.0.1:7400/v1/jobs".parse().unwrap();
        let h2 = headers(&[("origin", "https://127.0.0.1:7400")]);
        assert!(from_own_origin(&h2_uri, &h2));
        assert!(!from_own_origin(&path, &h2), "no host at all");
        let evil = headers(&[
            ("host", "127.0.0.1:7400"),
            ("origin", "https://evil.example"),
        ]);
        assert!(!from_own_origin(&h2_uri, &evil));
        assert!(from_own_origin(
            &path,
            &headers(&[("host", "127.0.0.1:7400")])
        ));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let map = headers(&[("cookie", "theme=dark; shoal_session=abc")]);
        assert_eq!(session_cookie(&map), Some("abc"));
        assert_eq!(
            session_cookie(&headers(&[("cookie", "shoal_session=")])),
            None
        );
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }
}
