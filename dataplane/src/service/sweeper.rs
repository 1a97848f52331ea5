//! The outbox sweeper: jobs are stored before they are published, so a job
//! whose publish was lost (broker down, process killed in between) is still
//! `queued` in the metadata store. Every few seconds this republishes jobs that
//! have stayed `queued` longer than `queue.sweep_after_ms`. A duplicate
//! message is harmless: claiming a job is atomic.
//!
//! It also queues again `processing` jobs whose lease ran out (their worker
//! died, hung, or could not record a failure: see `service::leases`) and
//! publishes them at once.

use crate::metrics::Metrics;
use crate::ports::{JobQueue, MetaStore};
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const BATCH: usize = 500;

/// Runs until shutdown.
pub async fn run(
    meta: Arc<dyn MetaStore>,
    queue: Arc<dyn JobQueue>,
    metrics: Arc<Metrics>,
    sweep_after_ms: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let after = Duration::from_millis(sweep_after_ms.max(1));
    let period = (after / 3).clamp(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep(period) => {}
        }
        if *shutdown.borrow() {
            break;
        }
        match meta.requeue_expired_leases(Utc::now(), BATCH).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::warn!(requeued = ids.len(), "jobs whose lease ran out were queued again");
                metrics
                    .jobs_requeued
                    .with_label_values(&["lease_expired"])
                    .inc_by(ids.len() as u64);
                for id in &ids {
                    if let Err(e) = queue.publish(id).await {
                        // Queued in the store: the next sweeps publish them.
                        tracing::warn!(error = %e, "sweeper cannot publish; will try again");
                        break;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweeper cannot requeue expired leases"),
        }
        let cutoff = Utc::now() - chrono::Duration::from_std(after).unwrap_or_default();
        match meta.stale_queued_job_ids(cutoff, BATCH).await {
            Ok(ids) => {
                let mut republished = 0;
                for id in &ids {
                    match queue.publish(id).await {
                        Ok(()) => republished += 1,
                        Err(e) => {
                            tracing::warn!(error = %e, "sweeper cannot publish; will try again");
                            break;
                        }
                    }
                }
                if republished > 0 {
                    tracing::info!(republished, "republished jobs left queued");
                }
            }
            Err(e) => tracing::warn!(error = %e, "sweeper cannot read queued jobs"),
        }
    }
}
