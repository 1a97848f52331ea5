//! Route handlers. Each one parses the request (path, query, headers, body),
//! calls one service method and maps the result to the envelope; errors go
//! through the one mapping in `http::error`. Grouped by resource.

pub mod access;
pub mod facts;
pub mod jobs;
pub mod memory;
pub mod ops;
pub mod sidecar;

use super::auth::Caller;
use super::error::ApiError;
use crate::service::ServiceError;
use crate::service::audit::Actor;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pika_common::http::current_request_id;
use pika_common::validate::{ValidationErrors, check_id};
use pika_common::wire::Envelope;

pub type ApiResult = Result<Response, ApiError>;

/// `200 {"status":"success","data":...}`.
pub fn ok<T: serde::Serialize>(data: T) -> Response {
    (StatusCode::OK, Json(Envelope::success(data))).into_response()
}

/// 400 naming one bad field, in the same shape as body validation errors.
pub fn invalid(field: &str, reason: impl Into<String>) -> ApiError {
    ServiceError::Validation(ValidationErrors::one(field, reason)).into()
}

/// A path segment that must be an id (`user_id`, `fact_id`).
pub fn path_id(field: &str, value: &str) -> Result<(), ApiError> {
    check_id(value).map_err(|reason| invalid(field, reason))
}

/// The caller as the audit log names it.
pub fn actor(caller: &Caller) -> Actor {
    Actor {
        key_id: caller.key_id.clone(),
        request_id: current_request_id(),
        reach: caller.reach.clone(),
    }
}
