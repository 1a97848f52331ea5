//! `JobQueue` embedded: the jobs table is the queue; this channel only wakes
//! in-process workers. Durability comes from the table: at start-up every
//! `queued` job (and every `processing` one, whose worker died with the
//! previous process) is delivered again, and claiming is an atomic
//! `queued → processing` update, so a duplicate delivery is harmless.
//!
//! The channel is bounded ([`WAKE_UPS`]): when it is full a publish still
//! succeeds (the job is already durable as `queued`) and the outbox sweeper,
//! which runs for this queue too, delivers the job once it has waited
//! `queue.sweep_after_ms`. Memory stays bounded under any backlog; the
//! backlog itself is `queue_depth`, counted in the jobs table.

use crate::ports::{Delivery, JobQueue, MetaStore, StoreError};
use async_trait::async_trait;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};

/// Job ids that may wait in the channel.
pub const WAKE_UPS: usize = 4096;

/// In-process queue over the metadata store.
pub struct EmbeddedQueue {
    tx: mpsc::Sender<String>,
    rx: Mutex<mpsc::Receiver<String>>,
}

/// Queues a wake-up unless the channel is full (the sweeper delivers those).
fn wake(tx: &mpsc::Sender<String>, job_id: String) -> Result<(), StoreError> {
    match tx.try_send(job_id) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(id)) => {
            tracing::debug!(job_id = %id, "wake-up channel full; the sweeper delivers this job");
            Ok(())
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Err(StoreError::unavailable("embedded queue", "closed")),
    }
}

impl EmbeddedQueue {
    /// Creates the queue and re-delivers every unfinished job found in `meta`.
    pub async fn recover(meta: &dyn MetaStore) -> Result<(Self, usize), StoreError> {
        let (tx, rx) = mpsc::channel(WAKE_UPS);
        let requeued = meta.requeue_processing().await?;
        if requeued > 0 {
            tracing::warn!(
                requeued,
                "jobs interrupted by the previous shutdown were requeued"
            );
        }
        let pending = meta.queued_job_ids(WAKE_UPS).await?;
        for id in &pending {
            wake(&tx, id.clone())?;
        }
        Ok((
            EmbeddedQueue {
                tx,
                rx: Mutex::new(rx),
            },
            pending.len(),
        ))
    }
}

#[async_trait]
impl JobQueue for EmbeddedQueue {
    async fn publish(&self, job_id: &str) -> Result<(), StoreError> {
        wake(&self.tx, job_id.to_string())
    }

    async fn next(&self) -> Result<Delivery, StoreError> {
        let id = self
            .rx
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| StoreError::unavailable("embedded queue", "closed"))?;
        let valid = uuid::Uuid::parse_str(&id).is_ok();
        Ok(Delivery {
            job_id: valid.then(|| id.clone()),
            body: id,
            redelivered: false,
            tag: 0,
        })
    }

    async fn ack(&self, _delivery: &Delivery) -> Result<(), StoreError> {
        // The jobs table is the durable record; nothing to acknowledge.
        Ok(())
    }

    async fn retry_later(&self, delivery: &Delivery, delay: Duration) -> Result<(), StoreError> {
        let tx = self.tx.clone();
        let body = delivery.body.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // If the process stops first, start-up recovery delivers the queued job.
            let _ = wake(&tx, body);
        });
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), StoreError> {
        tracing::error!(body = %delivery.body, reason, "job message dead-lettered");
        Ok(())
    }
}
