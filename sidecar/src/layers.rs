//! The search-cache layer and the freshness hooks on pass-through traffic.
//!
//! Searches are answered by [`crate::cache::SearchCache`]; a request the
//! sidecar cannot parse or validate goes to the dataplane untouched, so the
//! client gets the dataplane's exact error. Two pass-through answers also
//! reach the cache: a job status saying `completed` (the sidecar bumps the
//! user's generation before relaying it, so a client that saw its write finish
//! never reads an older cached answer), and a successful user deletion (that
//! user's L0 entries go at once). Mem0's search routes are cached the same
//! way (their body read as ours by `pika_common::mem0`), keyed apart by
//! route shape and Mem0 scope.

use crate::auth::is_search;
use crate::cache::{Outgoing, X_CACHE};
use crate::errors::Refusal;
use crate::state::State;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State as Extract};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;
use pika_common::http::current_request_id;
use pika_common::tenancy::Reach;
use pika_common::validate::MAX_BODY_BYTES;
use pika_common::wire::{CacheHit, RawSearchRequest, SearchRequest};
use std::time::Duration;
/// Job status answers are small; larger ones are relayed without a look.
const MAX_STATUS_BYTES: usize = 64 * 1024;
/// A job that completed longer ago than this was seen by its client already.
const RECENT_COMPLETION: Duration = Duration::from_secs(120);

fn job_status_path(path: &str) -> bool {
    let rest = path.strip_prefix("/v1/jobs/");
    rest.is_some_and(|r| !r.is_empty() && (!r.contains('/') || r.ends_with("/status")))
}

/// The dataplane's endpoints for the sidecar itself (cache-hit audits) are
/// not for clients: an audit line must come from a cache hit.
fn sidecar_only(path: &str) -> bool {
    path.starts_with("/v1/audit/")
}

pub async fn search_cache(Extract(state): Extract<State>, req: Request, next: Next) -> Response<Body> {
    let path = req.uri().path().to_string();
    if sidecar_only(&path) {
        return Refusal::Internal.into_response();
    }
    if req.method() == Method::POST && is_search(&path) {
        return cached_search(state, req).await;
    }
    let reach = caller_reach(&req);
    if req.method() == Method::GET && job_status_path(&path) {
        let resp = next.run(req).await;
        return relay_job_status(&state, &reach, resp).await;
    }
    if req.method() == Method::DELETE
        && let Some(user) = erased_user(&path, req.uri().query())
        && let Some(scoped) = reach.scope(&user)
    {
        let resp = next.run(req).await;
        if resp.status().is_success() {
            state.cache.l0.forget_user(&scoped).await;
        }
        return resp;
    }
    next.run(req).await
}

/// The user a request erases: `DELETE /v1/users/{u}`, and Mem0's
/// `DELETE /v1/memories/?user_id=` (with no agent, run or app: those delete
/// some memories only, and reach the cache through the generation bump) and
/// `DELETE /v2/entities/user/{u}/`.
fn erased_user(path: &str, query: Option<&str>) -> Option<String> {
    if let Some(u) = path.strip_prefix("/v1/users/").filter(|u| !u.contains('/')) {
        return Some(u.to_string());
    }
    if let Some(u) = path
        .strip_prefix("/v2/entities/user/")
        .map(|u| u.trim_end_matches('/'))
        .filter(|u| !u.is_empty() && !u.contains('/'))
    {
        return percent_decoded(u);
    }
    if path.trim_end_matches('/') == "/v1/memories" {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let narrowed = pairs
            .iter()
            .any(|(k, _)| matches!(k.as_str(), "agent_id" | "run_id" | "app_id"));
        if !narrowed {
            return pairs.into_iter().find(|(k, _)| k == "user_id").map(|(_, v)| v);
        }
    }
    None
}

