//! A short-lived cache of key grants, used by the dataplane (in front of its
//! key store) and by the sidecar (in front of the dataplane's introspection
//! endpoint), so neither asks on every request.
//!
//! A grant is trusted for `fresh_for` after it was fetched; after that the
//! next request asks the source again. When the source cannot answer (the
//! key store or the dataplane is down), a grant fetched within `stale_for`
//! is still used, so cached answers keep flowing for known keys during a
//! short outage; an unknown key, or one seen longer ago, gets the error. A
//! revoked key therefore stops working within `fresh_for` while the source
//! answers, and within `stale_for` at worst.

use crate::keys::{KeyGrant, hash_key};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a grant could not be looked up.
#[derive(Debug, thiserror::Error)]
#[error("key store unavailable: {0}")]
pub struct GrantSourceError(pub String);

/// Where grants come from.
#[async_trait]
pub trait GrantSource: Send + Sync {
    /// The grant of a presented key (`None`: no such key). `hash` is
    /// [`hash_key`] of `presented`, computed once by the cache.
    async fn grant(&self, presented: &str, hash: &str) -> Result<Option<KeyGrant>, GrantSourceError>;
}

#[derive(Clone)]
struct Cached {
    grant: Option<KeyGrant>,
    fetched: Instant,
}

/// Grants by key hash (raw keys are never cache keys).
pub struct GrantCache {
    source: Arc<dyn GrantSource>,
    entries: moka::future::Cache<String, Cached>,
    fresh_for: Duration,
}

impl GrantCache {
    /// At most `capacity` keys; `stale_for` is raised to `fresh_for` if lower.
    pub fn new(
        source: Arc<dyn GrantSource>,
        fresh_for: Duration,
        stale_for: Duration,
        capacity: u64,
    ) -> Self {
        GrantCache {
            source,
            entries: moka::future::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(stale_for.max(fresh_for).max(Duration::from_millis(1)))
                .build(),
            fresh_for,
        }
    }

    /// The grant of a presented key; unknown keys are cached too, so a client
    /// retrying a bad key does not reach the source on every request.
    pub async fn lookup(&self, presented: &str) -> Result<Option<KeyGrant>, GrantSourceError> {
        let hash = hash_key(presented);
        let previous = self.entries.get(&hash).await;
        if let Some(c) = &previous
            && c.fetched.elapsed() < self.fresh_for
        {
            return Ok(c.grant.clone());
        }
        match self.source.grant(presented, &hash).await {
            Ok(grant) => {
                let fetched = Instant::now();
                self.entries
                    .insert(
                        hash,
                        Cached {
                            grant: grant.clone(),
                            fetched,
                        },
                    )
                    .await;
                Ok(grant)
            }
            Err(e) => match previous {
                Some(Cached { grant: Some(g), .. }) => {
                    tracing::warn!(error = %e, key_id = %g.key_id, "key source down; using the last grant seen");
                    Ok(Some(g))
                }
                _ => Err(e),
            },
        }
    }

    /// Whether a fresh, live grant of `presented` is cached: answering it
    /// needs no lookup (the per-address limit of unknown keys skips it).
    pub async fn holds_live(&self, presented: &str) -> bool {
        self.entries.get(&hash_key(presented)).await.is_some_and(|c| {
            c.fetched.elapsed() < self.fresh_for && c.grant.is_some_and(|g| g.is_live(chrono::Utc::now()))
        })
    }

    /// Forgets every grant (tests, and a key revoked through this process).
    pub fn clear(&self) {
        self.entries.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Permission;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A source whose answer the test sets, counting calls.
    struct Scripted {
        answer: Mutex<Result<Option<KeyGrant>, String>>,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl GrantSource for Scripted {
        async fn grant(&self, _: &str, hash: &str) -> Result<Option<KeyGrant>, GrantSourceError> {
            assert_eq!(hash.len(), 64);
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.answer
                .lock()
                .expect("lock")
                .clone()
                .map_err(GrantSourceError)
        }
    }

    fn grant() -> KeyGrant {
        KeyGrant {
            key_id: "key_1".into(),
            tenant_id: crate::tenancy::DEFAULT_TENANT.into(),
            users: None,
            permissions: vec![Permission::Search],
            expires_at: None,
            revoked_at: None,
        }
    }

    fn setup(fresh_ms: u64, stale_ms: u64) -> (Arc<Scripted>, GrantCache) {
        let source = Arc::new(Scripted {
            answer: Mutex::new(Ok(Some(grant()))),
            calls: AtomicUsize::new(0),
        });
        let cache = GrantCache::new(
            source.clone(),
            Duration::from_millis(fresh_ms),
            Duration::from_millis(stale_ms),
            100,
        );
        (source, cache)
    }

    #[tokio::test]
    async fn a_fresh_grant_is_served_without_asking() {
        let (source, cache) = setup(60_000, 60_000);
        for _ in 0..3 {
            assert_eq!(cache.lookup("k").await.expect("grant"), Some(grant()));
        }
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_change_is_seen_after_fresh_for() {
        let (source, cache) = setup(20, 60_000);
        assert!(cache.lookup("k").await.expect("grant").is_some());
        *source.answer.lock().expect("lock") = Ok(None);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(cache.lookup("k").await.expect("answer"), None, "revoked keys go");
    }

    #[tokio::test]
    async fn an_outage_serves_known_keys_only_within_stale_for() {
        let (source, cache) = setup(10, 200);
        assert!(cache.lookup("known").await.expect("grant").is_some());
        *source.answer.lock().expect("lock") = Err("down".into());
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(cache.lookup("known").await.expect("stale grant"), Some(grant()));
        assert!(cache.lookup("never-seen").await.is_err(), "no grant, no answer");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(cache.lookup("known").await.is_err(), "too old to trust");
    }
}
