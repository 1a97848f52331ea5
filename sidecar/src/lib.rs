//! PIKA caching sidecar: runs beside the dataplane in each API pod, checks
//! keys and rate limits, answers repeated and paraphrased searches from L0
//! (in-process) and L1 (Redis), embeds a missed query once for the dataplane,
//! and passes every other request through unchanged (DESIGN.md §5).
//!
//! Layout: [`stack`] builds the layers in order; [`auth`], [`ratelimit`],
//! [`layers`] (search cache and freshness hooks) and [`proxy`] are the layers;
//! [`cache`] holds keys, L0, L1 and semantic matching; [`invalidation`] and
//! [`warmup`] keep the cache fresh; [`health`] and [`metrics`] observe it.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cache;
pub mod errors;
pub mod health;
pub mod invalidation;
pub mod layers;
pub mod metrics;
pub mod proxy;
pub mod ratelimit;
pub mod stack;
pub mod state;
pub mod warmup;

use cache::SearchCache;
use cache::l0::L0;
use cache::l1::{L1, L1Error};
use pika_common::cache_policy::CachePolicySpec;
use pika_dataplane::config::Config;
use pika_dataplane::store::RedisSignals;
use proxy::{ProxyError, Upstream};
use state::{Sidecar, State};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cache policy {path}: {reason}")]
    Policy { path: String, reason: String },
    #[error(transparent)]
    Dataplane(#[from] pika_dataplane::app::StartError),
    #[error("upstream: {0}")]
    Upstream(#[from] ProxyError),
    #[error("L1: {0}")]
    L1(#[from] L1Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
}

/// Settings of the sidecar itself; what it shares with the dataplane (key
/// store, Redis, embedder, auth switch) comes from the dataplane's [`Config`].
#[derive(Debug, Clone)]
pub struct SidecarOptions {
    pub listen: String,
    /// `http://host:port` of the dataplane.
    pub upstream: String,
    pub upstream_timeout: Duration,
    /// How long a key lookup is trusted (a revoked key works at most this long).
    pub key_cache_ttl: Duration,
    /// Requests per second per key (0: no limit) and the burst allowed.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// A key with the search permission, for warm-up queries.
    pub warmup_key: Option<String>,
    pub policy: CachePolicySpec,
}

impl Default for SidecarOptions {
    fn default() -> Self {
        SidecarOptions {
            listen: "127.0.0.1:8080".into(),
            upstream: "http://127.0.0.1:8081".into(),
            upstream_timeout: Duration::from_secs(30),
            key_cache_ttl: Duration::from_secs(5),
            rate_limit_per_second: 100,
            rate_limit_burst: 200,
            warmup_key: None,
            policy: CachePolicySpec::default(),
        }
    }
}

/// Reads a policy file: JSON (`.json`, as the operator renders it) or TOML.
pub fn load_policy(path: &Path) -> Result<CachePolicySpec, StartError> {
    let err = |reason: String| StartError::Policy {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let policy: CachePolicySpec = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| err(e.to_string()))?
    } else {
        use figment::providers::{Format, Toml};
        figment::Figment::from(Toml::string(&text))
            .extract()
            .map_err(|e| err(e.to_string()))?
    };
    let problems = policy.problems();
    if !problems.is_empty() {
        return Err(err(problems.join("; ")));
    }
    Ok(policy)
}

/// A started sidecar.
pub struct Running {
    pub addr: SocketAddr,
    pub state: State,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    listener_task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    /// Waits until the server has stopped (after a shutdown signal).
    pub async fn wait(self) {
        let _ = self.server.await;
        if let Some(t) = self.listener_task {
            t.abort();
        }
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.wait().await;
    }
}

/// Builds the state, starts the invalidation listener and serves.
pub async fn start(options: SidecarOptions, config: &Config) -> Result<Running, StartError> {
    let policy = options.policy.clone();
    let problems = policy.problems();
    if !problems.is_empty() {
        return Err(StartError::Policy {
            path: "(options)".into(),
            reason: problems.join("; "),
        });
    }
    let metrics = Arc::new(metrics::Metrics::new()?);
    let embedder = pika_dataplane::app::build_embedder(config)?;
    let meta = pika_dataplane::app::open_meta(config).await?;
    let upstream = Upstream::new(&options.upstream, options.upstream_timeout)?;
    let redis_url = config.cache.redis_url.expose().to_string();
    let l1 = if policy.l1.enabled && !redis_url.is_empty() {
        Some(Arc::new(L1::new(
            &redis_url,
            Duration::from_millis(policy.l1.timeout_ms),
            policy.l1.ttl_seconds,
            policy.l1.max_entries_per_user,
        )?))
    } else {
        None
    };
    let signals = if redis_url.is_empty() {
        None
    } else {
        Some(Arc::new(
            RedisSignals::new(&redis_url, Duration::from_millis(config.cache.timeout_ms))
                .map_err(pika_dataplane::app::StartError::Store)?,
        ))
    };
    let cache = SearchCache {
        l0: L0::new(policy.l0.max_entries, Duration::from_secs(policy.l0.ttl_seconds)),
        l1,
        embedder,
        policy,
        upstream: upstream.clone(),
        metrics: metrics.clone(),
    };
    let (bookkeeper, _bookkeeping) = pika_dataplane::service::bookkeeping::Bookkeeper::start(meta.clone());
    let state: State = Arc::new(Sidecar::new(
        cache,
        auth::KeyCache::new(meta.clone(), options.key_cache_ttl),
        ratelimit::limiter(options.rate_limit_per_second, options.rate_limit_burst),
        upstream,
        metrics,
        signals,
        config.auth.insecure_dev,
        options.warmup_key.clone(),
        bookkeeper,
    ));
    state.set_subscribed(false);
    let listener_task =
        (!redis_url.is_empty()).then(|| tokio::spawn(invalidation::run(state.clone(), redis_url.clone())));

    let listener = tokio::net::TcpListener::bind(&options.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: options.listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: options.listen.clone(),
        source,
    })?;
    let (shutdown, mut rx) = watch::channel(false);
    let app = stack::build(state.clone());
    let server = tokio::spawn(async move {
        let stopped = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
            tracing::error!(error = %e, "sidecar server failed");
        }
    });
    Ok(Running {
        addr,
        state,
        shutdown,
        server,
        listener_task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_policy_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/cache-policy.example.json");
        let p = load_policy(&path).expect("example policy");
        assert_eq!(p.semantic.threshold, 0.95);
        assert_eq!(p.warmup.queries.len(), 3);
    }

    #[test]
    fn a_bad_policy_names_its_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.json");
        std::fs::write(&path, r#"{"semantic":{"threshold":2}}"#).expect("write");
        let err = load_policy(&path).expect_err("rejected").to_string();
        assert!(err.contains("semantic.threshold"), "{err}");
        std::fs::write(&path, r#"{"l0":{"sizee":1}}"#).expect("write");
        assert!(load_policy(&path).is_err());
    }
}
