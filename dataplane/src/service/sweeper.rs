//! The outbox sweeper: jobs are stored before they are published, so a job
//! whose publish was lost (broker down, process killed in between) is still
//! `queued` in the metadata store. Every few seconds this republishes jobs that
//! have stayed `queued` longer than `queue.sweep_after_ms`. A duplicate
//! message is harmless: claiming a job is atomic.

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
