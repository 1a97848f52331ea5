//! Circuit breakers in front of the dependencies the service can live without
//! for a while: vector store, graph, Redis signals, and publishing to the
//! broker (an accepted job is already stored; the outbox sweeper publishes it
//! when the broker is back, so extract stays fast while RabbitMQ is down).
//!
//! Every adapter already puts a deadline on each call; without a breaker a
//! dead Milvus would still cost every search that deadline before it degrades
//! to keyword search. A [`Breaker`] (failsafe's state machine) opens after
//! `failures` consecutive transient errors, rejects calls at once while open,
//! lets a trial call through after a jittered pause (1-2 × `open_min` at first,
//! doubling up to `open_max`), and closes on its success. Only transient errors count: a bad request is
//! not a sick dependency.
//!
//! The `Guarded*` decorators implement the ports over any adapter, record
//! `dependency_duration_seconds{service,op}` and keep `dependency_up` in step
//! with the breaker. `ping` bypasses the breaker so `/health` always probes
//! the real server.

use crate::metrics::Metrics;
use crate::ports::{CacheSignals, Delivery, FactGraph, JobQueue, StoreError, VectorIndex};
use async_trait::async_trait;
use failsafe::failure_policy::{ConsecutiveFailures, consecutive_failures};
use failsafe::futures::CircuitBreaker as _;
use failsafe::{Instrument, StateMachine, backoff};
use prometheus::{HistogramVec, IntGauge};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// Breaker settings (see `[resilience]` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Consecutive transient failures that open the breaker.
    pub failures: u32,
    /// Shortest pause before a trial call (whole seconds, at least 1; jittered up to twice this).
    pub open_min: Duration,
    /// Longest pause between trial calls.
    pub open_max: Duration,
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Mirrors state changes into an atomic (for `/health`) and `dependency_up`.
#[derive(Clone)]
struct StateRecorder {
    state: Arc<AtomicU8>,
    up: IntGauge,
    name: &'static str,
}

impl StateRecorder {
    fn set(&self, s: BreakerState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }
}

impl Instrument for StateRecorder {
    fn on_call_rejected(&self) {}

    fn on_open(&self) {
        self.set(BreakerState::Open);
        self.up.set(0);
        tracing::warn!(
            dependency = self.name,
            "circuit opened: calls fail fast until a trial call succeeds"
        );
    }

    fn on_half_open(&self) {
        self.set(BreakerState::HalfOpen);
    }

    fn on_closed(&self) {
        self.set(BreakerState::Closed);
        self.up.set(1);
        tracing::info!(dependency = self.name, "circuit closed: dependency answers again");
    }
}

type Machine = StateMachine<ConsecutiveFailures<backoff::EqualJittered>, StateRecorder>;

/// A circuit breaker for one dependency.
pub struct Breaker {
    name: &'static str,
    machine: Machine,
    state: Arc<AtomicU8>,
    durations: HistogramVec,
}

