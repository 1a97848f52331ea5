//! Route handlers: parse and validate, call a service, shape the envelope.

use super::auth::Caller;
use super::error::{ApiError, current_request_id};
use super::json::Body;
use crate::app::AppState;
use crate::domain::{AuditEntry, Job};
use crate::service::search::ProvidedEmbedding;
use crate::service::{ServiceError, ingest, search};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pika_common::validate::{self, check_id};
use pika_common::wire::{
    Envelope, ErrorCode, ExtractAccepted, JobState, JobView, RawExtractRequest, RawSearchRequest,
};
use serde::Deserialize;
use serde_json::json;
use std::time::{Duration, Instant};

type ApiResult = Result<Response, ApiError>;

fn ok<T: serde::Serialize>(data: T) -> Response {
    (StatusCode::OK, Json(Envelope::success(data))).into_response()
}

fn audit_entry(caller: &Caller, action: &str, user_id: Option<&str>, target: Option<&str>) -> AuditEntry {
    AuditEntry {
        key_id: caller.key_id.clone(),
        action: action.to_string(),
        user_id: user_id.map(str::to_string),
        target: target.map(str::to_string),
        request_id: current_request_id(),
    }
}

/// Queues an audit line for a read (batched; see `service::bookkeeping`).
async fn audit(state: &AppState, caller: &Caller, action: &str, user_id: Option<&str>, target: Option<&str>) {
    state
        .bookkeeper
        .audit(audit_entry(caller, action, user_id, target))
        .await;
}

/// Writes an audit line for a destructive or bulk action before answering.
async fn audit_now(
    state: &AppState,
    caller: &Caller,
    action: &str,
    user_id: Option<&str>,
    target: Option<&str>,
) -> Result<(), ApiError> {
    let entry = audit_entry(caller, action, user_id, target);
    state
        .deps
        .meta
        .append_audit(&[entry])
        .await
        .map_err(|e| ApiError::from(ServiceError::Store(e)))
}

fn job_view(job: Job) -> JobView {
    JobView {
        job_id: job.job_id,
        user_id: job.user_id,
        conversation_id: job.conversation_id,
        state: job.state,
        attempts: job.attempts,
        result: job.result,
        error: job.error,
        created_at: job.created_at,
        updated_at: job.updated_at,
    }
}

fn valid_path_id(field: &str, value: &str) -> Result<(), ApiError> {
    check_id(value).map_err(|reason| {
        ApiError::new(ErrorCode::ValidationError, format!("{field}: {reason}"))
            .with_details(json!({"fields": [{"field": field, "reason": reason}]}))
    })
}

#[derive(Debug, Deserialize)]
pub struct ExtractParams {
    #[serde(default)]
    wait: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

pub async fn extract_facts(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Query(params): Query<ExtractParams>,
    headers: HeaderMap,
    Body(raw): Body<RawExtractRequest>,
) -> ApiResult {
    let req = validate::extract(raw).map_err(|e| ApiError::from(ServiceError::Validation(e)))?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 200)
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::ValidationError,
                        "Idempotency-Key must be 1..200 visible ASCII characters",
                    )
                })?;
            Some(k.to_string())
        }
    };
    let wait = match params.wait.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::ValidationError,
                format!("wait must be true or false, got {other:?}"),
            ));
        }
    };
    let started = Instant::now();
    let user_id = req.user_id.clone();
    let (job, _created) = ingest::accept(&state, req, key).await?;
    audit(&state, &caller, "extract", Some(&user_id), Some(&job.job_id)).await;
    if wait {
        let limit = params
            .timeout_ms
            .unwrap_or(10_000)
            .min(state.config.server.max_wait_ms);
        let job = ingest::wait_for(&state, &job.job_id, Duration::from_millis(limit)).await?;
        match job.state {
            JobState::Completed => {
                let r = job.result.unwrap_or_default();
                return Ok(ok(json!({
                    "job_id": job.job_id,
                    "facts_count": r.facts_count,
                    "fact_ids": r.fact_ids,
                    "added": r.added,
                    "updated": r.updated,
                    "unchanged": r.unchanged,
                    "processing_time_ms": started.elapsed().as_millis() as u64,
                })));
            }
            JobState::Failed => {
                return Err(ApiError::new(
                    ErrorCode::ExtractionFailed,
                    job.error.unwrap_or_else(|| "extraction failed".into()),
                )
                .with_details(json!({"job_id": job.job_id})));
            }
            JobState::Queued | JobState::Processing => {}
        }
    }
    let status_url = format!("/v1/jobs/{}", job.job_id);
    let mut resp = (
        StatusCode::ACCEPTED,
        Json(Envelope::accepted(ExtractAccepted {
            job_id: job.job_id.clone(),
            status_url: status_url.clone(),
            state: job.state,
        })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&status_url) {
        resp.headers_mut().insert("location", v);
    }
    Ok(resp)
}

