//! What every layer of the sidecar shares.

use crate::auth::KeyCache;
use crate::cache::SearchCache;
use crate::metrics::Metrics;
use crate::proxy::Upstream;
use crate::ratelimit::KeyLimiter;
use pika_dataplane::service::bookkeeping::Bookkeeper;
use pika_dataplane::store::RedisSignals;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Sidecar {
    pub cache: SearchCache,
    pub keys: KeyCache,
    pub limiter: Option<KeyLimiter>,
    pub upstream: Upstream,
    pub metrics: Arc<Metrics>,
    /// Bumps a user's generation when this sidecar relays a completed job
    /// (None without Redis).
    pub signals: Option<Arc<RedisSignals>>,
    /// `auth.insecure_dev` of the shared configuration: no keys checked.
    pub insecure_dev: bool,
    /// A key with the search permission for warm-up queries.
    pub warmup_key: Option<String>,
    /// Audit lines for answers served from cache (batched writes).
    pub bookkeeper: Bookkeeper,
    subscribed: AtomicBool,
    /// Jobs whose completion this sidecar already relayed (bumped once).
    relayed: moka::sync::Cache<String, ()>,
}

pub type State = Arc<Sidecar>;

impl Sidecar {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cache: SearchCache,
        keys: KeyCache,
        limiter: Option<KeyLimiter>,
        upstream: Upstream,
        metrics: Arc<Metrics>,
        signals: Option<Arc<RedisSignals>>,
        insecure_dev: bool,
        warmup_key: Option<String>,
        bookkeeper: Bookkeeper,
    ) -> Self {
        Sidecar {
            cache,
            keys,
            limiter,
            upstream,
            metrics,
            signals,
            insecure_dev,
            warmup_key,
            bookkeeper,
            subscribed: AtomicBool::new(false),
            relayed: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(600))
                .build(),
        }
    }

    /// True the first time a job's completion passes through this sidecar.
    pub fn first_completion_relay(&self, job_id: &str) -> bool {
        let fresh = !self.relayed.contains_key(job_id);
        if fresh {
            self.relayed.insert(job_id.to_string(), ());
        }
        fresh
    }

    /// Whether invalidation messages are arriving now.
    pub fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    pub fn set_subscribed(&self, up: bool) {
        self.subscribed.store(up, Ordering::Release);
        self.metrics
            .dependency_up
            .with_label_values(&["invalidation"])
            .set(up as i64);
    }
}