impl Breaker {
    pub fn new(name: &'static str, settings: BreakerSettings, metrics: &Metrics) -> Self {
        // failsafe's equal-jitter backoff works in whole seconds and pauses
        // between half and all of its current step: a first step of twice
        // `open_min` gives a first pause between `open_min` and twice that.
        let min = Duration::from_secs(settings.open_min.as_secs().max(1) * 2);
        let max = settings.open_max.max(min);
        let state = Arc::new(AtomicU8::new(BreakerState::Closed as u8));
        let up = metrics.dependency_up.with_label_values(&[name]);
        up.set(1);
        let machine = failsafe::Config::new()
            .failure_policy(consecutive_failures(
                settings.failures.max(1),
                backoff::equal_jittered(min, max),
            ))
            .instrument(StateRecorder {
                state: state.clone(),
                up,
                name,
            })
            .build();
        Breaker {
            name,
            machine,
            state,
            durations: metrics.dependency_duration.clone(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Relaxed) {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Runs `call` unless the breaker is open; transient errors count against it.
    pub async fn run<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = self.machine.call_with(StoreError::is_transient, call).await;
        self.durations
            .with_label_values(&[self.name, op])
            .observe(started.elapsed().as_secs_f64());
        result.map_err(|e| match e {
            failsafe::Error::Inner(e) => e,
            failsafe::Error::Rejected => {
                StoreError::unavailable(self.name, "circuit open after repeated failures")
            }
        })
    }
}

/// A `VectorIndex` behind a breaker.
pub struct GuardedVectors {
    pub inner: Arc<dyn VectorIndex>,
    pub breaker: Arc<Breaker>,
}

#[async_trait]
impl VectorIndex for GuardedVectors {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn upsert(&self, user_id: &str, items: &[(String, Vec<f32>)]) -> Result<(), StoreError> {
        self.breaker
            .run("upsert", self.inner.upsert(user_id, items))
            .await
    }

    async fn search(&self, user_id: &str, query: &[f32], k: usize) -> Result<Vec<(String, f32)>, StoreError> {
        self.breaker
            .run("search", self.inner.search(user_id, query, k))
            .await
    }

    async fn search_many(
        &self,
        user_id: &str,
        queries: &[Vec<f32>],
        k: usize,
    ) -> Result<Vec<Vec<(String, f32)>>, StoreError> {
        self.breaker
            .run("search", self.inner.search_many(user_id, queries, k))
            .await
    }

    async fn delete(&self, user_id: &str, fact_ids: &[String]) -> Result<(), StoreError> {
        self.breaker
            .run("delete", self.inner.delete(user_id, fact_ids))
            .await
    }

    async fn delete_user(&self, user_id: &str) -> Result<(), StoreError> {
        self.breaker
            .run("delete_user", self.inner.delete_user(user_id))
            .await
    }
}

/// A `FactGraph` behind a breaker.
pub struct GuardedGraph {
    pub inner: Arc<dyn FactGraph>,
    pub breaker: Arc<Breaker>,
}

#[async_trait]
impl FactGraph for GuardedGraph {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn upsert_facts(&self, user_id: &str, facts: &[(String, Vec<String>)]) -> Result<(), StoreError> {
        self.breaker
            .run("upsert_facts", self.inner.upsert_facts(user_id, facts))
            .await
    }

    async fn related(
        &self,
        user_id: &str,
        fact_ids: &[String],
        per_fact: usize,
    ) -> Result<HashMap<String, Vec<String>>, StoreError> {
        self.breaker
            .run("related", self.inner.related(user_id, fact_ids, per_fact))
            .await
    }

    async fn delete_facts(&self, user_id: &str, fact_ids: &[String]) -> Result<(), StoreError> {
        self.breaker
            .run("delete_facts", self.inner.delete_facts(user_id, fact_ids))
            .await
    }

    async fn delete_user(&self, user_id: &str) -> Result<(), StoreError> {
        self.breaker
            .run("delete_user", self.inner.delete_user(user_id))
            .await
    }
}

/// `CacheSignals` behind a breaker.
pub struct GuardedSignals {
    pub inner: Arc<dyn CacheSignals>,
    pub breaker: Arc<Breaker>,
}

#[async_trait]
impl CacheSignals for GuardedSignals {
    async fn bump(&self, user_id: &str) -> Result<u64, StoreError> {
        self.breaker.run("bump", self.inner.bump(user_id)).await
    }

    async fn generation(&self, user_id: &str) -> Result<u64, StoreError> {
        self.breaker
            .run("generation", self.inner.generation(user_id))
            .await
    }

    async fn forget(&self, user_id: &str) -> Result<u64, StoreError> {
        self.breaker.run("forget", self.inner.forget(user_id)).await
    }
}

/// A `JobQueue` whose publishing is behind a breaker; consuming is not (a
/// worker waits on the broker anyway, retrying with backoff).
pub struct GuardedQueue {
    pub inner: Arc<dyn JobQueue>,
    pub breaker: Arc<Breaker>,
}

#[async_trait]
impl JobQueue for GuardedQueue {
    async fn publish(&self, job_id: &str) -> Result<(), StoreError> {
        self.breaker.run("publish", self.inner.publish(job_id)).await
    }

    async fn next(&self) -> Result<Delivery, StoreError> {
        self.inner.next().await
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), StoreError> {
        self.inner.ack(delivery).await
    }

    async fn retry_later(&self, delivery: &Delivery, delay: Duration) -> Result<(), StoreError> {
        self.inner.retry_later(delivery, delay).await
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), StoreError> {
        self.inner.dead_letter(delivery, reason).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn breaker(metrics: &Metrics) -> Breaker {
        Breaker::new(
            "test",
            BreakerSettings {
                failures: 3,
                open_min: Duration::from_secs(1),
                open_max: Duration::from_secs(2),
            },
            metrics,
        )
    }

    #[tokio::test]
    async fn opens_after_consecutive_transient_failures_and_then_fails_fast() {
        let metrics = Metrics::new().expect("metrics");
        let b = breaker(&metrics);
        let calls = AtomicUsize::new(0);
        for _ in 0..3 {
            let r: Result<(), _> = b
                .run("op", async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(StoreError::unavailable("test", "down"))
                })
                .await;
            assert!(r.is_err());
        }
        assert_eq!(b.state(), BreakerState::Open);
        let r: Result<(), _> = b
            .run("op", async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await;
        assert!(
            matches!(&r, Err(e @ StoreError::Unavailable { .. }) if e.to_string().contains("circuit open"))
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "an open breaker must not call through"
        );
        assert_eq!(metrics.dependency_up.with_label_values(&["test"]).get(), 0);
    }

    #[tokio::test]
    async fn non_transient_errors_do_not_open_it() {
        let metrics = Metrics::new().expect("metrics");
        let b = breaker(&metrics);
        for _ in 0..10 {
            let r: Result<(), _> = b
                .run("op", async { Err(StoreError::Conflict("no".into())) })
                .await;
            assert!(matches!(r, Err(StoreError::Conflict(_))));
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn a_successful_trial_call_closes_it() {
        let metrics = Metrics::new().expect("metrics");
        let b = breaker(&metrics);
        for _ in 0..3 {
            let _: Result<(), _> = b
                .run("op", async { Err(StoreError::unavailable("test", "down")) })
                .await;
        }
        assert_eq!(b.state(), BreakerState::Open);
        // The first pause is jittered between 1 and 2 s.
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        let r = b.run("op", async { Ok(7) }).await;
        assert_eq!(r.ok(), Some(7));
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(metrics.dependency_up.with_label_values(&["test"]).get(), 1);
    }
}
