//! The API key check in front of every `/v1` route: `Authorization: Bearer KEY` or
//! `X-Shoal-Key: KEY` (else the dashboard's session cookie, see `crate::dashboard::gate`),
//! checked against this node's replica (a revocation counts as soon as the node applies
//! it), and the scope the route needs.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use shoal_protocol::keys::{Scope, parse_key};
use shoal_protocol::{ApiError, ErrorCode};

use super::Failure;
use crate::dashboard;
use crate::keys::{Caller, authenticate};
use crate::node::Node;

/// The route running work posts its costs to, with a job token instead of a key.
pub const COSTS_ROUTE: &str = "/v1/costs";

/// The scope a route needs: reads need `read`, but keys, tokens, fleet snapshots (which
/// hold their hashes), registry credentials and the audit log need `admin`. What acts on
/// the whole fleet or on machines (the kill switch, budgets, policies, registry
/// credentials, fleet settings, machine labels, which set costs and what policies select,
/// drains and batches, removal and approval) needs `admin`; every other change, and a
/// shell in a session (attach), needs `operate`.
pub fn required_scope(method: &Method, route: &str) -> Scope {
    let credentials = route.starts_with("/v1/keys")
        || route.starts_with("/v1/tokens")
        || route.starts_with("/v1/snapshot");
    let admin_route = credentials
        || route == "/v1/killswitch"
        || route.starts_with("/v1/budgets")
        || route.starts_with("/v1/policies")
        || route.starts_with("/v1/registries")
        || route == "/v1/fleet/settings"
        || route == "/v1/fleet/rotate-key"
        || (*method == Method::DELETE && route == "/v1/machines/{id}")
        || route == "/v1/machines/{id}/approve"
        || route == "/v1/machines/{id}/labels"
        || route == "/v1/drain"
        || route == "/v1/undrain"
        || route.starts_with("/v1/batch");
    let admin_read = credentials || route == "/v1/audit" || route == "/v1/registries";
    match *method {
        Method::GET | Method::HEAD if admin_read => Scope::Admin,
        // HEAD reaches the GET handler too: it needs what the shell needs.
        Method::GET | Method::HEAD if route == "/v1/sessions/{id}/attach" => Scope::Operate,
        Method::GET | Method::HEAD => Scope::Read,
        _ if admin_route => Scope::Admin,
        _ => Scope::Operate,
    }
}

/// The key (or job token) the request carries.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        return value.to_str().ok()?.strip_prefix("Bearer ").map(str::trim);
    }
    headers.get("x-shoal-key")?.to_str().ok().map(str::trim)
}

/// Whether `key` is well formed but its id is not in this replica.
fn unknown_here(node: &Node, key: &str) -> bool {
    parse_key(key).is_ok_and(|(id, _)| node.fleet.read(|state| !state.api_keys.contains_key(id)))
}

/// The caller whose key this is, checked against this node's replica.
pub async fn caller_of(node: &Node, key: &str) -> Result<Caller, Failure> {
    match node.fleet.read(|state| authenticate(state, key)) {
        Ok(caller) => Ok(caller),
        // A key made a moment ago through another node may not have reached this replica:
        // read through the leader once before calling it unknown.
        Err(_) if unknown_here(node, key) => {
            let _ = node.read_barrier().await;
            Ok(node.fleet.read(|state| authenticate(state, key))?)
        }
        Err(err) => Err(Failure(err)),
    }
}

/// Lets the request through with its [`crate::keys::Caller`] in the extensions, or answers
/// 401 (no key, or one the fleet does not accept) or 403 (not the scope the route needs).
pub async fn require_key(
    State(node): State<Arc<Node>>,
    mut request: Request,
    next: Next,
) -> Result<Response, Failure> {
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_string(),
        |p| p.as_str().to_string(),
    );
    // Running work reports costs with its job token, which the handler checks.
    if *request.method() == Method::POST && route == COSTS_ROUTE {
        return Ok(next.run(request).await);
    }
    // A header key wins; else the dashboard's session cookie (with its origin and CSRF
    // checks), so the page calls this same API.
    let key = match presented_key(request.headers()) {
        Some(key) => key.to_string(),
        None => {
            dashboard::gate::cookie_key(&node, request.method(), request.uri(), request.headers())?
                .ok_or_else(|| {
                    Failure(ApiError::new(
                        ErrorCode::Unauthorized,
                        "this needs an API key: send Authorization: Bearer <key> (or X-Shoal-Key)",
                    ))
                })?
        }
    };
    let caller = caller_of(&node, &key).await?;
    caller.require(required_scope(request.method(), &route))?;
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_the_scope_of_what_they_do() {
        assert_eq!(required_scope(&Method::GET, "/v1/jobs"), Scope::Read);
        assert_eq!(required_scope(&Method::POST, "/v1/jobs"), Scope::Operate);
        assert_eq!(required_scope(&Method::POST, "/v1/drain"), Scope::Admin);
        assert_eq!(
            required_scope(&Method::PUT, "/v1/machines/{id}/labels"),
            Scope::Admin
        );
        assert_eq!(
            required_scope(&Method::POST, "/v1/batch/{action}"),
            Scope::Admin
        );
        assert_eq!(
            required_scope(&Method::GET, "/v1/sessions/{id}/attach"),
            Scope::Operate
        );
        assert_eq!(
            required_scope(&Method::HEAD, "/v1/sessions/{id}/attach"),
            Scope::Operate
        );
        assert_eq!(
            required_scope(&Method::GET, "/v1/sessions/{id}/logs"),
            Scope::Read
        );
        assert_eq!(required_scope(&Method::GET, "/v1/killswitch"), Scope::Read);
        assert_eq!(required_scope(&Method::PUT, "/v1/killswitch"), Scope::Admin);
        assert_eq!(
            required_scope(&Method::GET, "/v1/fleet/settings"),
            Scope::Read
        );
        assert_eq!(
            required_scope(&Method::PUT, "/v1/fleet/settings"),
            Scope::Admin
        );
        assert_eq!(required_scope(&Method::GET, "/v1/keys"), Scope::Admin);
        assert_eq!(required_scope(&Method::GET, "/v1/audit"), Scope::Admin);
        assert_eq!(required_scope(&Method::GET, "/v1/snapshot"), Scope::Admin);
        assert_eq!(required_scope(&Method::GET, "/v1/budgets"), Scope::Read);
        assert_eq!(
            required_scope(&Method::PUT, "/v1/budgets/{org}"),
            Scope::Admin
        );
        assert_eq!(required_scope(&Method::GET, "/v1/costs"), Scope::Read);
        assert_eq!(
            required_scope(&Method::DELETE, "/v1/keys/{id}"),
            Scope::Admin
        );
        assert_eq!(
            required_scope(&Method::POST, "/v1/machines/{id}/approve"),
            Scope::Admin
        );
        assert_eq!(
            required_scope(&Method::POST, "/v1/fleet/rotate-key"),
            Scope::Admin
        );
    }
}
