//! Mem0 route handlers: each parses the Mem0 shape (`wire`), calls one of
//! our services, and answers in Mem0's shape. Errors are our `ApiError`s;
//! the router turns them into `{"detail": ...}`.

use super::wire;
use crate::app::AppState;
use crate::http::auth::Caller;
use crate::http::handlers::{ApiResult, actor};
use crate::http::json::Body;
use crate::service::ServiceError;
use crate::service::facts::PageQuery;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use pika_common::validate::ValidationErrors;
use pika_common::wire::JobState;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// Memories read for one paginated listing at most (the Mem0 listing is
/// page-numbered with a total `count`; ours is cursor-paged).
const LIST_CAP: usize = 10_000;
const MAX_PAGE_SIZE: usize = 200;

fn bad(e: ValidationErrors) -> crate::http::error::ApiError {
    ServiceError::Validation(e).into()
}

fn invalid(field: &str, reason: &str) -> crate::http::error::ApiError {
    bad(ValidationErrors::one(field, reason))
}

/// `GET /v1/ping/`: the clients' constructor check. The 2.x client needs
/// `org_id` and `project_id` (its project manager refuses to start without
/// them): both are the key's tenant. Clients that send them back are not
/// scoped by them (the key is).
pub async fn ping(axum::Extension(caller): axum::Extension<Caller>) -> ApiResult {
    let tenant = caller.reach.tenant_id;
    Ok(Json(json!({
        "status": "ok",
        "message": "PIKA Memory (Mem0-compatible API)",
        "user_email": null,
        "org_id": tenant,
        "project_id": tenant,
    }))
    .into_response())
}

/// `POST /v3/memories/add/`: asynchronous unless `async_mode: false`.
pub async fn add_v3(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Body(body): Body<Value>,
) -> ApiResult {
    add(state, caller, body, true).await
}

/// `POST /v1/memories/` (1.x and 0.1.x): synchronous unless `async_mode: true`.
pub async fn add_v1(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Body(body): Body<Value>,
) -> ApiResult {
    add(state, caller, body, false).await
}

async fn add(state: AppState, caller: Caller, body: Value, default_async: bool) -> ApiResult {
    let conversation_id = format!("mem0-{}", uuid::Uuid::now_v7().simple());
    let add = wire::add(&body, conversation_id, default_async).map_err(bad)?;
    let services = &state.services;
    let actor = actor(&caller);
    let (job, _) = services.extract.accept(&actor, add.request, None).await?;
    let pending = || {
        Json(json!({
            "message": "Memory processing has been queued for background execution",
            "status": "PENDING",
            "event_id": job.job_id,
        }))
        .into_response()
    };
    if add.asynchronous {
        return Ok(pending());
    }
    let limit = Duration::from_millis(state.config.server.max_wait_ms);
    let done = services.jobs.wait_for(&actor, &job.job_id, limit).await?;
    match done.state {
        JobState::Completed => {
            let mut results = Vec::new();
            for id in done.result.map(|r| r.fact_ids).unwrap_or_default() {
                if let Ok(f) = services.facts.get(&actor, &id).await {
                    let event = if f.supersedes.is_some() { "UPDATE" } else { "ADD" };
                    results.push(json!({"id": f.fact_id, "memory": f.content, "event": event}));
                }
            }
            Ok(Json(json!({ "results": results })).into_response())
        }
        JobState::Failed => Err(ServiceError::JobFailed {
            job_id: done.job_id,
            message: done.error.unwrap_or_else(|| "extraction failed".into()),
        }
        .into()),
        JobState::Queued | JobState::Processing => Ok(pending()),
    }
}

/// How a search answers: v3 wraps the list, v1 and v2 return it bare.
#[derive(Clone, Copy)]
pub enum Shape {
    Wrapped,
    Bare,
}

async fn search(state: AppState, caller: Caller, body: Value, shape: Shape) -> ApiResult {
    let req = wire::search(&body).map_err(bad)?;
    let resp = state.services.search.search(&actor(&caller), &req, None).await?;
    let results: Vec<_> = resp
        .results
        .into_iter()
        .map(|h| wire::hit(h, &req.user_id))
        .collect();
    Ok(match shape {
        Shape::Wrapped => Json(json!({ "results": results })).into_response(),
        Shape::Bare => Json(results).into_response(),
    })
}

/// `POST /v3/memories/search/`.
pub async fn search_v3(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Body(body): Body<Value>,
) -> ApiResult {
    search(state, caller, body, Shape::Wrapped).await
}

/// `POST /v2/memories/search/` and `POST /v1/memories/search/` (bare lists).
pub async fn search_bare(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Body(body): Body<Value>,
) -> ApiResult {
    search(state, caller, body, Shape::Bare).await
}

#[derive(Debug, Deserialize)]
pub struct PageParams {
    page: Option<usize>,
    page_size: Option<usize>,
}

