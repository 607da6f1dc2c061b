//! `GET /v1/openapi.json`: the API described from the same list of routes that serves it
//! (`super::router`). Handlers name their own answers; what every `/v1` route shares is
//! added here once: the key it needs (with the scope [`required_scope`] decides) and the
//! errors any route can answer.

use axum::http::Method;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr, Response, ResponseBuilder, SecurityRequirement};
use utoipa::{OpenApi as _, ToSchema};

use shoal_protocol::api::{MachineSort, SortOrder};
use shoal_protocol::batch::BatchAction;
use shoal_protocol::sessions::{AttachMessage, SessionState};
use shoal_protocol::{ApiError, JobState, MachineId, MachineStatus};

use super::auth::required_scope;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Shoal admin API",
        description = "Every node serves the whole API. Reads answer from the node's replica \
                       (consistent=true reads through the leader); writes are forwarded to the \
                       leader and answered once this node has applied them."
    ),
    components(schemas(
        ApiError,
        MachineSort,
        SortOrder,
        MachineStatus,
        JobState,
        MachineId,
        SessionState,
        BatchAction,
        AttachMessage
    ))
)]
struct Base;

const BEARER: &str = "bearer";
const HEADER: &str = "x_shoal_key";
/// Running work's `SHOAL_JOB_TOKEN`, for `POST /v1/costs`.
const JOB_TOKEN: &str = "job_token";

/// The document for the routes collected in `api`.
pub fn document(mut api: OpenApi) -> OpenApi {
    let mut base = Base::openapi();
    base.paths = std::mem::take(&mut api.paths);
    if let (Some(components), Some(more)) = (base.components.as_mut(), api.components.take()) {
        components.schemas.extend(more.schemas);
    }
    let components = base.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    components.add_security_scheme(
        JOB_TOKEN,
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    components.add_security_scheme(
        HEADER,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Shoal-Key"))),
    );
    base.info.version = crate::node::VERSION.to_string();
    for (path, item) in base.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for (method, operation) in operations(item) {
            complete(path, &method, operation);
        }
    }
    base
}

fn operations(item: &mut utoipa::openapi::PathItem) -> Vec<(Method, &mut Operation)> {
    [
        (Method::GET, &mut item.get),
        (Method::PUT, &mut item.put),
        (Method::POST, &mut item.post),
        (Method::DELETE, &mut item.delete),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|op| (method, op)))
    .collect()
}

/// Adds the key a `/v1` operation needs (unless it names its own credential) and the
/// errors every such operation can answer.
fn complete(path: &str, method: &Method, operation: &mut Operation) {
    if operation.security.is_none() {
        let scope = format!("{:?}", required_scope(method, path)).to_ascii_lowercase();
        operation.security = Some(vec![
            SecurityRequirement::new(BEARER, [scope.as_str()]),
            SecurityRequirement::new(HEADER, [scope.as_str()]),
        ]);
    }
    let takes_input = operation.request_body.is_some()
        || operation
            .parameters
            .as_ref()
            .is_some_and(|params| !params.is_empty());
    let mut errors = vec![
        ("401", "No API key, or one the fleet does not accept"),
        ("403", "The key lacks the scope this needs (see security)"),
        (
            "503",
            "No leader right now (an election is under way), or the node is shutting down",
        ),
    ];
    if takes_input {
        errors.push((
            "400",
            "A parameter or the body is invalid: the message says which",
        ));
    }
    if operation.request_body.is_some() {
        errors.push(("413", "The body is over the 1 MiB limit"));
    }
    for (status, description) in errors {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description));
    }
}

fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    ApiError::name(),
                ))))
                .build(),
        )
        .build()
        .into()
}
