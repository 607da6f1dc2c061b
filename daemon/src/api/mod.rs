//! The admin API every node serves: health, machines and cluster status as JSON.
//!
//! Reads come from the local replica (add `?consistent=true` for a linearizable read);
//! writes go through [`Node::write`], which forwards them to the leader. Every `/v1` route
//! needs an API key (`auth.rs`); `/health` and `/metrics` do not.

mod admission;
pub(crate) mod audit;
mod auth;
mod batch;
mod body;
pub(crate) mod costs;
mod error;
pub(crate) mod events;
pub(crate) mod fleet;
mod gossip_keys;
mod history;
pub(crate) mod jobs;
mod keys;
mod logs;
mod machine_query;
pub(crate) mod machines;
mod metrics;
mod openapi;
pub(crate) mod operate;
pub(crate) mod policies;
mod redact;
mod registries;
pub(crate) mod sessions;
mod settings;
pub mod snapshot;
mod templates;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use shoal_protocol::params::ReadParams;
use tokio::net::TcpListener;
use tokio::sync::watch;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::node::Node;

pub use auth::caller_of;
pub use error::{ApiJson, ApiQuery, ApiResult, Failure, accepted, parsed};

/// Waits for a read barrier when the read asked to be consistent.
async fn barrier_if(node: &Node, params: &ReadParams) -> Result<(), Failure> {
    if params.consistent {
        node.read_barrier().await?;
    }
    Ok(())
}

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Every route, in one place: this list serves both the router and `/v1/openapi.json`.
pub fn router(node: Arc<Node>) -> Router {
    // Every /v1 route needs an API key with the scope auth::required_scope names.
    let v1 = OpenApiRouter::new()
        .routes(routes!(machines::list))
        .routes(routes!(machines::show, machines::remove))
        .routes(routes!(machines::label))
        .routes(routes!(admission::approve))
        .routes(routes!(history::history))
        .routes(routes!(machines::cluster))
        .routes(routes!(fleet::summary))
        .routes(routes!(settings::show, settings::put))
        .routes(routes!(gossip_keys::rotate))
        .routes(routes!(events::events))
        .routes(routes!(jobs::submit, jobs::list))
        .routes(routes!(jobs::submit_batch))
        .routes(routes!(jobs::show))
        .routes(routes!(jobs::cancel))
        .routes(routes!(logs::logs))
        .routes(routes!(operate::drain))
        .routes(routes!(operate::undrain))
        .routes(routes!(operate::kill_switch, operate::set_kill_switch))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke))
        .routes(routes!(audit::list))
        .routes(routes!(tokens::create, tokens::list))
        .routes(routes!(tokens::revoke))
        .routes(routes!(costs::report, costs::list))
        .routes(routes!(costs::budgets))
        .routes(routes!(costs::set_budget, costs::remove_budget))
        .routes(routes!(policies::list))
        .routes(routes!(policies::put, policies::remove))
        .routes(routes!(registries::list))
        .routes(routes!(registries::login, registries::logout))
        .routes(routes!(templates::list))
        .routes(routes!(templates::put, templates::show))
        .routes(routes!(templates::rollback))
        .routes(routes!(sessions::create, sessions::list))
        .routes(routes!(sessions::show))
        .routes(routes!(sessions::terminate))
        .routes(routes!(sessions::exec))
        .routes(routes!(sessions::logs))
        .routes(routes!(sessions::attach))
        .routes(routes!(batch::run))
        .routes(routes!(snapshot::save))
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            auth::require_key,
        ));
    let (router, api) = OpenApiRouter::new()
        .routes(routes!(machines::health))
        .routes(routes!(metrics::serve))
        .merge(v1)
        .split_for_parts();
    let document = openapi::document(api)
        .to_json()
        .expect("the OpenAPI document serializes");
    router
        .route(
            "/v1/openapi.json",
            get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    document,
                )
            }),
        )
        .merge(crate::dashboard::router(node.clone()))
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(body::read_whole))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            error::isolate_panics,
        ))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            metrics::track,
        ))
        .with_state(node)
}

/// Serves the API on `listener` until shutdown: over TLS with `tls`, else plain HTTP.
/// WebSocket routes upgrade inside the TLS stream as any other request does.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = router(node);
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    let served = match tls {
        Some(config) => match crate::tls::TlsListener::new(listener, config) {
            Ok(listener) => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
            }
            Err(err) => Err(err),
        },
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        }
    };
    if let Err(err) = served {
        tracing::error!(%err, "admin api stopped");
    }
}
