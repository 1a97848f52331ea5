//! API-key authentication and permission checks (DESIGN.md §7).
//!
//! The key comes from `Authorization: Bearer <key>` or `X-API-Key`. It is
//! hashed and looked up; expired and revoked keys are refused like unknown
//! ones (401); a valid key without the route's permission gets 403.

use super::error::ApiError;
use crate::app::AppState;
use crate::domain::Permission;
use crate::service::ServiceError;
use crate::service::keys::hash_key;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

/// The authenticated caller (request extension), for the audit log.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: Option<String>,
}

/// The API key a request presents (`Authorization: Bearer` or `X-API-Key`); the
/// sidecar reads it the same way.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if let Some(k) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            return Some(k.trim());
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Middleware: requires a live key with `permission` (unless auth is disabled).
pub async fn require(
    State((state, permission)): State<(AppState, Permission)>,
    mut req: Request,
    next: Next,
) -> Response {
    if state.config.auth.insecure_dev {
        req.extensions_mut().insert(Caller { key_id: None });
        return next.run(req).await;
    }
    let Some(key) = presented_key(req.headers()).filter(|k| !k.is_empty()) else {
        return ApiError::from(ServiceError::Unauthorized).into_response();
    };
    let record = match state.deps.meta.key_by_hash(&hash_key(key)).await {
        Ok(Some(r)) if r.is_live(Utc::now()) => r,
        Ok(_) => return ApiError::from(ServiceError::Unauthorized).into_response(),
        Err(e) => return ApiError::from(ServiceError::Store(e)).into_response(),
    };
    if !record.allows(permission, Utc::now()) {
        return ApiError::from(ServiceError::Forbidden(permission.as_str())).into_response();
    }
    req.extensions_mut().insert(Caller {
        key_id: Some(record.key_id),
    });
    next.run(req).await
}
