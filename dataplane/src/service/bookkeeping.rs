//! Audit and access bookkeeping off the request path.
//!
//! Every search writes an audit line and bumps access counters. Done inline,
//! that is two write transactions per search competing with the worker for
//! the store's write lock; here they are queued and written in batches (one
//! transaction per 250 ms or 500 entries). Deletions and exports are audited
//! synchronously by their handlers instead, since they must never go
//! unrecorded. A crash can lose at most one flush interval of read audits.

use crate::domain::AuditEntry;
use crate::ports::MetaStore;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const FLUSH_EVERY: Duration = Duration::from_millis(250);
const FLUSH_AT: usize = 500;

enum Event {
    Audit(AuditEntry),
    Access(Vec<String>),
    /// Write what is queued now, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Handle for queueing bookkeeping writes; cheap to clone.
#[derive(Clone)]
pub struct Bookkeeper {
    tx: mpsc::Sender<Event>,
}

impl Bookkeeper {
    /// Starts the writer task; it ends after every handle is dropped and the queue is flushed.
    pub fn start(meta: Arc<dyn MetaStore>) -> (Bookkeeper, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(10_000);
        (Bookkeeper { tx }, tokio::spawn(writer(meta, rx)))
    }

    /// Queues an audit line; waits when the queue is full (audit is never dropped).
    pub async fn audit(&self, entry: AuditEntry) {
        if self.tx.send(Event::Audit(entry)).await.is_err() {
            tracing::error!("audit queue closed; entry lost");
        }
    }

    /// Entries waiting to be written (`bookkeeping_queue_depth`).
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Writes every entry queued so far before returning (an erasure must
    /// pseudonymise the user's audit lines after they are in the log).
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(Event::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Queues access-counter bumps; dropped under overload (they are statistics).
    pub fn accessed(&self, fact_ids: Vec<String>) {
        let _ = self.tx.try_send(Event::Access(fact_ids));
    }
}

async fn writer(meta: Arc<dyn MetaStore>, mut rx: mpsc::Receiver<Event>) {
    let mut audits: Vec<AuditEntry> = Vec::new();
    let mut accessed: Vec<String> = Vec::new();
    loop {
        let first = rx.recv().await;
        let Some(first) = first else { break };
        let mut waiting = push(first, &mut audits, &mut accessed);
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while waiting.is_none() && audits.len() + accessed.len() < FLUSH_AT {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => waiting = push(e, &mut audits, &mut accessed),
                Ok(None) | Err(_) => break,
            }
        }
        flush(meta.as_ref(), &mut audits, &mut accessed).await;
        if let Some(done) = waiting {
            let _ = done.send(());
        }
    }
    flush(meta.as_ref(), &mut audits, &mut accessed).await;
}

/// Adds an event to the batch; a flush request ends the batch.
fn push(
    e: Event,
    audits: &mut Vec<AuditEntry>,
    accessed: &mut Vec<String>,
) -> Option<tokio::sync::oneshot::Sender<()>> {
    match e {
        Event::Audit(a) => audits.push(a),
        Event::Access(ids) => accessed.extend(ids),
        Event::Flush(done) => return Some(done),
    }
    None
}

/// How long a failing audit write is retried (with backoff) before the
/// batch is given up: the queue behind it fills meanwhile and makes callers
/// wait, so an outage of the metadata store slows reads instead of losing
/// their audit lines.
const AUDIT_RETRY_FOR: Duration = Duration::from_secs(60);

async fn flush(meta: &dyn MetaStore, audits: &mut Vec<AuditEntry>, accessed: &mut Vec<String>) {
    if !audits.is_empty() {
        let batch: &[AuditEntry] = audits;
        if !write_with_retry(|| meta.append_audit(batch), AUDIT_RETRY_FOR).await {
            tracing::error!(
                lost = audits.len(),
                "audit log write failed for a minute; batch lost"
            );
        }
        audits.clear();
    }
    if !accessed.is_empty() {
        if let Err(e) = meta.record_access(accessed).await {
            tracing::debug!(error = %e, "cannot record fact access");
        }
        accessed.clear();
    }
}

/// Calls `write` until it succeeds (true) or `give_up_after` has passed
/// (false), pausing 50 ms, doubling up to 2 s, between attempts.
async fn write_with_retry<F, Fut>(mut write: F, give_up_after: Duration) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::ports::StoreError>>,
{
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match write().await {
            Ok(()) => return true,
            Err(e) if started.elapsed() < give_up_after => {
                tracing::warn!(error = %e, "audit log write failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteMetaStore;

    #[tokio::test]
    async fn queued_audits_are_flushed_when_handles_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let meta = SqliteMetaStore::connect(&url).await.expect("store");
        let (bk, task) = Bookkeeper::start(Arc::new(meta.clone()));
        for i in 0..3 {
            bk.audit(AuditEntry {
                key_id: Some("key_1".into()),
                action: "search".into(),
                user_id: Some(format!("kid-{i}")),
                target: None,
                request_id: format!("req-{i}"),
            })
            .await;
        }
        bk.accessed(vec!["f1".into()]);
        drop(bk);
        task.await.expect("writer ends");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'search'")
            .fetch_one(&meta.pool())
            .await
            .expect("count");
        assert_eq!(n, 3);
    }

    fn outage() -> crate::ports::StoreError {
        crate::ports::StoreError::unavailable("postgres", "connection refused")
    }

    #[tokio::test]
    async fn a_failing_audit_write_is_retried_until_the_store_is_back() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let started = std::time::Instant::now();
        let written = write_with_retry(
            || {
                let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move { if n < 3 { Err(outage()) } else { Ok(()) } }
            },
            AUDIT_RETRY_FOR,
        )
        .await;
        assert!(written, "the batch is written once the store answers");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
        // Backed off between attempts: 50 + 100 + 200 ms.
        assert!(
            started.elapsed() >= Duration::from_millis(350),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn an_outage_longer_than_the_retry_window_gives_the_batch_up() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let started = std::time::Instant::now();
        let written = write_with_retry(
            || {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Err(outage()) }
            },
            Duration::from_millis(300),
        )
        .await;
        assert!(!written);
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(
            calls.load(std::sync::atomic::Ordering::SeqCst) >= 3,
            "retried before giving up"
        );
    }
}
