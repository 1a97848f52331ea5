//! Operating on the caller's tenant's jobs (admin keys): list them by
//! state, and re-drive failed ones once their cause is fixed.

use super::{ApiResult, actor, invalid, ok, path_id};
use crate::app::AppState;
use crate::domain::JobFilter;
use crate::http::auth::Caller;
use crate::http::json::{Body, Params};
use crate::http::views;
use crate::service::job_admin::{MAX_JOBS, Scope};
use axum::extract::{Path, State};
use pika_common::wire::JobState;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    /// A job id: jobs older than it (the listing is newest first).
    #[serde(default)]
    before: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveBody {
    /// Only these failed jobs; absent: every failed job of the tenant, up to `limit`.
    #[serde(default)]
    job_ids: Option<Vec<String>>,
    #[serde(default)]
    limit: Option<usize>,
}

fn limit_of(limit: Option<usize>, default: usize) -> Result<usize, crate::http::error::ApiError> {
    match limit.unwrap_or(default) {
        n @ 1..=MAX_JOBS => Ok(n),
        _ => Err(invalid("limit", format!("must be 1..{MAX_JOBS}"))),
    }
}

/// `GET /v1/admin/jobs?state=failed&limit=50&before=JOB_ID`
pub async fn list_jobs(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Params(params): Params<ListParams>,
) -> ApiResult {
    let job_state = params
        .state
        .as_deref()
        .map(|s| {
            JobState::parse(s)
                .ok_or_else(|| invalid("state", "must be queued, processing, completed or failed"))
        })
        .transpose()?;
    if let Some(b) = &params.before {
        path_id("before", b)?;
    }
    let limit = limit_of(params.limit, 50)?;
    let filter = JobFilter {
        state: job_state,
        before: params.before,
        limit,
        ..JobFilter::default()
    };
    let actor = actor(&caller);
    let jobs = state
        .services
        .job_admin
        .list(Scope::Caller(&actor), filter)
        .await?;
    // A full page may have more behind it: the cursor for the next one.
    let next_before = (jobs.len() == limit)
        .then(|| jobs.last().map(|j| j.job_id.clone()))
        .flatten();
    let jobs: Vec<_> = jobs.into_iter().map(views::job_summary).collect();
    Ok(ok(json!({"jobs": jobs, "next_before": next_before})))
}

/// `POST /v1/admin/jobs/redrive` `{job_ids?, limit?}`
pub async fn redrive_jobs(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Body(body): Body<RedriveBody>,
) -> ApiResult {
    if let Some(ids) = &body.job_ids {
        if ids.is_empty() || ids.len() > MAX_JOBS {
            return Err(invalid("job_ids", format!("must hold 1..{MAX_JOBS} job ids")));
        }
        for id in ids {
            path_id("job_ids", id)?;
        }
    }
    let filter = JobFilter {
        job_ids: body.job_ids,
        limit: limit_of(body.limit, MAX_JOBS)?,
        ..JobFilter::default()
    };
    let actor = actor(&caller);
    let done = state
        .services
        .job_admin
        .redrive(Scope::Caller(&actor), filter)
        .await?;
    Ok(ok(done))
}

/// `POST /v1/admin/jobs/{job_id}/retry`: one failed job; 404 when the
/// caller has no such failed job.
pub async fn retry_job(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(job_id): Path<String>,
) -> ApiResult {
    path_id("job_id", &job_id)?;
    let filter = JobFilter {
        job_ids: Some(vec![job_id.clone()]),
        limit: 1,
        ..JobFilter::default()
    };
    let actor = actor(&caller);
    let done = state
        .services
        .job_admin
        .redrive(Scope::Caller(&actor), filter)
        .await?;
    if done.job_ids.is_empty() {
        return Err(crate::service::ServiceError::NotFound(format!("failed job {job_id}")).into());
    }
    Ok(ok(done))
}