/// Every memory of the body's user, newest first, up to [`LIST_CAP`].
async fn all_memories(
    state: &AppState,
    caller: &Caller,
    obj: &serde_json::Map<String, Value>,
) -> Result<Vec<crate::domain::Fact>, crate::http::error::ApiError> {
    let user = wire::user_of(obj).map_err(bad)?;
    let user = user
        .as_str()
        .ok_or_else(|| invalid("user_id", "must be a string"))?
        .to_string();
    pika_common::validate::check_id(&user).map_err(|r| invalid("user_id", &r))?;
    let actor = actor(caller);
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = state
            .services
            .facts
            .list(
                &actor,
                PageQuery {
                    user_id: &user,
                    cursor: cursor.as_deref(),
                    limit: MAX_PAGE_SIZE,
                    kind: None,
                },
            )
            .await?;
        out.extend(page.facts);
        match page.next_cursor {
            Some(c) if out.len() < LIST_CAP => cursor = Some(c),
            _ => break,
        }
    }
    out.truncate(LIST_CAP);
    Ok(out)
}

/// `POST /v3/memories/?page=&page_size=`: `{count, next, previous, results}`.
pub async fn list_v3(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Query(params): Query<PageParams>,
    Body(body): Body<Value>,
) -> ApiResult {
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("body", "must be a JSON object"))?;
    paged(&state, &caller, obj, params, "/v3/memories/").await
}

async fn paged(
    state: &AppState,
    caller: &Caller,
    obj: &serde_json::Map<String, Value>,
    params: PageParams,
    path: &str,
) -> ApiResult {
    let page = params.page.unwrap_or(1);
    let size = params.page_size.unwrap_or(100);
    if page == 0 {
        return Err(invalid("page", "must be at least 1"));
    }
    if !(1..=MAX_PAGE_SIZE).contains(&size) {
        return Err(invalid("page_size", "must be 1..200"));
    }
    let all = all_memories(state, caller, obj).await?;
    let count = all.len();
    let start = (page - 1).saturating_mul(size).min(count);
    let end = (start + size).min(count);
    let link = |p: usize| format!("{path}?page={p}&page_size={size}");
    let results: Vec<_> = all[start..end].iter().cloned().map(wire::memory).collect();
    Ok(Json(json!({
        "count": count,
        "next": (end < count).then(|| link(page + 1)),
        "previous": (page > 1 && start > 0).then(|| link(page - 1)),
        "results": results,
    }))
    .into_response())
}

/// `POST /v2/memories/` (1.x get_all): a bare list, or with `page` and
/// `page_size` the paged answer of v3.
pub async fn list_v2(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Query(params): Query<PageParams>,
    Body(body): Body<Value>,
) -> ApiResult {
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("body", "must be a JSON object"))?;
    if params.page.is_some() || params.page_size.is_some() {
        return paged(&state, &caller, obj, params, "/v2/memories/").await;
    }
    let all = all_memories(&state, &caller, obj).await?;
    Ok(Json(all.into_iter().map(wire::memory).collect::<Vec<_>>()).into_response())
}

/// `GET /v1/memories/?user_id=` (0.1.x get_all): a bare list.
pub async fn list_v1(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let mut obj = serde_json::Map::new();
    if let Some(u) = query.get("user_id") {
        obj.insert("user_id".into(), Value::String(u.clone()));
    }
    let all = all_memories(&state, &caller, &obj).await?;
    Ok(Json(all.into_iter().map(wire::memory).collect::<Vec<_>>()).into_response())
}

/// `GET /v1/memories/{id}/`.
pub async fn get_memory(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult {
    let fact = state.services.facts.get(&actor(&caller), &id).await?;
    Ok(Json(wire::memory(fact)).into_response())
}

/// `GET /v1/memories/{id}/history/`.
pub async fn history(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult {
    let (_, entries) = state.services.facts.history(&actor(&caller), &id).await?;
    let rows: Vec<_> = entries
        .into_iter()
        .enumerate()
        .map(|(i, h)| wire::history_row(&id, i, h))
        .collect();
    Ok(Json(rows).into_response())
}

/// `DELETE /v1/memories/{id}/`.
pub async fn delete_memory(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult {
    state.services.facts.delete(&actor(&caller), &id).await?;
    Ok(Json(json!({"message": "Memory deleted successfully!"})).into_response())
}

/// `DELETE /v1/memories/?user_id=`: every memory of the user, which for
/// PIKA is the user's erasure (conversations and caches too).
pub async fn delete_all(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let Some(user) = query.get("user_id").filter(|u| !u.is_empty()) else {
        return Err(invalid(
            "user_id",
            "is required (PIKA deletes one user's memories at a time)",
        ));
    };
    pika_common::validate::check_id(user).map_err(|r| invalid("user_id", &r))?;
    state.services.users.delete(&actor(&caller), user).await?;
    Ok(Json(json!({"message": "Memories deleted successfully!"})).into_response())
}
