//! The health use case: probe each dependency (bounded), report breaker
//! states, and say whether the service can serve. The metadata store is the
//! one critical dependency: without it nothing is answered; without vectors,
//! graph or Redis the service answers degraded (SDD 10.5).

use crate::metrics::Metrics;
use crate::ports::{FactGraph, MetaStore, StoreError, VectorIndex};
use crate::resilience::{Breaker, BreakerState};
use crate::service::audit::AuditLog;
use pika_common::wire::JobState;
use pika_embed::Embedder;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one probe may take before the dependency counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct HealthService {
    pub meta: Arc<dyn MetaStore>,
    pub vectors: Arc<dyn VectorIndex>,
    pub graph: Arc<dyn FactGraph>,
    pub embedder: Arc<dyn Embedder>,
    pub extractor: String,
    pub breakers: Vec<Arc<Breaker>>,
    pub metrics: Arc<Metrics>,
    /// For the depth of its write queue.
    pub audit: AuditLog,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Up,
    Down,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimension: Option<usize>,
}

impl Check {
    fn named(name: &str, status: Status) -> Check {
        Check {
            name: name.to_string(),
            status,
            latency_ms: None,
            error: None,
            circuit: None,
            model: None,
            dimension: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    /// `healthy`, `degraded` (an optional dependency is down) or `unhealthy`.
    pub status: &'static str,
    pub timestamp: chrono::DateTime<chrono::Utc>,
    pub extractor: String,
    pub checks: Vec<Check>,
    /// False when the metadata store is down: `/health/ready` answers 503.
    #[serde(skip)]
    pub serving: bool,
}

async fn probe<F>(name: &str, f: F) -> Check
where
    F: std::future::Future<Output = Result<(), StoreError>>,
{
    let started = Instant::now();
    let r = tokio::time::timeout(PROBE_TIMEOUT, f).await;
    let ms = (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    let (status, error) = match r {
        Ok(Ok(())) => (Status::Up, None),
        Ok(Err(e)) => (Status::Down, Some(e.to_string())),
        Err(_) => (Status::Down, Some("timed out".to_string())),
    };
    Check {
        latency_ms: Some(ms),
        error,
        ..Check::named(name, status)
    }
}

impl HealthService {
    /// The Prometheus text, with `queue_depth` read from the jobs table at
    /// scrape time: every process (API or worker) reports the same number,
    /// counted where jobs live, not up and down across processes.
    pub async fn metrics_text(&self) -> String {
        match tokio::time::timeout(PROBE_TIMEOUT, self.meta.count_jobs_by_state()).await {
            Ok(Ok(counts)) => {
                let count = |s: JobState| counts.iter().find(|(c, _)| *c == s).map_or(0, |(_, n)| *n);
                let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                for s in [JobState::Queued, JobState::Processing, JobState::Failed] {
                    self.metrics
                        .jobs_in_state
                        .with_label_values(&[s.as_str()])
                        .set(gauge(count(s)));
                }
                self.metrics
                    .queue_depth
                    .set(gauge(count(JobState::Queued) + count(JobState::Processing)));
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot count jobs by state"),
            Err(_) => tracing::debug!("counting jobs timed out"),
        }
        match tokio::time::timeout(PROBE_TIMEOUT, self.meta.count_graph_repairs()).await {
            Ok(Ok(n)) => self
                .metrics
                .graph_repair_backlog
                .set(i64::try_from(n).unwrap_or(i64::MAX)),
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot count graph repairs"),
            Err(_) => tracing::debug!("counting graph repairs timed out"),
        }
        let queued = i64::try_from(self.audit.queued()).unwrap_or(i64::MAX);
        self.metrics.bookkeeping_queue.set(queued);
        self.metrics.embedder_waiting.set(self.embedder.waiting());
        self.metrics.render()
    }

    pub async fn report(&self) -> HealthReport {
        let (meta, vectors, graph) = tokio::join!(
            probe("metadata", self.meta.ping()),
            probe("vectors", self.vectors.ping()),
            probe("graph", self.graph.ping()),
        );
        let serving = meta.status == Status::Up;
        let embedder = Check {
            model: Some(self.embedder.model_id().to_string()),
            dimension: Some(self.embedder.dimension()),
            ..Check::named("embedder", Status::Up)
        };
        let mut checks = vec![meta, vectors, graph, embedder];
        for b in &self.breakers {
            let circuit = b.state().as_str();
            match checks.iter_mut().find(|c| c.name == b.name()) {
                Some(c) => c.circuit = Some(circuit),
                // Dependencies without a probe of their own (Redis) report their breaker.
                None => {
                    let status = if b.state() == BreakerState::Open {
                        Status::Down
                    } else {
                        Status::Up
                    };
                    checks.push(Check {
                        circuit: Some(circuit),
                        ..Check::named(b.name(), status)
                    });
                }
            }
        }
        for c in &checks {
            self.metrics
                .dependency_up
                .with_label_values(&[c.name.as_str()])
                .set(i64::from(c.status == Status::Up));
        }
        let all_up = checks.iter().all(|c| c.status == Status::Up);
        HealthReport {
            status: match (serving, all_up) {
                (true, true) => "healthy",
                (true, false) => "degraded",
                (false, _) => "unhealthy",
            },
            timestamp: chrono::Utc::now(),
            extractor: self.extractor.clone(),
            checks,
            serving,
        }
    }
}
