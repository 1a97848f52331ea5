//! Extract, job status and search: the robot's two calls and the poll between.

use super::{ApiResult, actor, invalid, ok};
use crate::app::AppState;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::json::Body;
use crate::http::json::Params;
use crate::http::views;
use crate::service::ServiceError;
use crate::service::search::ProvidedEmbedding;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use pika_common::validate;
use pika_common::wire::{Envelope, ExtractAccepted, JobState, RawExtractRequest, RawSearchRequest};
use serde::Deserialize;
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Debug, Deserialize)]
pub struct ExtractParams {
    #[serde(default)]
    wait: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 200)
        .map(|k| Some(k.to_string()))
        .ok_or_else(|| invalid("Idempotency-Key", "must be 1..200 visible ASCII characters"))
}

fn wait_flag(value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(invalid("wait", format!("must be true or false, got {other:?}"))),
    }
}

pub async fn extract_facts(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Params(params): Params<ExtractParams>,
    headers: HeaderMap,
    Body(raw): Body<RawExtractRequest>,
) -> ApiResult {
    let req = validate::extract(raw).map_err(ServiceError::Validation)?;
    let key = idempotency_key(&headers)?;
    let wait = wait_flag(params.wait.as_deref())?;
    let started = Instant::now();
    let services = &state.services;
    let actor = actor(&caller);
    let (job, _created) = services.extract.accept(&actor, req, key).await?;
    // Past the bound on waiting callers the answer is the 202 (poll the job).
    let slot = wait
        .then(|| {
            services
                .jobs
                .waits
                .try_hold(actor.key_id.as_deref().unwrap_or(""))
        })
        .flatten();
    if slot.is_some() {
        let limit = params
            .timeout_ms
            .unwrap_or(10_000)
            .min(state.config.server.max_wait_ms);
        let job = services
            .jobs
            .wait_for(&actor, &job.job_id, Duration::from_millis(limit))
            .await?;
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
                let message = job.error.unwrap_or_else(|| "extraction failed".into());
                return Err(ServiceError::JobFailed {
                    job_id: job.job_id,
                    message,
                }
                .into());
            }
            JobState::Queued | JobState::Processing => {}
        }
    }
    let status_url = format!("/v1/jobs/{}", job.job_id);
    let body = Envelope::accepted(ExtractAccepted {
        job_id: job.job_id.clone(),
        status_url: status_url.clone(),
        state: job.state,
    });
    let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&status_url) {
        resp.headers_mut().insert("location", v);
    }
    Ok(resp)
}

pub async fn get_job(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(job_id): Path<String>,
) -> ApiResult {
    let job = state.services.jobs.get(&actor(&caller), &job_id).await?;
    Ok(ok(views::job(job)))
}

/// The query vector the sidecar computed, when it sent one.
pub fn provided_embedding(headers: &HeaderMap) -> Result<Option<ProvidedEmbedding>, ApiError> {
    let (Some(v), Some(m)) = (
        headers.get("x-pika-query-embedding"),
        headers.get("x-pika-embedding-model"),
    ) else {
        return Ok(None);
    };
    match (
        v.to_str().ok().and_then(pika_common::vector::decode_f32_base64),
        m.to_str(),
    ) {
        (Some(vector), Ok(model)) => Ok(Some(ProvidedEmbedding {
            model: model.to_string(),
            vector,
        })),
        _ => Err(invalid(
            "X-Pika-Query-Embedding",
            "is not base64 little-endian f32",
        )),
    }
}

pub async fn search_facts(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: HeaderMap,
    Body(raw): Body<RawSearchRequest>,
) -> ApiResult {
    let req = validate::search(raw).map_err(ServiceError::Validation)?;
    let provided = provided_embedding(&headers)?;
    let resp = state
        .services
        .search
        .search(&actor(&caller), &req, provided)
        .await?;
    Ok(ok(resp))
}
