//! Every answer the sidecar gives of its own (not relayed from the
//! dataplane), as one enum with one exhaustive mapping to the shared error
//! envelope (`pika_common::http::ApiError`), so clients see one format and
//! one wording whichever process refused them.

use crate::proxy::ProxyError;
use axum::response::{IntoResponse, Response};
use pika_common::http::ApiError;
use pika_common::wire::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("missing API key")]
    MissingKey,
    #[error("invalid, expired or revoked API key")]
    DeadKey,
    #[error("key store unavailable")]
    KeysUnavailable,
    #[error("this key lacks the search permission")]
    NoSearchPermission,
    /// A device key asked for a user outside its list (the dataplane's wording).
    #[error("this API key does not cover this user")]
    OutsideKeyScope,
    #[error("rate limit exceeded for this API key")]
    RateLimited,
    #[error("request body larger than 1 MiB")]
    BodyTooLarge,
    /// Only the dataplane's own endpoints for the sidecar.
    #[error("no such endpoint")]
    Internal,
    #[error(transparent)]
    Upstream(#[from] ProxyError),
    #[error("job status answer unreadable")]
    StatusUnreadable,
}

impl From<&Refusal> for ApiError {
    fn from(r: &Refusal) -> Self {
        let message = r.to_string();
        match r {
            Refusal::MissingKey | Refusal::DeadKey => ApiError::new(ErrorCode::Unauthorized, message),
            Refusal::NoSearchPermission | Refusal::OutsideKeyScope => {
                ApiError::new(ErrorCode::Forbidden, message)
            }
            Refusal::RateLimited => ApiError::new(ErrorCode::RateLimited, message).retry_after(1),
            Refusal::BodyTooLarge => ApiError::new(ErrorCode::PayloadTooLarge, message),
            Refusal::Internal => ApiError::new(ErrorCode::NotFound, message),
            Refusal::KeysUnavailable | Refusal::Upstream(_) | Refusal::StatusUnreadable => {
                ApiError::new(ErrorCode::ServiceUnavailable, message).retry_after(1)
            }
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        ApiError::from(&self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_status() {
        let status = |r: Refusal| ApiError::from(&r).code.http_status();
        assert_eq!(status(Refusal::MissingKey), 401);
        assert_eq!(status(Refusal::DeadKey), 401);
        assert_eq!(status(Refusal::NoSearchPermission), 403);
        assert_eq!(status(Refusal::OutsideKeyScope), 403);
        assert_eq!(status(Refusal::RateLimited), 429);
        assert_eq!(status(Refusal::BodyTooLarge), 413);
        assert_eq!(status(Refusal::Internal), 404);
        assert_eq!(status(Refusal::KeysUnavailable), 503);
        assert_eq!(status(ProxyError::Unreachable("x".into()).into()), 503);
        assert_eq!(ApiError::from(&Refusal::RateLimited).retry_after, Some(1));
    }
}
