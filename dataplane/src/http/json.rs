//! Body and query extractors whose rejections use the error envelope: malformed
//! JSON is 400 `INVALID_JSON`, a body over the limit is 413.

use super::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use pika_common::wire::ErrorCode;
use serde::de::DeserializeOwned;

/// `axum::Json` with envelope rejections.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(reject(rejection)),
        }
    }
}

fn reject(r: JsonRejection) -> ApiError {
    if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(ErrorCode::PayloadTooLarge, "request body exceeds 1 MiB");
    }
    match r {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::new(ErrorCode::InvalidJson, "Content-Type must be application/json")
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            ErrorCode::InvalidJson,
            format!("malformed JSON: {}", e.body_text()),
        ),
        JsonRejection::JsonDataError(e) => ApiError::new(
            ErrorCode::InvalidJson,
            format!("unexpected JSON shape: {}", e.body_text()),
        ),
        other => ApiError::new(ErrorCode::InvalidJson, other.body_text()),
    }
}

/// `axum::extract::Query` with envelope rejections: a query string that
/// does not parse (`limit=abc`, a parameter given twice) is a 400
/// `VALIDATION_ERROR` like any other bad field, never axum's plain text.
pub struct Params<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Params<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(rejection) => Err(ApiError::new(
                ErrorCode::ValidationError,
                format!("query string: {}", rejection.body_text()),
            )),
        }
    }
}
