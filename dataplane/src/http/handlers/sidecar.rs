//! The two endpoints the sidecar calls, with the caller's own key, so that
//! it never opens the key store or the audit log itself (DESIGN.md §5):
//!
//! - `GET /v1/keys/self`: the grant of the presented key, also when revoked
//!   or expired (the sidecar caches the answer and refuses dead keys itself);
//!   401 only for a key that does not exist.
//! - `POST /v1/audit/cache_hits`: searches the sidecar answered from cache,
//!   recorded under the key that presented them (search permission needed).

use super::{ApiResult, invalid, ok};
use crate::app::AppState;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::json::Body;
use crate::ports::StoreError;
use crate::service::ServiceError;
use crate::service::audit::{Access, Actor};
use axum::extract::{Request, State};
use axum::response::IntoResponse;
use pika_common::http::usable_request_id;
use pika_common::keys::presented_key;
use pika_common::validate::check_id;
use pika_common::wire::{CacheHitBatch, MAX_CACHE_HITS_PER_BATCH};

pub async fn key_self(State(state): State<AppState>, req: Request) -> axum::response::Response {
    let Some(key) = presented_key(req.headers()) else {
        return ApiError::from(ServiceError::Unauthorized).into_response();
    };
    match state.grants.lookup(key).await {
        Ok(Some(grant)) => ok(grant),
        Ok(None) => ApiError::from(ServiceError::Unauthorized).into_response(),
        Err(e) => {
            ApiError::from(ServiceError::Store(StoreError::unavailable("key store", e.0))).into_response()
        }
    }
}

pub async fn cache_hits(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Body(batch): Body<CacheHitBatch>,
) -> ApiResult {
    if batch.hits.len() > MAX_CACHE_HITS_PER_BATCH {
        return Err(invalid(
            "hits",
            format!("at most {MAX_CACHE_HITS_PER_BATCH} per batch"),
        ));
    }
    for (i, hit) in batch.hits.iter().enumerate() {
        check_id(&hit.user_id).map_err(|reason| invalid(&format!("hits[{i}].user_id"), reason))?;
        if !usable_request_id(&hit.request_id) {
            return Err(invalid(
                &format!("hits[{i}].request_id"),
                "must be 1..128 printable ASCII characters",
            ));
        }
        if !matches!(hit.layer.as_str(), "L0" | "L1") {
            return Err(invalid(&format!("hits[{i}].layer"), "must be L0 or L1"));
        }
    }
    for hit in &batch.hits {
        let actor = Actor {
            key_id: caller.key_id.clone(),
            request_id: hit.request_id.clone(),
            reach: caller.reach.clone(),
        };
        // The sidecar serves a key only the users it covers; anything else
        // in a batch is not this key's to record.
        let scoped = actor.scope(&hit.user_id)?;
        let target = format!("cache:{}", hit.layer);
        let access = Access {
            action: "search",
            user_id: Some(&scoped),
            target: Some(&target),
        };
        state.services.audit.read(&actor, access).await;
    }
    Ok(ok(serde_json::json!({"recorded": batch.hits.len()})))
}