fn percent_decoded(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Whose data the authenticated caller reaches (nothing without auth's extension).
fn caller_reach(req: &Request) -> Reach {
    req.extensions()
        .get::<crate::auth::Caller>()
        .map(|c| c.reach.clone())
        .unwrap_or_default()
}

async fn cached_search(state: State, req: Request) -> Response<Body> {
    let reach = caller_reach(&req);
    let (parts, body) = req.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY_BYTES).await else {
        return Refusal::BodyTooLarge.into_response();
    };
    // A Mem0 search is read as ours, and its answer (in the route's shape)
    // is cached under a key that names the shape.
    let shape = pika_common::mem0::search_route(parts.uri.path());
    let valid = match shape {
        Some(_) => serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| pika_common::mem0::search(&v).ok()),
        None => serde_json::from_slice::<RawSearchRequest>(&body)
            .ok()
            .and_then(|raw| pika_common::validate::search(raw).ok()),
    };
    let Some(search) = valid else {
        // The dataplane words the validation error; nothing here is cached.
        let mut resp = state
            .upstream
            .forward(Request::from_parts(parts, Body::from(body)))
            .await;
        resp.headers_mut()
            .insert(X_CACHE, HeaderValue::from_static("BYPASS"));
        return resp;
    };
    // Cache entries are keyed by tenant + user: the scoped key stands for the
    // user everywhere in the cache (L0 slots, L1 keys, generations). A key not
    // covering the user gets no answer, cached or not.
    let Some(scoped) = reach.scope(&search.user_id) else {
        return Refusal::OutsideKeyScope.into_response();
    };
    let keyed = SearchRequest {
        user_id: scoped,
        ..search.clone()
    };
    let resp = state
        .cache
        .answer(
            &keyed,
            shape.map_or("native", |s| s.as_str()),
            Outgoing {
                method: &parts.method,
                uri: &parts.uri,
                headers: &parts.headers,
                body,
            },
            state.subscribed(),
        )
        .await;
    // The dataplane audits the searches it answers; answers from cache are
    // data access too, and are sent to its audit log (batched, see `audit`).
    let layer = match resp.headers().get(X_CACHE).map(|v| v.as_bytes()) {
        Some(b"L0-HIT") => Some("L0"),
        Some(b"L1-HIT") => Some("L1"),
        _ => None,
    };
    if let Some(layer) = layer {
        let key = parts
            .extensions
            .get::<crate::auth::Caller>()
            .and_then(|c| c.key.clone());
        let hit = CacheHit {
            user_id: search.user_id.clone(),
            request_id: current_request_id(),
            layer: layer.into(),
        };
        state.audit.record(key, hit).await;
    }
    resp
}

async fn relay_job_status(state: &State, reach: &Reach, resp: Response<Body>) -> Response<Body> {
    let small = resp
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|n| n <= MAX_STATUS_BYTES);
    if resp.status() != StatusCode::OK || !small {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_STATUS_BYTES).await else {
        return Refusal::StatusUnreadable.into_response();
    };
    #[derive(serde::Deserialize)]
    struct Job {
        data: JobData,
    }
    #[derive(serde::Deserialize)]
    struct JobData {
        job_id: String,
        user_id: String,
        state: String,
        updated_at: chrono::DateTime<chrono::Utc>,
    }
    if let Ok(job) = serde_json::from_slice::<Job>(&bytes) {
        let age = chrono::Utc::now() - job.data.updated_at;
        let recent = age.to_std().map_or(true, |a| a <= RECENT_COMPLETION);
        // Once per job: a client polling a finished job must not flush the
        // user's caches on every poll.
        // The dataplane answered, so the job is the caller's: its user is
        // scoped with the caller's tenant.
        let scoped = reach.scope(&job.data.user_id);
        if let Some(user) = scoped
            && job.data.state == "completed"
            && recent
            && state.first_completion_relay(&job.data.job_id)
        {
            // Bump first: a search landing between the two steps then reads
            // L1 under the new generation, never the old answer.
            let mut generation = None;
            if let Some(signals) = &state.signals {
                match signals.bump(&user).await {
                    Ok(g) => generation = Some(g),
                    Err(e) => tracing::debug!(error = %e, "cannot bump generation on relayed completion"),
                }
            }
            let before = generation.unwrap_or(u64::MAX);
            state.cache.l0.invalidate_user_before(&user, before).await;
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erasures_through_the_mem0_routes_are_recognised() {
        assert_eq!(erased_user("/v1/users/kid", None).as_deref(), Some("kid"));
        assert_eq!(
            erased_user("/v2/entities/user/kid%2Da/", None).as_deref(),
            Some("kid-a")
        );
        assert_eq!(
            erased_user("/v1/memories/", Some("user_id=kid&org_id=t")).as_deref(),
            Some("kid")
        );
        assert_eq!(
            erased_user("/v1/memories/", Some("user_id=kid&agent_id=bot")),
            None
        );
        assert_eq!(erased_user("/v1/memories/abc/", None), None);
        assert_eq!(erased_user("/v2/entities/agent/bot/", None), None);
    }

    #[test]
    fn job_status_paths() {
        assert!(job_status_path("/v1/jobs/abc"));
        assert!(job_status_path("/v1/jobs/abc/status"));
        assert!(!job_status_path("/v1/jobs/"));
        assert!(!job_status_path("/v1/jobs/abc/other"));
        assert!(!job_status_path("/v1/search_facts"));
    }

    #[test]
    fn audit_intake_is_not_for_clients() {
        assert!(sidecar_only("/v1/audit/cache_hits"));
        assert!(!sidecar_only("/v1/users/u/facts"));
    }
}
