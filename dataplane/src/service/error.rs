//! The service layer's error; the HTTP layer maps it to the envelope in one place.

use crate::ports::{ExtractError, StoreError};
use pika_common::validate::ValidationErrors;
use pika_embed::EmbedError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid request: {}", .0.summary())]
    Validation(ValidationErrors),
    #[error("{0} not found")]
    NotFound(String),
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("this API key lacks the {0} permission")]
    Forbidden(&'static str),
    /// The user withdrew consent; nothing more is extracted.
    #[error("the user has withdrawn consent; no memories are extracted")]
    ConsentWithdrawn,
    /// The tenant requires consent first, and none is recorded.
    #[error("this tenant requires the user's consent before extraction")]
    ConsentRequired,
    /// A device key asked for a user outside its list.
    #[error("this API key does not cover this user")]
    OutsideKeyScope,
    /// A job the caller waited for ended `failed`.
    #[error("extraction job {job_id} failed: {message}")]
    JobFailed { job_id: String, message: String },
    #[error(transparent)]
    Keys(#[from] crate::service::keys::KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Extract(#[from] ExtractError),
}
