//! Mem0 route handlers: each parses the Mem0 shape (`wire`), calls one of
//! our services, and answers in Mem0's shape. Errors are our `ApiError`s;
//! the router turns them into `{"detail": ...}`.

use super::wire;
use crate::app::AppState;
use crate::http::auth::Caller;
use crate::http::handlers::{ApiResult, actor};
use crate::http::json::Body;
use crate::http::json::Params;
use crate::service::ServiceError;
use crate::service::facts::PageQuery;
use crate::service::memories::Rewrite;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
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

async fn search(state: AppState, caller: Caller, headers: HeaderMap, body: Value, shape: Shape) -> ApiResult {
    let req = wire::search(&body).map_err(bad)?;
    // The sidecar embeds the query once and sends it along, as for ours.
    let provided = crate::http::handlers::memory::provided_embedding(&headers)?;
    let resp = state
        .services
        .search
        .search(&actor(&caller), &req, provided)
        .await?;
    let results: Vec<_> = resp
        .results
        .into_iter()
        .map(|h| wire::hit(h, &req.user_id))
        .collect();
    let mut answer = match shape {
        Shape::Wrapped => Json(json!({ "results": results })).into_response(),
        Shape::Bare => Json(results).into_response(),
    };
    answer.headers_mut().insert(
        pika_common::mem0::DEGRADED_HEADER,
        axum::http::HeaderValue::from_static(if resp.degraded { "true" } else { "false" }),
    );
    Ok(answer)
}

/// `POST /v3/memories/search/`.
pub async fn search_v3(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: HeaderMap,
    Body(body): Body<Value>,
) -> ApiResult {
    search(state, caller, headers, body, Shape::Wrapped).await
}

/// `POST /v2/memories/search/` and `POST /v1/memories/search/` (bare lists).
pub async fn search_bare(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: HeaderMap,
    Body(body): Body<Value>,
) -> ApiResult {
    search(state, caller, headers, body, Shape::Bare).await
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
    let who = wire::selector(obj).map_err(bad)?;
    let user = who
        .user
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
        out.extend(
            page.facts
                .into_iter()
                .filter(|f| who.scope.admits(f.attrs.as_ref())),
        );
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
    Params(params): Params<PageParams>,
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
    Params(params): Params<PageParams>,
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

/// `GET /v1/memories/?user_id=[&agent_id=...]` (0.1.x get_all): a bare list.
pub async fn list_v1(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Params(query): Params<HashMap<String, String>>,
) -> ApiResult {
    let obj: serde_json::Map<String, Value> = ["user_id", "agent_id", "run_id", "app_id"]
        .into_iter()
        .filter_map(|k| query.get(k).map(|v| (k.to_string(), Value::String(v.clone()))))
        .collect();
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

/// `DELETE /v1/memories/?user_id=[&agent_id=&run_id=&app_id=]`: every
/// memory of the user, which for PIKA is the user's erasure (conversations
/// and caches too); with an agent, run or app, only the user's memories in
/// that scope.
pub async fn delete_all(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Params(query): Params<HashMap<String, String>>,
) -> ApiResult {
    // A narrowing this route cannot read must never widen into the user's
    // erasure: anything but the entity ids (and the tenant ids old clients
    // send back) is refused, as is an empty id.
    let mut errs = ValidationErrors::default();
    let mut body = serde_json::Map::new();
    for (k, v) in query {
        match k.as_str() {
            "org_id" | "project_id" => {}
            "user_id" | "agent_id" | "run_id" | "app_id" if v.is_empty() => errs.push(k, "must not be empty"),
            "user_id" | "agent_id" | "run_id" | "app_id" => {
                body.insert(k, Value::String(v));
            }
            _ => errs.push(
                k,
                "is not supported here (delete by user_id, and optionally agent_id, run_id, app_id)",
            ),
        }
    }
    if !errs.0.is_empty() {
        return Err(bad(errs));
    }
    let who = wire::selector(&body).map_err(bad)?;
    let user = who.user.as_str().unwrap_or_default().to_string();
    pika_common::validate::check_id(&user).map_err(|r| invalid("user_id", &r))?;
    if who.scope.is_empty() {
        state.services.users.delete(&actor(&caller), &user).await?;
        return Ok(Json(json!({"message": "Memories deleted successfully!"})).into_response());
    }
    let mut obj = serde_json::Map::new();
    obj.insert("user_id".into(), Value::String(user));
    for (k, v) in [
        ("agent_id", &who.scope.agent_id),
        ("run_id", &who.scope.run_id),
        ("app_id", &who.scope.app_id),
    ] {
        if let Some(v) = v {
            obj.insert(k.into(), Value::String(v.clone()));
        }
    }
    let memories = all_memories(&state, &caller, &obj).await?;
    let actor = actor(&caller);
    for m in &memories {
        state.services.facts.delete(&actor, &m.fact_id).await?;
    }
    Ok(Json(json!({
        "message": format!("{} memories deleted successfully!", memories.len())
    }))
    .into_response())
}

/// Mem0's update body (`text`, `metadata`); `timestamp` and
/// `expiration_date` are refused by name (PIKA keeps when a memory was
/// made, and expiry is the tenant's retention).
fn rewrite_of(obj: &serde_json::Map<String, Value>) -> Result<Rewrite, crate::http::error::ApiError> {
    let mut errs = ValidationErrors::default();
    let text = match obj.get("text") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => {
            let n = t.trim().chars().count();
            if n == 0 || n > pika_common::validate::MAX_MESSAGE_CHARS {
                errs.push("text", "must be 1..5000 characters");
            }
            Some(t.clone())
        }
        Some(_) => {
            errs.push("text", "must be a string");
            None
        }
    };
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => None,
        Some(m @ Value::Object(_)) if pika_common::mem0::metadata_fits(m) => Some(m.clone()),
        Some(Value::Object(_)) => {
            errs.push("metadata", "must be at most 16 KiB as JSON");
            None
        }
        Some(_) => {
            errs.push("metadata", "must be an object");
            None
        }
    };
    for field in ["timestamp", "expiration_date"] {
        if obj.get(field).is_some_and(|v| !v.is_null()) {
            errs.push(field, "is not supported by PIKA");
        }
    }
    if text.is_none() && metadata.is_none() && errs.0.is_empty() {
        errs.push("text", "text or metadata is required");
    }
    if !errs.0.is_empty() {
        return Err(bad(errs));
    }
    Ok(Rewrite { text, metadata })
}

