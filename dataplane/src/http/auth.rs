//! API-key authentication and permission checks (DESIGN.md §7), and the two
//! endpoints the sidecar calls with a caller's key: introspection (what may
//! this key do?) and the audit of answers it served from cache.
//!
//! The key comes from `Authorization: Bearer <key>` or `X-API-Key`
//! ([`presented_key`]). Its grant comes from a short-lived cache in front of
//! the key store ([`GrantCache`]); expired and revoked keys are refused like
//! unknown ones (401); a valid key without the route's permission gets 403.
//! The caller's reach (tenant, and a device key's users) goes to the services
//! with every request; `--insecure-dev` reaches the default tenant.

use super::error::ApiError;
use crate::app::AppState;
use crate::domain::Permission;
use crate::ports::MetaStore;
use crate::service::ServiceError;
use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use pika_common::grants::{GrantSource, GrantSourceError};
use pika_common::keys::{KeyGrant, presented_key};
use pika_common::tenancy::{DEFAULT_TENANT, Reach};
use std::sync::Arc;

/// The authenticated caller (request extension): whose data it reaches, and
/// its key id for the audit log.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: Option<String>,
    pub reach: Reach,
}

/// Grants read from the metadata store.
pub struct StoredGrants(pub Arc<dyn MetaStore>);

#[async_trait]
impl GrantSource for StoredGrants {
    async fn grant(&self, _presented: &str, hash: &str) -> Result<Option<KeyGrant>, GrantSourceError> {
        match self.0.key_by_hash(hash).await {
            Ok(record) => Ok(record.map(|r| r.grant())),
            Err(e) => Err(GrantSourceError(e.to_string())),
        }
    }
}

/// The live grant of a presented key, or the answer refusing it.
pub async fn live_grant(state: &AppState, key: Option<String>) -> Result<KeyGrant, ApiError> {
    let Some(key) = key else {
        return Err(ServiceError::Unauthorized.into());
    };
    match state.grants.lookup(&key).await {
        Ok(Some(g)) if g.is_live(Utc::now()) => Ok(g),
        Ok(_) => Err(ServiceError::Unauthorized.into()),
        Err(e) => {
            tracing::error!(error = %e, "key store unavailable");
            Err(ServiceError::Store(crate::ports::StoreError::unavailable("key store", e.0)).into())
        }
    }
}

/// Middleware: requires a live key with `permission` (unless auth is disabled).
pub async fn require(
    State((state, permission)): State<(AppState, Permission)>,
    mut req: Request,
    next: Next,
) -> Response {
    if state.config.auth.insecure_dev {
        req.extensions_mut().insert(Caller {
            key_id: None,
            reach: Reach::tenant(DEFAULT_TENANT),
        });
        return next.run(req).await;
    }
    let key = presented_key(req.headers()).map(str::to_string);
    let grant = match live_grant(&state, key).await {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    if !grant.allows(permission, Utc::now()) {
        return ApiError::from(ServiceError::Forbidden(permission.as_str())).into_response();
    }
    req.extensions_mut().insert(Caller {
        reach: grant.reach(),
        key_id: Some(grant.key_id),
    });
    next.run(req).await
}
