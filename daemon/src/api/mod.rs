//! The admin API every node serves: health, machines and cluster status as JSON.
//!
//! Reads come from the local replica (add `?consistent=true` for a linearizable read);
//! writes go through [`Node::write`], which forwards them to the leader. Every `/v1` route
//! needs an API key (`auth.rs`); `/health` and `/metrics` do not.

mod audit;
mod auth;
mod error;
mod events;
mod fleet;
mod history;
mod jobs;
mod keys;
mod logs;
mod machine_query;
mod machines;
mod metrics;
mod operate;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::node::Node;

pub use error::{ApiJson, ApiQuery, ApiResult, Failure, accepted};

/// `?consistent=true` on a read: ask the leader for a linearizable read instead of
/// reading the local replica.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    #[serde(default)]
    consistent: bool,
}

/// Waits for a read barrier when the read asked to be consistent.
async fn barrier_if(node: &Node, params: &ReadParams) -> Result<(), Failure> {
    if params.consistent {
        node.read_barrier().await?;
    }
    Ok(())
}

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Every route, in one place.
pub fn router(node: Arc<Node>) -> Router {
    // Every /v1 route needs an API key with the scope auth::required_scope names.
    let v1 = Router::new()
        .route("/v1/machines", get(machines::list))
        .route(
            "/v1/machines/{id}",
            get(machines::show).delete(machines::remove),
        )
        .route("/v1/machines/{id}/labels", put(machines::label))
        .route("/v1/machines/{id}/history", get(history::history))
        .route("/v1/cluster", get(machines::cluster))
        .route("/v1/fleet/summary", get(fleet::summary))
        .route("/v1/events", get(events::events))
        .route("/v1/jobs", post(jobs::submit).get(jobs::list))
        .route("/v1/jobs/batch", post(jobs::submit_batch))
        .route("/v1/jobs/{id}", get(jobs::show))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/logs", get(logs::logs))
        .route("/v1/drain", post(operate::drain))
        .route("/v1/undrain", post(operate::undrain))
        .route(
            "/v1/killswitch",
            get(operate::kill_switch).put(operate::set_kill_switch),
        )
        .route("/v1/keys", post(keys::create).get(keys::list))
        .route("/v1/audit", get(audit::list))
        .route(
            "/v1/tokens/registration",
            post(tokens::create).get(tokens::list),
        )
        .route("/v1/tokens/registration/{id}", delete(tokens::revoke))
        .route("/v1/keys/{id}", delete(keys::revoke))
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            auth::require_key,
        ));
    Router::new()
        .route("/health", get(machines::health))
        .route("/metrics", get(metrics::serve))
        .merge(v1)
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            metrics::track,
        ))
        .with_state(node)
}

/// Serves the API on `listener` until shutdown.
pub async fn serve(node: Arc<Node>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let app = router(node);
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(%err, "admin api stopped");
    }
}
