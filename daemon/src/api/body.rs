//! Every request's body is read whole (up to [`MAX_BODY_BYTES`]) before any check or route
//! sees it. An answer given before its request's body was read (a 401 from the key check,
//! a 404, a bad query) ends the connection once it is sent, since the server cannot tell
//! where the unread body ends; a client that had already sent its next request on that
//! connection saw it closed under it.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shoal_protocol::{ApiError, ErrorCode};

use super::{Failure, MAX_BODY_BYTES};

/// The answer to a body over [`MAX_BODY_BYTES`].
pub(super) fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("request body is over the {MAX_BODY_BYTES} byte limit"),
    )
}

/// Reads the body, then serves the request with it; a body over the limit (413) or one
/// that breaks off (400) is answered at once, and that connection is closed.
pub async fn read_whole(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(err) => {
            let over = err
                .into_inner()
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            let error = if over {
                too_large()
            } else {
                ApiError::bad_request("the request body broke off before its end")
            };
            let mut response = Failure(error).into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}