pub async fn get_job(State(state): State<AppState>, Path(job_id): Path<String>) -> ApiResult {
    let job = state
        .deps
        .meta
        .get_job(&job_id)
        .await
        .map_err(ServiceError::from)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("job {job_id} not found")))?;
    Ok(ok(job_view(job)))
}

pub async fn search_facts(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: HeaderMap,
    Body(raw): Body<RawSearchRequest>,
) -> ApiResult {
    let req = validate::search(raw).map_err(|e| ApiError::from(ServiceError::Validation(e)))?;
    let provided = match (
        headers.get("x-pika-query-embedding"),
        headers.get("x-pika-embedding-model"),
    ) {
        (Some(v), Some(m)) => match (
            v.to_str().ok().and_then(pika_common::vector::decode_f32_base64),
            m.to_str(),
        ) {
            (Some(vector), Ok(model)) => Some(ProvidedEmbedding {
                model: model.to_string(),
                vector,
            }),
            _ => {
                return Err(ApiError::new(
                    ErrorCode::ValidationError,
                    "X-Pika-Query-Embedding is not base64 little-endian f32",
                ));
            }
        },
        _ => None,
    };
    let resp = search::search(&state, &req, provided).await?;
    audit(&state, &caller, "search", Some(&req.user_id), None).await;
    Ok(ok(resp))
}

#[derive(Debug, Deserialize)]
pub struct PageParams {
    cursor: Option<String>,
    limit: Option<usize>,
    /// `fact` (default), `episode` or `all`.
    kind: Option<String>,
}

pub async fn list_facts(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(user_id): Path<String>,
    Query(page): Query<PageParams>,
) -> ApiResult {
    valid_path_id("user_id", &user_id)?;
    let limit = page.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::ValidationError,
            "limit must be from 1 to 200",
        ));
    }
    let kind = match page.kind.as_deref() {
        None | Some("fact") => Some(crate::domain::MemoryKind::Fact),
        Some("episode") => Some(crate::domain::MemoryKind::Episode),
        Some("all") => None,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::ValidationError,
                "kind must be fact, episode or all",
            ));
        }
    };
    let p = state
        .deps
        .meta
        .list_facts(&user_id, page.cursor.as_deref(), limit, kind)
        .await
        .map_err(ServiceError::from)?;
    audit(&state, &caller, "list_facts", Some(&user_id), None).await;
    Ok(ok(
        json!({"user_id": user_id, "facts": p.facts, "next_cursor": p.next_cursor}),
    ))
}

pub async fn get_fact(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(fact_id): Path<String>,
) -> ApiResult {
    let fact = state
        .deps
        .meta
        .get_fact(&fact_id)
        .await
        .map_err(ServiceError::from)?
        .filter(|f| f.status != crate::domain::FactStatus::Deleted)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("fact {fact_id} not found")))?;
    audit(&state, &caller, "get_fact", Some(&fact.user_id), Some(&fact_id)).await;
    Ok(ok(fact))
}

pub async fn fact_history(State(state): State<AppState>, Path(fact_id): Path<String>) -> ApiResult {
    let fact = state
        .deps
        .meta
        .get_fact(&fact_id)
        .await
        .map_err(ServiceError::from)?;
    if fact.is_none() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("fact {fact_id} not found"),
        ));
    }
    let history = state
        .deps
        .meta
        .fact_history(&fact_id)
        .await
        .map_err(ServiceError::from)?;
    Ok(ok(json!({"fact_id": fact_id, "fact": fact, "history": history})))
}

pub async fn delete_fact(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(fact_id): Path<String>,
) -> ApiResult {
    let deps = &state.deps;
    let forget = crate::service::forget::Forget {
        meta: deps.meta.as_ref(),
        vectors: deps.vectors.as_ref(),
        graph: deps.graph.as_ref(),
        signals: deps.signals.as_ref(),
    };
    let deleted = forget.delete_fact(&fact_id).await?;
    audit_now(
        &state,
        &caller,
        "delete_fact",
        Some(&deleted.fact.user_id),
        Some(&fact_id),
    )
    .await?;
    Ok(ok(
        json!({"fact_id": fact_id, "deleted": true, "removed": deleted.removed}),
    ))
}

