//! Audit lines for answers served from cache, sent to the dataplane (which
//! owns the audit log) in batches: `POST /v1/audit/cache_hits`, one request
//! per key, authenticated with that key, so an entry is always recorded
//! under the key that read the data and the sidecar holds no credential of
//! its own.
//!
//! Entries wait in a bounded queue (a full queue makes the request wait: a
//! hit is data access and is not dropped silently) and are flushed every
//! `audit.flush_every_ms`, at 500 entries, and when the sidecar stops
//! ([`AuditSender::close`] waits for the last flush). A batch the dataplane
//! refuses or cannot take is retried three times, then logged and counted
//! in `audit_lost_total`.

use crate::metrics::Metrics;
use crate::proxy::Upstream;
use pika_common::wire::{CacheHit, CacheHitBatch, MAX_CACHE_HITS_PER_BATCH};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const FLUSH_AT: usize = 500;
const ATTEMPTS: u32 = 3;

/// One hit and the key that read it (`None` with `insecure_dev`).
struct Pending {
    key: Option<Arc<str>>,
    hit: CacheHit,
}

/// Handle for queueing cache-hit audits; cheap to clone.
#[derive(Clone)]
pub struct AuditSender {
    tx: mpsc::Sender<Pending>,
}

/// The writer task; [`AuditTask::close`] ends it after the last flush.
pub struct AuditTask {
    task: JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl AuditSender {
    pub fn start(
        upstream: Upstream,
        metrics: Arc<Metrics>,
        capacity: usize,
        every: Duration,
    ) -> (Self, AuditTask) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(writer(upstream, metrics, rx, every, stopped));
        (AuditSender { tx }, AuditTask { task, stop })
    }

    /// Queues one hit; waits while the queue is full.
    pub async fn record(&self, key: Option<Arc<str>>, hit: CacheHit) {
        if self.tx.send(Pending { key, hit }).await.is_err() {
            tracing::error!("audit queue closed; a cache-hit audit was lost");
        }
    }
}

impl AuditTask {
    /// Stops taking entries, sends every queued one and waits (bounded) for
    /// that; call once the server has stopped answering.
    pub async fn close(self, within: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(within, self.task).await.is_err() {
            tracing::warn!("cache-hit audits not flushed within {within:?}");
        }
    }
}

async fn writer(
    upstream: Upstream,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Pending>,
    every: Duration,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let mut batch: Vec<Pending> = Vec::new();
    loop {
        let first = tokio::select! {
            first = rx.recv() => first,
            _ = &mut stopped => {
                // Shutting down: take what is queued, send it, end.
                rx.close();
                while let Ok(p) = rx.try_recv() {
                    batch.push(p);
                }
                flush(&upstream, &metrics, std::mem::take(&mut batch)).await;
                return;
            }
        };
        let Some(first) = first else { break };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + every;
        while batch.len() < FLUSH_AT {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => batch.push(p),
                Ok(None) | Err(_) => break,
            }
        }
        metrics.audit_queue.set(rx.len() as i64);
        flush(&upstream, &metrics, std::mem::take(&mut batch)).await;
    }
    flush(&upstream, &metrics, batch).await;
}

async fn flush(upstream: &Upstream, metrics: &Metrics, batch: Vec<Pending>) {
    let mut by_key: HashMap<Option<Arc<str>>, Vec<CacheHit>> = HashMap::new();
    for p in batch {
        by_key.entry(p.key).or_default().push(p.hit);
    }
    for (key, hits) in by_key {
        for chunk in hits.chunks(MAX_CACHE_HITS_PER_BATCH) {
            send(upstream, metrics, key.as_deref(), chunk).await;
        }
    }
}

async fn send(upstream: &Upstream, metrics: &Metrics, key: Option<&str>, hits: &[CacheHit]) {
    let body = match serde_json::to_vec(&CacheHitBatch { hits: hits.to_vec() }) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode cache-hit audits");
            return;
        }
    };
    let mut pause = Duration::from_millis(100);
    for attempt in 1..=ATTEMPTS {
        match upstream
            .post_json("/v1/audit/cache_hits", key, body.clone().into())
            .await
        {
            Ok(status) if status.is_success() => {
                metrics.audit_sent.inc_by(hits.len() as u64);
                return;
            }
            // A refused batch (the key was revoked meanwhile) will not pass later.
            Ok(status) if status.is_client_error() => {
                tracing::error!(%status, lost = hits.len(), "dataplane refused cache-hit audits");
                break;
            }
            Ok(status) => tracing::warn!(%status, attempt, "cache-hit audits not taken; retrying"),
            Err(e) => tracing::warn!(error = %e, attempt, "cache-hit audits not sent; retrying"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(pause).await;
            pause *= 4;
        }
    }
    tracing::error!(lost = hits.len(), "cache-hit audits lost");
    metrics.audit_lost.inc_by(hits.len() as u64);
}
