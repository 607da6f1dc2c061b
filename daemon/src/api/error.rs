//! API errors as JSON (`{"code", "message"}` with the matching HTTP status), and a
//! JSON body and query extractors whose rejections use the same shape.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::error::Category;
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

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(Failure(ApiError::bad_request(
                "send the body as JSON with Content-Type: application/json",
            )));
        }
        let body = Bytes::from_request(req, state).await.map_err(|rejection| {
            Failure(match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => super::body::too_large(),
                _ => ApiError::bad_request(rejection.body_text()),
            })
        })?;
        json_body(&body).map(ApiJson).map_err(Failure)
    }
}

/// `application/json`, or a `+json` type, with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads `body` straight into `T` (no `serde_json::Value` on the way). A value of the
/// wrong type is named by its field (`memory_mb: invalid type: ...`), and a field `T`
/// does not have is refused by name here rather than by the type itself: types stored in
/// the log must let an older build skip fields a newer one added.
pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Most bodies are good: read them without tracking the path to each value (a large
    // batch pays for that), and read a bad one again with it, to say where it is wrong.
    let mut unknown = false;
    let mut json = serde_json::Deserializer::from_slice(body);
    let value = serde_ignored::deserialize(&mut json, |_| unknown = true);
    if let (Ok(value), Ok(()), false) = (value, json.end(), unknown) {
        return Ok(value);
    }
    json_body_explained(body)
}

/// [`json_body`] for a body it could not take: the same reading, with the field's path
/// in what it says.
fn json_body_explained<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let mut unknown: Option<String> = None;
    let mut note_unknown = |path: serde_ignored::Path| {
        unknown.get_or_insert_with(|| path.to_string());
    };
    let value = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
        &mut json,
        &mut note_unknown,
    ))
    .map_err(|err| {
        let field = err.path().to_string();
        body_error(&field, err.into_inner())
    })?;
    json.end().map_err(|err| body_error("", err))?;
    match unknown {
        Some(field) => Err(ApiError::bad_request(format!(
            "invalid request body: unknown field `{field}`"
        ))),
        None => Ok(value),
    }
}

fn body_error(field: &str, err: serde_json::Error) -> ApiError {
    match (err.classify(), field) {
        (Category::Syntax | Category::Eof | Category::Io, _) => {
            ApiError::bad_request(format!("request body is not valid JSON: {err}"))
        }
        (Category::Data, "." | "") => ApiError::bad_request(format!("invalid request body: {err}")),
        (Category::Data, field) => {
            ApiError::bad_request(format!("invalid request body: {field}: {err}"))
        }
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

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Body {
        name: String,
        #[serde(default)]
        limits: Limits,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct Limits {
        memory_mb: Option<u64>,
    }

    fn refusal(body: &str) -> String {
        let err = json_body::<Body>(body.as_bytes()).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        err.message
    }

    #[test]
    fn a_body_reads_straight_into_its_type() {
        let body = json_body::<Body>(br#"{"name": "a", "limits": {"memory_mb": 5}}"#).unwrap();
        assert_eq!(body.limits.memory_mb, Some(5));
    }

    #[test]
    fn a_bad_body_is_refused_naming_what_is_wrong() {
        assert_eq!(
            refusal(r#"{"name": "a", "limits": {"memory_mb": "lots"}}"#),
            "invalid request body: limits.memory_mb: invalid type: string \"lots\", \
             expected u64 at line 1 column 44"
        );
        assert_eq!(
            refusal(r#"{"name": "a", "limits": {"memroy_mb": 5}}"#),
            "invalid request body: unknown field `limits.memroy_mb`"
        );
        assert!(
            refusal(r#"{"limits": {}}"#).starts_with("invalid request body: missing field `name`")
        );
        assert!(refusal(r#"{"name": "a""#).starts_with("request body is not valid JSON: EOF"));
        assert!(
            refusal(r#"{"name": "a"} {}"#).starts_with("request body is not valid JSON: trailing")
        );
    }
}
