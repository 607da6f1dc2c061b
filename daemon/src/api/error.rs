//! API errors as JSON (`{"code", "message"}` with the matching HTTP status), and a
//! JSON body and query extractors whose rejections use the same shape.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use shoal_protocol::{ApiError, ErrorCode};

/// An [`ApiError`] on its way to the client.
#[derive(Debug)]
pub struct Failure(pub ApiError);

pub type ApiResult<T> = Result<Json<T>, Failure>;

impl From<ApiError> for Failure {
    fn from(err: ApiError) -> Self {
        Failure(err)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

/// Serves one request isolated (see [`crate::isolate`]): a panic while serving it is a 500
/// for that request alone, and the node serves on.
pub async fn isolate_panics(
    axum::extract::State(node): axum::extract::State<std::sync::Arc<crate::node::Node>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let serve = async move {
        #[cfg(feature = "testsuite")]
        node.faults.maybe_panic_in_request();
        #[cfg(not(feature = "testsuite"))]
        let _ = node;
        next.run(request).await
    };
    match crate::isolate::isolate(serve).await {
        Ok(response) => response,
        Err(panic) => Failure(ApiError::new(
            ErrorCode::Internal,
            format!("shoald failed serving this request ({panic}); the node serves on"),
        ))
        .into_response(),
    }
}

/// A JSON body; a malformed, mistyped or oversized one is a clear 400 or 413.
pub struct ApiJson<T>(pub T);

/// A field the body type does not have is refused here, by name, rather than by the type
/// itself: types stored in the log must let an older build skip fields a newer one added.
impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(body) = Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(|rejection| Failure(rejection_error(rejection)))?;
        let mut unknown = Vec::new();
        let mut note_unknown = |path: serde_ignored::Path| unknown.push(path.to_string());
        let ignoring = serde_ignored::Deserializer::new(body, &mut note_unknown);
        // A value of the wrong type is named by its field: `memory_mb: invalid type: ...`.
        let value = serde_path_to_error::deserialize(ignoring).map_err(|err| {
            let field = err.path().to_string();
            let err = err.into_inner();
            match field.as_str() {
                "." | "" => ApiError::bad_request(format!("invalid request body: {err}")),
                field => ApiError::bad_request(format!("invalid request body: {field}: {err}")),
            }
        })?;
        match unknown.first() {
            Some(field) => Err(Failure(ApiError::bad_request(format!(
                "invalid request body: unknown field `{field}`"
            )))),
            None => Ok(ApiJson(value)),
        }
    }
}

fn rejection_error(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return super::body::too_large();
    }
    match rejection {
        JsonRejection::JsonDataError(err) => {
            ApiError::bad_request(format!("invalid request body: {}", err.body_text()))
        }
        JsonRejection::JsonSyntaxError(err) => ApiError::bad_request(format!(
            "request body is not valid JSON: {}",
            err.body_text()
        )),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::bad_request("send the body as JSON with Content-Type: application/json")
        }
        other => ApiError::bad_request(other.body_text()),
    }
}

/// Query parameters; unknown or mistyped ones are a clear 400 in the usual JSON shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(Failure(ApiError::bad_request(format!(
                "invalid query parameters: {}",
                rejection.body_text()
            )))),
        }
    }
}

/// A path or query value parsed, or a 400 with the parser's own message.
pub fn parsed<T: std::str::FromStr>(text: &str) -> Result<T, Failure>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|err: T::Err| Failure(ApiError::bad_request(err.to_string())))
}

/// The state machine's answer, or the API error its refusal carries.
pub fn accepted(response: shoal_protocol::Response) -> Result<shoal_protocol::Response, Failure> {
    match response {
        shoal_protocol::Response::Rejected { code, message } => {
            Err(Failure(ApiError::new(code, message)))
        }
        other => Ok(other),
    }
}

pub async fn not_found() -> Failure {
    Failure(ApiError::not_found("no such endpoint"))
}
