//! Auth before cache: a cached answer is only ever served to a live key with
//! the right permission (DESIGN.md §5, §7).
//!
//! The sidecar never opens the key store. It asks the dataplane what a key
//! may do (`GET /v1/keys/self`, presenting that key, over loopback) and keeps
//! the answer in a [`GrantCache`] for `keys.cache_ttl_ms`, unknown keys
//! included, so a client retrying a bad key does not reach the dataplane on
//! every request.
//!
//! When the dataplane cannot answer (restarting, overloaded), a grant seen
//! within `keys.stale_ms` is still honoured, so cached answers keep flowing
//! to keys that were live a moment ago; a key never seen, or seen longer ago,
//! gets 503. A revoked key therefore stops working within `cache_ttl_ms`
//! (plus the dataplane's own cache) while the dataplane is up, and within
//! `stale_ms` at worst.

use crate::errors::Refusal;
use crate::proxy::Upstream;
use crate::state::State;
use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Request, State as Extract};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use pika_common::grants::{GrantSource, GrantSourceError};
use pika_common::keys::{KeyGrant, Permission, presented_key};
use pika_common::tenancy::{DEFAULT_TENANT, Reach};
use pika_common::wire::Envelope;
use std::sync::Arc;

/// The authenticated caller (request extension), for the rate limiter and
/// the audit of cache hits.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    /// Whose data the key reaches: cache keys are scoped with it, and a
    /// cached answer goes only to a key covering that user.
    pub reach: Reach,
    /// The key as presented (`None` with `insecure_dev`): cache-hit audits are
    /// sent to the dataplane with it.
    pub key: Option<Arc<str>>,
}

/// Grants from the dataplane's introspection endpoint.
pub struct Introspection(pub Upstream);

#[async_trait]
impl GrantSource for Introspection {
    async fn grant(&self, presented: &str, _hash: &str) -> Result<Option<KeyGrant>, GrantSourceError> {
        let answer = self
            .0
            .call(
                http::Method::GET,
                "/v1/keys/self",
                Some(presented),
                bytes::Bytes::new(),
            )
            .await
            .map_err(|e| GrantSourceError(e.to_string()))?;
        match answer.status.as_u16() {
            200 => serde_json::from_slice::<Envelope<KeyGrant>>(&answer.body)
                .map(|e| Some(e.data))
                .map_err(|e| GrantSourceError(format!("unreadable grant: {e}"))),
            401 => Ok(None),
            other => Err(GrantSourceError(format!("introspection answered {other}"))),
        }
    }
}

/// The search routes the sidecar caches: ours and Mem0's.
pub fn is_search(path: &str) -> bool {
    path == "/v1/search_facts" || path == "/search_facts" || pika_common::mem0::search_route(path).is_some()
}

/// Middleware: a live key, with the search permission on search routes.
/// Other routes' permissions are the dataplane's to check (it checks all).
pub async fn require_key(Extract(state): Extract<State>, mut req: Request, next: Next) -> Response<Body> {
    if state.insecure_dev {
        req.extensions_mut().insert(Caller {
            key_id: "anonymous".into(),
            reach: Reach::tenant(DEFAULT_TENANT),
            key: None,
        });
        return next.run(req).await;
    }
    let Some(key) = presented_key(req.headers()) else {
        return Refusal::MissingKey.into_response();
    };
    let grant = match state.grants.lookup(key).await {
        Ok(Some(g)) if g.is_live(Utc::now()) => g,
        Ok(_) => {
            return Refusal::DeadKey.into_response();
        }
        Err(e) => {
            tracing::warn!(error = %e, "key grants unavailable");
            return Refusal::KeysUnavailable.into_response();
        }
    };
    if is_search(req.uri().path()) && !grant.allows(Permission::Search, Utc::now()) {
        return Refusal::NoSearchPermission.into_response();
    }
    let key: Arc<str> = Arc::from(key);
    req.extensions_mut().insert(Caller {
        reach: grant.reach(),
        key_id: grant.key_id,
        key: Some(key),
    });
    next.run(req).await
}
