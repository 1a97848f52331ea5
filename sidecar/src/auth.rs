//! Auth before cache: a cached answer is only ever served to a live key with
//! the right permission (DESIGN.md §5, §7).
//!
//! The sidecar reads the same key store as the dataplane (its `storage`
//! configuration) and hashes keys the same way. Lookups are cached for a
//! short time (`--key-cache-ttl-ms`), so a revoked key stops working within
//! that time; unknown keys are cached too, so a client retrying a bad key
//! does not reach the database on every request.

use crate::errors::{envelope, request_id};
use crate::state::State;
use axum::body::Body;
use axum::extract::{Request, State as Extract};
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use pika_common::wire::ErrorCode;
use pika_dataplane::domain::{ApiKeyRecord, Permission};
use pika_dataplane::http::auth::presented_key;
use pika_dataplane::ports::MetaStore;
use pika_dataplane::service::keys::hash_key;
use std::sync::Arc;
use std::time::Duration;

/// The authenticated caller (request extension), for the rate limiter.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
}

/// Key lookups by hash, cached briefly.
pub struct KeyCache {
    store: Arc<dyn MetaStore>,
    cache: moka::future::Cache<String, Option<Arc<ApiKeyRecord>>>,
}

impl KeyCache {
    pub fn new(store: Arc<dyn MetaStore>, ttl: Duration) -> Self {
        KeyCache {
            store,
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The record of a presented key; concurrent lookups of one key share a query.
    pub async fn lookup(&self, key: &str) -> Result<Option<Arc<ApiKeyRecord>>, String> {
        let hash = hash_key(key);
        self.cache
            .try_get_with(hash.clone(), async {
                self.store.key_by_hash(&hash).await.map(|r| r.map(Arc::new))
            })
            .await
            .map_err(|e| e.to_string())
    }
}

pub fn is_search(path: &str) -> bool {
    path == "/v1/search_facts" || path == "/search_facts"
}

/// Middleware: a live key, with the search permission on search routes.
/// Other routes' permissions are the dataplane's to check (it checks all).
pub async fn require_key(Extract(state): Extract<State>, mut req: Request, next: Next) -> Response<Body> {
    if state.insecure_dev {
        req.extensions_mut().insert(Caller {
            key_id: "anonymous".into(),
        });
        return next.run(req).await;
    }
    let trace = request_id(req.headers());
    let Some(key) = presented_key(req.headers()).filter(|k| !k.is_empty()) else {
        return envelope(ErrorCode::Unauthorized, "missing API key", trace);
    };
    let record = match state.keys.lookup(key).await {
        Ok(Some(r)) if r.is_live(Utc::now()) => r,
        Ok(_) => {
            return envelope(
                ErrorCode::Unauthorized,
                "invalid, expired or revoked API key",
                trace,
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "key store unavailable");
            return envelope(ErrorCode::ServiceUnavailable, "key store unavailable", trace);
        }
    };
    if is_search(req.uri().path()) && !record.allows(Permission::Search, Utc::now()) {
        return envelope(
            ErrorCode::Forbidden,
            "this key lacks the search permission",
            trace,
        );
    }
    req.extensions_mut().insert(Caller {
        key_id: record.key_id.clone(),
    });
    next.run(req).await
}
