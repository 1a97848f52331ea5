//! Tenants and keys, for an operator key (a platform team's): create and
//! list tenants; create, list and revoke keys of any tenant. The new key's
//! secret is in the creation answer only.

use super::{ApiResult, actor, invalid, ok, path_id};
use crate::app::AppState;
use crate::http::auth::Caller;
use crate::http::json::Body;
use crate::http::json::Params;
use crate::service::ServiceError;
use crate::service::keys::{KeySpec, parse_permissions};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use pika_common::wire::Envelope;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    tenant_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    require_consent: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantChange {
    #[serde(default)]
    require_consent: Option<bool>,
    #[serde(default)]
    retention_days: Option<u32>,
}

pub async fn change_tenant(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(tenant_id): Path<String>,
    Body(body): Body<TenantChange>,
) -> ApiResult {
    let keys = &state.services.keys;
    let actor = actor(&caller);
    if let Some(required) = body.require_consent {
        keys.set_require_consent(&actor, &tenant_id, required)
            .await
            .map_err(ServiceError::from)?;
    }
    if let Some(days) = body.retention_days {
        keys.set_retention_days(&actor, &tenant_id, days)
            .await
            .map_err(ServiceError::from)?;
    }
    Ok(ok(json!({
        "tenant_id": tenant_id,
        "require_consent": body.require_consent,
        "retention_days": body.retention_days,
    })))
}

pub async fn create_tenant(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Body(body): Body<NewTenant>,
) -> ApiResult {
    let t = state
        .services
        .keys
        .create_tenant(&actor(&caller), &body.tenant_id, &body.name, body.require_consent)
        .await
        .map_err(ServiceError::from)?;
    Ok((StatusCode::CREATED, axum::Json(Envelope::success(t))).into_response())
}

pub async fn list_tenants(State(state): State<AppState>) -> ApiResult {
    let tenants = state.services.keys.tenants().await.map_err(ServiceError::from)?;
    Ok(ok(json!({ "tenants": tenants })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    tenant_id: String,
    name: String,
    /// `["extract","search"]` by default.
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    users: Option<Vec<String>>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

pub async fn create_key(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Body(body): Body<NewKey>,
) -> ApiResult {
    let perms = body
        .permissions
        .map(|p| p.join(","))
        .unwrap_or_else(|| "extract,search".into());
    let permissions = parse_permissions(&perms).map_err(|r| invalid("permissions", r))?;
    if body.expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(invalid("expires_at", "must be in the future"));
    }
    let spec = KeySpec {
        tenant_id: body.tenant_id,
        name: body.name,
        permissions,
        users: body.users,
        expires_at: body.expires_at,
    };
    let key = state
        .services
        .keys
        .create_key(&actor(&caller), spec)
        .await
        .map_err(ServiceError::from)?;
    let data = json!({ "api_key": key.secret, "key": key.record });
    Ok((StatusCode::CREATED, axum::Json(Envelope::success(data))).into_response())
}

#[derive(Debug, Deserialize)]
pub struct KeyFilter {
    tenant_id: Option<String>,
}

pub async fn list_keys(State(state): State<AppState>, Params(filter): Params<KeyFilter>) -> ApiResult {
    let keys = state
        .services
        .keys
        .keys(filter.tenant_id.as_deref())
        .await
        .map_err(ServiceError::from)?;
    Ok(ok(json!({ "keys": keys })))
}

pub async fn revoke_key(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(key_id): Path<String>,
) -> ApiResult {
    path_id("key_id", &key_id)?;
    let revoked = state
        .services
        .keys
        .revoke_key(&actor(&caller), &key_id)
        .await
        .map_err(ServiceError::from)?;
    if !revoked {
        return Err(ServiceError::NotFound(format!("key {key_id}")).into());
    }
    Ok(ok(json!({ "key_id": key_id, "revoked": true })))
}
