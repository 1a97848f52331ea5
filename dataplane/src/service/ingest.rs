//! Accepting an extract request: store a `queued` job (the conversation with
//! it) and publish its id. The job row is written before publishing, so an
//! accepted job survives a crash between the two (the queue recovers queued
//! jobs at start-up).

use crate::app::AppState;
use crate::domain::Job;
use crate::ports::NewJob;
use crate::service::ServiceError;
use pika_common::wire::{ExtractRequest, JobState};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Default idempotency key: user, conversation and a hash of the turns.
pub fn default_idempotency_key(req: &ExtractRequest) -> String {
    let mut h = Sha256::new();
    for m in &req.conversation {
        h.update(serde_json::to_vec(&m.role).unwrap_or_default());
        h.update([0]);
        h.update(m.content.as_bytes());
        h.update([0]);
    }
    format!(
        "{}/{}/{}",
        req.user_id,
        req.conversation_id,
        hex::encode(&h.finalize()[..16])
    )
}

/// Stores and publishes the job; returns it and whether it is new.
pub async fn accept(
    state: &AppState,
    req: ExtractRequest,
    idempotency_key: Option<String>,
) -> Result<(Job, bool), ServiceError> {
    let key = match idempotency_key {
        // Scope client keys by user so two tenants' keys can never collide.
        Some(k) => format!("{}/client/{k}", req.user_id),
        None => default_idempotency_key(&req),
    };
    let new = NewJob {
        job_id: uuid::Uuid::now_v7().to_string(),
        idempotency_key: key,
        request: req,
    };
    let (job, created) = state.deps.meta.create_job(new).await?;
    if created {
        state.metrics.queue_depth.inc();
        // If publishing fails the job stays queued in the store and is recovered.
        if let Err(e) = state.deps.queue.publish(&job.job_id).await {
            tracing::error!(job_id = %job.job_id, error = %e, "publish failed; job stays queued for recovery");
        }
    }
    Ok((job, created))
}

/// Waits (bounded) until the job reaches a final state; returns its latest row.
pub async fn wait_for(state: &AppState, job_id: &str, timeout: Duration) -> Result<Job, ServiceError> {
    let mut done = state.job_done.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let job = state
            .deps
            .meta
            .get_job(job_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("job {job_id}")))?;
        if matches!(job.state, JobState::Completed | JobState::Failed)
            || tokio::time::Instant::now() >= deadline
        {
            return Ok(job);
        }
        // Wake on any completion (or every 250 ms, for workers in other processes).
        let _ = tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + Duration::from_millis(250)),
            async {
                loop {
                    match done.recv().await {
                        Ok(id) if id == job_id => break,
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(_) => break,
                    }
                }
            },
        )
        .await;
    }
}
