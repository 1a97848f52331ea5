//! Pre-computation: after a user's cache is invalidated, answer the policy's
//! warm-up queries for that user ahead of time, if the user searched recently.
//!
//! Runs through the same cache path as a client search (with the default
//! parameters a robot sends), so the answers land in L0 and L1 under the new
//! generation. Needs a key with the search permission (`--warmup-key`); a
//! burst of writes for one user leads to one warm-up after `warmup.delayMs`.

use crate::cache::Outgoing;
use crate::state::State;
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use pika_common::keys::Permission;
use pika_common::tenancy::{DEFAULT_TENANT, Reach, split_scoped};
use pika_common::wire::RawSearchRequest;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// `user_id` is the scoped key the invalidation named.
pub fn schedule(state: &State, user_id: &str) {
    let policy = &state.cache.policy.warmup;
    if policy.queries.is_empty() || state.warmup_key.is_none() && !state.insecure_dev {
        return;
    }
    let Some(slot) = state.cache.l0.existing_user(user_id) else {
        return;
    };
    if !slot.searched_within(Duration::from_secs(policy.active_within_seconds)) {
        return;
    }
    if slot.warm_pending.swap(true, Ordering::AcqRel) {
        return;
    }
    let state = state.clone();
    let user = user_id.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(state.cache.policy.warmup.delay_ms)).await;
        slot.warm_pending.store(false, Ordering::Release);
        run(&state, &user).await;
    });
}

/// Whose data the warm-up key reaches (`None`: unknown, dead or unreachable).
async fn warmup_reach(state: &State) -> Option<Reach> {
    if state.insecure_dev {
        return Some(Reach::tenant(DEFAULT_TENANT));
    }
    let key = state.warmup_key.as_deref()?;
    match state.grants.lookup(key).await {
        Ok(Some(g)) if g.allows(Permission::Search, chrono::Utc::now()) => Some(g.reach()),
        _ => None,
    }
}

/// `scoped` is the cache's key of the user; the warm-up key must reach that
/// very user (same tenant, covered), or the dataplane would answer for the
/// same user id in the warm-up key's tenant and the answer would be cached
/// under another tenant's key.
async fn run(state: &State, scoped: &str) {
    let user = split_scoped(scoped).1;
    let reaches = warmup_reach(state)
        .await
        .is_some_and(|r| r.scope(user).as_deref() == Some(scoped));
    if !reaches {
        tracing::debug!("warm-up key does not reach this user; not warming");
        return;
    }
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(key) = &state.warmup_key
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {key}"))
    {
        headers.insert(header::AUTHORIZATION, v);
    }
    let uri = Uri::from_static("/v1/search_facts");
    for query in &state.cache.policy.warmup.queries {
        let raw = RawSearchRequest {
            user_id: Some(user.into()),
            query: Some(query.as_str().into()),
            ..Default::default()
        };
        let Ok(mut req) = pika_common::validate::search(raw) else {
            continue;
        };
        req.user_id = scoped.to_string();
        let body = serde_json::json!({"user_id": user, "query": query});
        let resp = state
            .cache
            .answer(
                &req,
                "native",
                Outgoing {
                    method: &Method::POST,
                    uri: &uri,
                    headers: &headers,
                    body: body.to_string().into(),
                },
                state.subscribed(),
            )
            .await;
        if !resp.status().is_success() {
            tracing::debug!(status = %resp.status(), "warm-up query not cached");
        }
    }
}
