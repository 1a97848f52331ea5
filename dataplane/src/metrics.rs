//! Prometheus metrics of the dataplane (DESIGN.md §9, SDD 10.1).

use pika_common::http::{EmbedderQueueMetric, HttpMetrics};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::Arc;

/// All metrics, registered in one registry served at `/metrics`.
pub struct Metrics {
    registry: Registry,
    pub http: Arc<HttpMetrics>,
    pub jobs: IntCounterVec,
    pub job_duration: HistogramVec,
    /// Jobs accepted and not finished, read from the jobs table at scrape time.
    pub queue_depth: IntGauge,
    /// Requests waiting for the local embedding model, by priority.
    pub embedder_waiting: EmbedderQueueMetric,
    /// Audit and access-counter entries waiting to be written.
    pub bookkeeping_queue: IntGauge,
    pub dependency_up: IntGaugeVec,
    pub dependency_duration: HistogramVec,
    /// Time per step of one search (embed, vector, keyword, hydrate, graph),
    /// so a slow search can be attributed without a profiler.
    pub search_stage: HistogramVec,
    /// Rows removed by the retention sweep, by kind.
    pub retention_expired: IntCounterVec,
    /// Jobs in each state but `completed`, read from the jobs table at scrape time.
    pub jobs_in_state: IntGaugeVec,
    /// Jobs put back in `queued`, by why (`lease_expired`, `released`,
    /// `redriven`, `dead_letter`).
    pub jobs_requeued: IntCounterVec,
    /// Graph writes missed while the graph was down, by `queued`,
    /// `repaired`, `failed` (a retry that failed again).
    pub graph_repairs: IntCounterVec,
    /// Graph repairs waiting, read at scrape time.
    pub graph_repair_backlog: IntGauge,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let http = HttpMetrics::register(&registry, "HTTP request latency", LATENCY_BUCKETS)?;
        let jobs = IntCounterVec::new(
            Opts::new("jobs_total", "Extraction jobs by final state"),
            &["state"],
        )?;
        let job_duration = HistogramVec::new(
            HistogramOpts::new("job_duration_seconds", "Extraction job processing time")
                .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["state"],
        )?;
        let queue_depth = IntGauge::new(
            "queue_depth",
            "Jobs accepted and not yet finished (queued or processing)",
        )?;
        let embedder_waiting = EmbedderQueueMetric::register(&registry)?;
        let bookkeeping_queue = IntGauge::new(
            "bookkeeping_queue_depth",
            "Audit and access-counter entries waiting to be written",
        )?;
        let dependency_up = IntGaugeVec::new(
            Opts::new("dependency_up", "1 when a dependency answers"),
            &["service"],
        )?;
        let dependency_duration = HistogramVec::new(
            HistogramOpts::new("dependency_duration_seconds", "Latency of calls to dependencies")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["service", "op"],
        )?;
        let search_stage = HistogramVec::new(
            HistogramOpts::new(
                "search_stage_duration_seconds",
                "Latency of each step of a search",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["stage"],
        )?;
        let retention_expired = IntCounterVec::new(
            Opts::new(
                "retention_expired_total",
                "Rows removed by the retention sweep (items, jobs, history, audit)",
            ),
            &["kind"],
        )?;
        let jobs_in_state = IntGaugeVec::new(
            Opts::new(
                "jobs_in_state",
                "Jobs now in each state (queued, processing, failed)",
            ),
            &["state"],
        )?;
        let jobs_requeued = IntCounterVec::new(
            Opts::new(
                "jobs_requeued_total",
                "Jobs put back in the queue (lease expired, released on shutdown, re-driven, dead letter)",
            ),
            &["reason"],
        )?;
        let graph_repairs = IntCounterVec::new(
            Opts::new(
                "graph_repairs_total",
                "Graph writes left for the repair loop, by queued, repaired, failed",
            ),
            &["result"],
        )?;
        let graph_repair_backlog = IntGauge::new(
            "graph_repair_backlog",
            "Graph writes waiting for the graph to come back",
        )?;
        for s in ["queued", "processing", "failed"] {
            jobs_in_state.with_label_values(&[s]).set(0);
        }
        for r in ["lease_expired", "released", "redriven", "dead_letter"] {
            jobs_requeued.with_label_values(&[r]).inc_by(0);
        }
        for r in ["queued", "repaired", "failed"] {
            graph_repairs.with_label_values(&[r]).inc_by(0);
        }
        registry.register(Box::new(jobs_in_state.clone()))?;
        registry.register(Box::new(jobs_requeued.clone()))?;
        registry.register(Box::new(graph_repairs.clone()))?;
        registry.register(Box::new(graph_repair_backlog.clone()))?;
        registry.register(Box::new(retention_expired.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(job_duration.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(bookkeeping_queue.clone()))?;
        registry.register(Box::new(dependency_up.clone()))?;
        registry.register(Box::new(dependency_duration.clone()))?;
        registry.register(Box::new(search_stage.clone()))?;
        Ok(Metrics {
            registry,
            http,
            jobs,
            job_duration,
            queue_depth,
            embedder_waiting,
            bookkeeping_queue,
            dependency_up,
            dependency_duration,
            search_stage,
            retention_expired,
            jobs_in_state,
            jobs_requeued,
            graph_repairs,
            graph_repair_backlog,
        })
    }

    /// Text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Times one step of a search.
    pub fn observe_search_stage(&self, stage: &str, started: std::time::Instant) {
        self.search_stage
            .with_label_values(&[stage])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Times a dependency call.
    pub fn observe_dependency(&self, service: &str, op: &str, started: std::time::Instant) {
        self.dependency_duration
            .with_label_values(&[service, op])
            .observe(started.elapsed().as_secs_f64());
    }
}
