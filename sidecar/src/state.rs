//! What every layer of the sidecar shares.

use crate::audit::AuditSender;
use crate::cache::SearchCache;
use crate::metrics::Metrics;
use crate::proxy::Upstream;
use crate::ratelimit::{AddressLimiter, KeyLimiter};
use crate::signals::GenerationBumper;
use pika_common::grants::GrantCache;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct Sidecar {
    pub cache: SearchCache,
    /// Key grants from the dataplane, cached briefly (see `auth`).
    pub grants: GrantCache,
    pub limits: Limits,
    pub upstream: Upstream,
    pub metrics: Arc<Metrics>,
    /// Bumps a user's generation when this sidecar relays a completed job
    /// (None without Redis).
    pub signals: Option<GenerationBumper>,
    /// No keys checked (`insecure_dev`).
    pub insecure_dev: bool,
    /// A key with the search permission for warm-up queries.
    pub warmup_key: Option<String>,
    /// Audit lines for answers served from cache, sent to the dataplane.
    pub audit: AuditSender,
    subscribed: AtomicBool,
    /// Shutdown has begun: readiness answers 503 while requests still flow.
    draining: AtomicBool,
    /// Jobs whose completion this sidecar already relayed (bumped once).
    relayed: moka::sync::Cache<String, ()>,
}

pub type State = Arc<Sidecar>;

/// The rate limits (see `ratelimit`); `None`: no limit.
pub struct Limits {
    pub per_key: Option<KeyLimiter>,
    pub per_address: Option<AddressLimiter>,
    /// Read the client address from `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
}

impl Sidecar {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cache: SearchCache,
        grants: GrantCache,
        limits: Limits,
        upstream: Upstream,
        metrics: Arc<Metrics>,
        signals: Option<GenerationBumper>,
        insecure_dev: bool,
        warmup_key: Option<String>,
        audit: AuditSender,
    ) -> Self {
        Sidecar {
            cache,
            grants,
            limits,
            upstream,
            metrics,
            signals,
            insecure_dev,
            warmup_key,
            audit,
            subscribed: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            relayed: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(600))
                .build(),
        }
    }

    /// Shutdown has begun: readiness turns 503 (see `SidecarConfig::shutdown_delay_ms`).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
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
