//! Prometheus metrics of the operator, served on `/metrics`.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounter,
    pub failures: IntCounterVec,
    pub duration: Histogram,
    /// Child objects written (applied or deleted), by kind and action.
    pub writes: IntCounterVec,
    /// 1 while this replica holds the leader lease.
    pub leader: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("pika_operator".into()), None)?;
        let reconciles = IntCounter::new("reconciles_total", "Reconciliations started")?;
        let failures = IntCounterVec::new(
            Opts::new(
                "reconcile_failures_total",
                "Reconciliations that failed, by reason",
            ),
            &["reason"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new("reconcile_duration_seconds", "Time one reconciliation took").buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let writes = IntCounterVec::new(
            Opts::new("child_writes_total", "Child objects applied or deleted"),
            &["kind", "action"],
        )?;
        let leader = IntGauge::new("leader", "1 while this replica leads")?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(writes.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Metrics {
            registry,
            reconciles,
            failures,
            duration,
            writes,
            leader,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }
}
