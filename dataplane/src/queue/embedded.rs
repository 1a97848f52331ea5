//! `JobQueue` embedded: the jobs table is the queue; this channel only wakes
//! in-process workers. Durability comes from the table: at start-up every
//! `queued` job (and every `processing` one, whose worker died with the
//! previous process) is delivered again, and claiming is an atomic
//! `queued → processing` update, so a duplicate delivery is harmless.

use crate::ports::{Delivery, JobQueue, MetaStore, StoreError};
use async_trait::async_trait;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};

/// In-process queue over the metadata store.
pub struct EmbeddedQueue {
    tx: mpsc::UnboundedSender<String>,
    rx: Mutex<mpsc::UnboundedReceiver<String>>,
}

impl EmbeddedQueue {
    /// Creates the queue and re-delivers every unfinished job found in `meta`.
    pub async fn recover(meta: &dyn MetaStore) -> Result<(Self, usize), StoreError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let requeued = meta.requeue_processing().await?;
        if requeued > 0 {
            tracing::warn!(
                requeued,
                "jobs interrupted by the previous shutdown were requeued"
            );
        }
        let pending = meta.queued_job_ids(usize::MAX >> 1).await?;
        for id in &pending {
            let _ = tx.send(id.clone());
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
        self.tx
            .send(job_id.to_string())
            .map_err(|_| StoreError::Unavailable("job queue closed".into()))
    }

    async fn next(&self) -> Result<Delivery, StoreError> {
        let id = self
            .rx
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| StoreError::Unavailable("job queue closed".into()))?;
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
            let _ = tx.send(body);
        });
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), StoreError> {
        tracing::error!(body = %delivery.body, reason, "job message dead-lettered");
        Ok(())
    }
}