/// `PUT /v1/memories/{id}/`: the memory with its new text and/or metadata.
pub async fn update_memory(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
    Body(body): Body<Value>,
) -> ApiResult {
    let obj = body
        .as_object()
        .ok_or_else(|| invalid("body", "must be a JSON object"))?;
    let change = rewrite_of(obj)?;
    let fact = state
        .services
        .memories
        .update(&actor(&caller), &id, change)
        .await?;
    Ok(Json(wire::memory(fact)).into_response())
}

/// Most memories one batch call may name (Mem0's limit).
const MAX_BATCH: usize = 1000;

/// One entry of a batch body: the memory id and the entry as sent.
type BatchEntry = (String, serde_json::Map<String, Value>);

/// The `memories` list of a batch body: each entry's `memory_id` and the
/// entry itself; every entry is checked before anything is written.
fn batch_of(body: &Value) -> Result<Vec<BatchEntry>, crate::http::error::ApiError> {
    let items = body
        .get("memories")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("memories", "must be a list"))?;
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(invalid("memories", "must hold 1..1000 entries"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let obj = item
                .as_object()
                .ok_or_else(|| invalid(&format!("memories[{i}]"), "must be an object"))?;
            let id = obj
                .get("memory_id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty() && id.len() <= 100)
                .ok_or_else(|| invalid(&format!("memories[{i}].memory_id"), "is required"))?;
            Ok((id.to_string(), obj.clone()))
        })
        .collect()
}

