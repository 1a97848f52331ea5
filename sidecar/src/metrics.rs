//! Prometheus metrics of the sidecar (DESIGN.md §9): requests, cache results
//! per layer, hit latency per layer, upstream latency, dependency state.

use pika_common::http::{EmbedderQueueMetric, HttpMetrics};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::Arc;
use std::time::Instant;

pub struct Metrics {
    registry: Registry,
    pub http: Arc<HttpMetrics>,
    pub cache_requests: IntCounterVec,
    pub cache_hit_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub dependency_up: IntGaugeVec,
    /// Requests waiting for the local embedding model, by priority.
    pub embedder_waiting: EmbedderQueueMetric,
    /// Cache-hit audits waiting to be sent to the dataplane.
    pub audit_queue: IntGauge,
    pub audit_sent: IntCounter,
    pub audit_lost: IntCounter,
}

/// Finer than the dataplane's: cache hits are tens of microseconds.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let http = HttpMetrics::register(&registry, "HTTP request latency at the sidecar", BUCKETS)?;
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "cache_requests_total",
                "Search cache lookups by layer (l0, l1) and result (hit, semantic_hit, miss, bypass)",
            ),
            &["layer", "result"],
        )?;
        let cache_hit_duration = HistogramVec::new(
            HistogramOpts::new(
                "cache_hit_duration_seconds",
                "Time to answer a search from cache, by layer",
            )
            .buckets(BUCKETS.to_vec()),
            &["layer"],
        )?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "upstream_duration_seconds",
                "Dataplane response time seen by the sidecar",
            )
            .buckets(BUCKETS.to_vec()),
            &["kind"],
        )?;
        let dependency_up = IntGaugeVec::new(
            Opts::new("dependency_up", "1 when a dependency answers"),
            &["service"],
        )?;
        let embedder_waiting = EmbedderQueueMetric::register(&registry)?;
        let audit_queue = IntGauge::new("audit_queue_depth", "Cache-hit audits waiting to be sent")?;
        let audit_sent = IntCounter::new("audit_sent_total", "Cache-hit audits recorded by the dataplane")?;
        let audit_lost = IntCounter::new(
            "audit_lost_total",
            "Cache-hit audits the dataplane did not take after retries",
        )?;
        registry.register(Box::new(cache_requests.clone()))?;
        registry.register(Box::new(audit_queue.clone()))?;
        registry.register(Box::new(audit_sent.clone()))?;
        registry.register(Box::new(audit_lost.clone()))?;
        for m in [&cache_hit_duration, &upstream_duration] {
            registry.register(Box::new(m.clone()))?;
        }
        registry.register(Box::new(dependency_up.clone()))?;
        Ok(Metrics {
            registry,
            http,
            cache_requests,
            cache_hit_duration,
            upstream_duration,
            dependency_up,
            embedder_waiting,
            audit_queue,
            audit_sent,
            audit_lost,
        })
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    pub fn cache(&self, layer: &str, result: &str) {
        self.cache_requests.with_label_values(&[layer, result]).inc();
    }

    pub fn hit(&self, layer: &str, started: Instant) {
        self.cache_hit_duration
            .with_label_values(&[layer])
            .observe(started.elapsed().as_secs_f64());
    }
}
