//! The one mapping from service errors to HTTP: status, code and envelope
//! (DESIGN.md §4.1, SDD 14.6). Every variant is matched by name, so a new
//! error cannot reach a client unmapped. Internal details are logged, not
//! returned. The envelope itself ([`ApiError`]) is shared with the sidecar.

use crate::ports::{ExtractError, StoreError};
use crate::service::ServiceError;
use crate::service::keys::KeyError;
use pika_common::wire::ErrorCode;
use pika_embed::EmbedError;
use serde_json::json;

pub use pika_common::http::ApiError;

/// 503 with `Retry-After: 1`: the caller may retry soon.
fn unavailable(message: &str) -> ApiError {
    ApiError::new(ErrorCode::ServiceUnavailable, message).retry_after(1)
}

fn internal(error: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %error, "internal error");
    ApiError::new(ErrorCode::InternalError, "internal error")
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Validation(errs) => ApiError::new(ErrorCode::ValidationError, errs.summary())
                .with_details(json!({ "fields": errs.0 })),
            ServiceError::NotFound(what) => ApiError::new(ErrorCode::NotFound, format!("{what} not found")),
            ServiceError::Unauthorized => {
                ApiError::new(ErrorCode::Unauthorized, "missing or invalid API key")
            }
            ServiceError::Forbidden(p) => ApiError::new(
                ErrorCode::Forbidden,
                format!("this API key lacks the {p} permission"),
            ),
            ServiceError::ConsentWithdrawn => ApiError::new(
                ErrorCode::ConsentWithdrawn,
                "the user has withdrawn consent; no memories are extracted",
            ),
            ServiceError::ConsentRequired => ApiError::new(
                ErrorCode::ConsentRequired,
                "this tenant requires the user's consent before extraction (PUT /v1/users/{id}/consent)",
            ),
            ServiceError::OutsideKeyScope => {
                ApiError::new(ErrorCode::Forbidden, "this API key does not cover this user")
            }
            ServiceError::JobFailed { job_id, message } => {
                ApiError::new(ErrorCode::ExtractionFailed, message).with_details(json!({ "job_id": job_id }))
            }
            ServiceError::Keys(e) => from_keys(e),
            ServiceError::Store(e) => from_store(e),
            ServiceError::Embed(e) => from_embed(e),
            ServiceError::Extract(e) => from_extract(e),
        }
    }
}

fn from_keys(e: KeyError) -> ApiError {
    match e {
        KeyError::Invalid { field, reason } => {
            ServiceError::Validation(pika_common::validate::ValidationErrors::one(field, reason)).into()
        }
        KeyError::UnknownTenant(t) => ApiError::new(ErrorCode::NotFound, format!("tenant {t} not found")),
        KeyError::TenantExists(t) => ApiError::new(ErrorCode::Conflict, format!("tenant {t} exists already")),
        KeyError::Store(e) => from_store(e),
    }
}

fn from_store(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound { what } => ApiError::new(ErrorCode::NotFound, format!("{what} not found")),
        StoreError::Conflict(m) => ApiError::new(ErrorCode::Conflict, m),
        StoreError::Unavailable { .. } => {
            tracing::error!(error = %e, "storage dependency unavailable");
            unavailable("a storage dependency is unavailable")
        }
        StoreError::ClaimLost | StoreError::Corrupt(_) | StoreError::ModelMismatch { .. } => internal(&e),
    }
}

fn from_embed(e: EmbedError) -> ApiError {
    match e {
        EmbedError::Unavailable(_) | EmbedError::Closed => {
            tracing::error!(error = %e, "embedder unavailable");
            unavailable("the embedding service is unavailable")
        }
        EmbedError::ModelFiles { .. }
        | EmbedError::Tokenizer(_)
        | EmbedError::Inference(_)
        | EmbedError::BadReply(_)
        | EmbedError::UnknownProvider(_) => internal(&e),
    }
}

fn from_extract(e: ExtractError) -> ApiError {
    match e {
        ExtractError::Unavailable(_) => {
            tracing::error!(error = %e, "extractor unavailable");
            unavailable("the language model is unavailable")
        }
        ExtractError::BadReply(_) => internal(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_error_gets_its_status() {
        let status = |e: ServiceError| ApiError::from(e).code.http_status();
        assert_eq!(status(ServiceError::Unauthorized), 401);
        assert_eq!(status(ServiceError::Forbidden("admin")), 403);
        assert_eq!(status(ServiceError::OutsideKeyScope), 403);
        assert_eq!(status(ServiceError::ConsentWithdrawn), 409);
        assert_eq!(status(ServiceError::ConsentRequired), 409);
        assert_eq!(status(ServiceError::NotFound("fact".into())), 404);
        assert_eq!(status(StoreError::Conflict("x".into()).into()), 409);
        assert_eq!(status(StoreError::unavailable("postgres", "down").into()), 503);
        assert_eq!(status(StoreError::Corrupt("row".into()).into()), 500);
        assert_eq!(status(EmbedError::Closed.into()), 503);
        assert_eq!(status(EmbedError::Inference("nan".into()).into()), 500);
        assert_eq!(status(ExtractError::Unavailable("llm".into()).into()), 503);
        let e = ApiError::from(ServiceError::from(StoreError::unavailable(
            "postgres",
            "secret host",
        )));
        assert!(!e.message.contains("secret host"), "internals are not returned");
        assert_eq!(e.retry_after, Some(1));
    }
}