/// `PUT /v1/batch/`: up to 1000 updates. All are validated, and every
/// memory is looked up, before the first is written.
pub async fn batch_update(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Body(body): Body<Value>,
) -> ApiResult {
    let entries = batch_of(&body)?;
    let actor = actor(&caller);
    let mut changes = Vec::with_capacity(entries.len());
    for (id, obj) in &entries {
        changes.push((id, rewrite_of(obj)?));
    }
    // Only current memories can be rewritten: an old version (superseded)
    // is refused here, before anything is written.
    for (id, _) in &changes {
        let f = state.services.facts.get(&actor, id).await?;
        if f.status != crate::domain::FactStatus::Active {
            return Err(ServiceError::NotFound(format!("memory {id}")).into());
        }
    }
    for (id, change) in changes {
        state.services.memories.update(&actor, id, change).await?;
    }
    Ok(Json(json!({"message": format!("Successfully updated {} memories", entries.len())})).into_response())
}

/// `DELETE /v1/batch/`: up to 1000 deletions, every memory looked up first.
pub async fn batch_delete(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Body(body): Body<Value>,
) -> ApiResult {
    let entries = batch_of(&body)?;
    let actor = actor(&caller);
    for (id, _) in &entries {
        state.services.facts.get(&actor, id).await?;
    }
    for (id, _) in &entries {
        state.services.facts.delete(&actor, id).await?;
    }
    Ok(Json(json!({"message": format!("Successfully deleted {} memories", entries.len())})).into_response())
}

/// `GET /v1/entities/`: the users of the key's tenant that hold memories.
/// Agents, runs and apps are not listed: in PIKA they are attributes of a
/// user's memories, not owners of their own.
pub async fn entities(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> ApiResult {
    let users = state.services.users.list(&actor(&caller), LIST_CAP).await?;
    let tenant = caller.reach.tenant_id.clone();
    let results: Vec<Value> = users
        .into_iter()
        .map(|u| {
            let name = pika_common::tenancy::split_scoped(&u.user_id).1.to_string();
            json!({
                "id": name,
                "name": name,
                "type": "user",
                "total_memories": u.memories,
                "owner": null,
                "organization": tenant,
                "metadata": null,
                "created_at": u.first_at,
                "updated_at": u.last_at,
            })
        })
        .collect();
    Ok(Json(json!({
        "count": results.len(),
        "next": null,
        "previous": null,
        "results": results,
    }))
    .into_response())
}

/// `DELETE /v2/entities/{type}/{name}/`: a user's erasure. Agents, runs and
/// apps own nothing in PIKA: delete their memories with
/// `DELETE /v1/memories/?user_id=&agent_id=`.
pub async fn delete_entity(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path((kind, name)): Path<(String, String)>,
) -> ApiResult {
    if kind != "user" {
        return Err(invalid(
            "type",
            "only user entities can be deleted (PIKA memories belong to users; delete a user's memories of an agent, run or app with DELETE /v1/memories/?user_id=&agent_id=)",
        ));
    }
    pika_common::validate::check_id(&name).map_err(|r| invalid("name", &r))?;
    state.services.users.delete(&actor(&caller), &name).await?;
    Ok(Json(json!({"message": "Entity deleted successfully!"})).into_response())
}

/// `POST /v1/feedback/`: recorded in the audit log (the memory must be the
/// caller's); the reason text is not kept, as it may name the child.
pub async fn feedback(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Body(body): Body<Value>,
) -> ApiResult {
    let id = body
        .get("memory_id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid("memory_id", "is required"))?;
    let verdict = match body.get("feedback") {
        None | Some(Value::Null) => None,
        Some(Value::String(f)) if ["POSITIVE", "NEGATIVE", "VERY_NEGATIVE"].contains(&f.as_str()) => {
            Some(f.clone())
        }
        Some(_) => {
            return Err(invalid(
                "feedback",
                "must be POSITIVE, NEGATIVE, VERY_NEGATIVE or null",
            ));
        }
    };
    let reason = body.get("feedback_reason").cloned().unwrap_or(Value::Null);
    if !(reason.is_null() || reason.as_str().is_some_and(|r| r.chars().count() <= 1000)) {
        return Err(invalid(
            "feedback_reason",
            "must be a string of at most 1000 characters",
        ));
    }
    state
        .services
        .facts
        .feedback(&actor(&caller), id, verdict.as_deref())
        .await?;
    Ok(Json(json!({
        "id": uuid::Uuid::now_v7().to_string(),
        "memory_id": id,
        "feedback": verdict,
        "feedback_reason": reason,
    }))
    .into_response())
}