pub async fn delete_user(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(user_id): Path<String>,
) -> ApiResult {
    valid_path_id("user_id", &user_id)?;
    let deps = &state.deps;
    // Side stores first: if one fails, the metadata still lists the facts and a retry finishes.
    deps.vectors
        .delete_user(&user_id)
        .await
        .map_err(ServiceError::from)?;
    deps.graph
        .delete_user(&user_id)
        .await
        .map_err(ServiceError::from)?;
    let removed = deps
        .meta
        .delete_user(&user_id)
        .await
        .map_err(ServiceError::from)?;
    let _ = deps.signals.bump(&user_id).await;
    audit_now(&state, &caller, "delete_user", Some(&user_id), None).await?;
    Ok(ok(json!({"user_id": user_id, "facts_deleted": removed})))
}

pub async fn export_user(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(user_id): Path<String>,
) -> ApiResult {
    valid_path_id("user_id", &user_id)?;
    let (facts, jobs) = state
        .deps
        .meta
        .export_user(&user_id)
        .await
        .map_err(ServiceError::from)?;
    let history = state
        .deps
        .meta
        .user_history(&user_id)
        .await
        .map_err(ServiceError::from)?;
    audit_now(&state, &caller, "export_user", Some(&user_id), None).await?;
    let conversations: Vec<_> = jobs.into_iter().map(|j| json!({"job_id": j.job_id, "request": j.request, "state": j.state, "created_at": j.created_at})).collect();
    Ok(ok(
        json!({"user_id": user_id, "facts": facts, "history": history, "conversations": conversations}),
    ))
}

async fn check<F, Fut>(name: &str, f: F) -> serde_json::Value
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::ports::StoreError>>,
{
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(2), f()).await;
    let ms = (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    match r {
        Ok(Ok(())) => json!({"name": name, "status": "up", "latency_ms": ms}),
        Ok(Err(e)) => json!({"name": name, "status": "down", "latency_ms": ms, "error": e.to_string()}),
        Err(_) => json!({"name": name, "status": "down", "latency_ms": ms, "error": "timed out"}),
    }
}

async fn dependency_report(state: &AppState) -> (bool, serde_json::Value) {
    let d = &state.deps;
    let (meta, vectors, graph) = tokio::join!(
        check("metadata", || d.meta.ping()),
        check("vectors", || d.vectors.ping()),
        check("graph", || d.graph.ping()),
    );
    let embed = json!({"name": "embedder", "status": "up", "model": d.embedder.model_id(), "dimension": d.embedder.dimension()});
    let mut checks = vec![meta, vectors, graph, embed];
    for b in &d.breakers {
        let circuit = b.state().as_str();
        match checks.iter_mut().find(|c| c["name"] == b.name()) {
            Some(c) => c["circuit"] = json!(circuit),
            // Dependencies without a probe of their own (Redis) report their breaker.
            None => checks.push(json!({
                "name": b.name(),
                "status": if b.state() == crate::resilience::BreakerState::Open { "down" } else { "up" },
                "circuit": circuit,
            })),
        }
    }
    for c in &checks {
        let name = c["name"].as_str().unwrap_or("");
        state
            .metrics
            .dependency_up
            .with_label_values(&[name])
            .set(i64::from(c["status"] == "up"));
    }
    let critical_up = checks[0]["status"] == "up";
    let all_up = checks.iter().all(|c| c["status"] == "up");
    let status = if all_up {
        "healthy"
    } else if critical_up {
        "degraded"
    } else {
        "unhealthy"
    };
    (
        critical_up,
        json!({"status": status, "timestamp": chrono::Utc::now(), "extractor": d.extractor.name(), "checks": checks}),
    )
}

pub async fn health(State(state): State<AppState>) -> Response {
    let (critical_up, report) = dependency_report(&state).await;
    let code = if critical_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report)).into_response()
}

pub async fn live() -> Response {
    (StatusCode::OK, Json(json!({"status": "alive"}))).into_response()
}

pub async fn ready(State(state): State<AppState>) -> Response {
    health(State(state)).await
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut resp = state.metrics.render().into_response();
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}
