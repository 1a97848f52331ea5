//! PIKA caching sidecar: runs beside the dataplane in each API pod, checks
//! keys and rate limits, answers repeated and paraphrased searches from L0
//! (in-process) and L1 (Redis), embeds a missed query once for the dataplane,
//! and passes every other request through unchanged (DESIGN.md §5).
//!
//! Layout: [`stack`] builds the layers in order; [`auth`], [`ratelimit`],
//! [`layers`] (search cache and freshness hooks) and [`proxy`] are the layers;
//! [`cache`] holds keys, L0, L1 and semantic matching; [`invalidation`] and
//! [`warmup`] keep the cache fresh; [`audit`] sends cache-hit audits to the
//! dataplane; [`health`] and [`metrics`] observe it; [`config`] is its own
//! configuration.
//!
//! It must not know the dataplane's internals: it depends on `pika-common`
//! (the wire contract) and `pika-embed` only, opens no database, and learns
//! what a key may do by asking the dataplane over HTTP.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod cache;
pub mod config;
pub mod errors;
pub mod health;
pub mod invalidation;
pub mod layers;
pub mod metrics;
pub mod proxy;
pub mod ratelimit;
pub mod signals;
pub mod stack;
pub mod state;
pub mod warmup;

use audit::{AuditSender, AuditTask};
use cache::SearchCache;
use cache::l0::L0;
use cache::l1::{L1, L1Error};
use config::SidecarConfig;
use pika_common::cache_policy::CachePolicySpec;
use pika_common::grants::GrantCache;
use proxy::{ProxyError, Upstream};
use signals::{BumpError, GenerationBumper};
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
    #[error("embedder: {0} (the local model's weights come from scripts/fetch-model.sh)")]
    Embed(#[from] pika_embed::EmbedError),
    #[error("upstream: {0}")]
    Upstream(#[from] ProxyError),
    #[error("L1: {0}")]
    L1(#[from] L1Error),
    #[error("redis: {0}")]
    Signals(#[from] BumpError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("{0}")]
    Tls(#[from] pika_common::tls::TlsError),
    #[error("redis.ca_file {path}: {source}")]
    CaFile { path: String, source: std::io::Error },
    #[error("redis.seal_key: {0}")]
    SealKey(pika_common::seal::SealError),
}

/// The Redis client behind L1, generation bumps and invalidations; `None`
/// without a URL. `rediss://` is TLS (rustls), with `ca_file` for a private CA.
fn redis_client(config: &config::RedisConfig) -> Result<Option<redis::Client>, StartError> {
    let url = config.url.expose();
    if url.is_empty() {
        return Ok(None);
    }
    pika_common::tls::install_default_provider();
    if config.ca_file.as_os_str().is_empty() {
        return Ok(Some(redis::Client::open(url).map_err(BumpError::from)?));
    }
    let root_cert = std::fs::read(&config.ca_file).map_err(|source| StartError::CaFile {
        path: config.ca_file.display().to_string(),
        source,
    })?;
    let tls = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(root_cert),
    };
    Ok(Some(
        redis::Client::build_with_tls(url, tls).map_err(BumpError::from)?,
    ))
}

/// The L1 sealing key: configured (shared by every sidecar), or a random one
/// of this process.
fn l1_seal_key(config: &SidecarConfig) -> Result<pika_common::seal::SecretKey, StartError> {
    use pika_common::seal::SecretKey;
    let configured = config.redis.seal_key.expose();
    if configured.is_empty() {
        tracing::warn!(
            "redis.seal_key is not set: L1 entries are sealed with a key only this sidecar knows, \
             so other sidecars cannot use them; set the same key in every sidecar to share L1"
        );
        return SecretKey::generate().map_err(StartError::SealKey);
    }
    SecretKey::from_base64(configured).map_err(StartError::SealKey)
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
    audit: AuditTask,
}

impl Running {
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    /// Waits until the server has stopped (after a shutdown signal), then
    /// sends the last cache-hit audits.
    pub async fn wait(self) {
        let _ = self.server.await;
        if let Some(t) = self.listener_task {
            t.abort();
        }
        self.audit.close(Duration::from_secs(10)).await;
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.wait().await;
    }
}

/// Builds the state, starts the invalidation listener and serves.
pub async fn start(config: SidecarConfig, policy: CachePolicySpec) -> Result<Running, StartError> {
    let problems = policy.problems();
    if !problems.is_empty() {
        return Err(StartError::Policy {
            path: "(options)".into(),
            reason: problems.join("; "),
        });
    }
    let metrics = Arc::new(metrics::Metrics::new()?);
    let embedder = pika_embed::build(&config.embedding)?;
    let upstream = Upstream::new(
        &config.upstream,
        Duration::from_millis(config.upstream_timeout_ms),
    )?;
    let redis = redis_client(&config.redis)?;
    let l1 = if let (true, Some(client)) = (policy.l1.enabled, &redis) {
        Some(Arc::new(L1::new(
            client.clone(),
            Duration::from_millis(policy.l1.timeout_ms),
            policy.l1.ttl_seconds,
            policy.l1.max_entries_per_user,
            l1_seal_key(&config)?,
        )))
    } else {
        None
    };
    let signals = redis
        .as_ref()
        .map(|client| GenerationBumper::new(client.clone(), Duration::from_millis(config.redis.timeout_ms)));
    let cache = SearchCache {
        l0: L0::new(policy.l0.max_entries, Duration::from_secs(policy.l0.ttl_seconds)),
        l1,
        embedder,
        policy,
        upstream: upstream.clone(),
        metrics: metrics.clone(),
    };
    let grants = GrantCache::new(
        Arc::new(auth::Introspection(upstream.clone())),
        Duration::from_millis(config.keys.cache_ttl_ms),
        Duration::from_millis(config.keys.stale_ms),
        10_000,
    );
    let (audit_sender, audit) = AuditSender::start(
        upstream.clone(),
        metrics.clone(),
        config.audit.queue_capacity,
        Duration::from_millis(config.audit.flush_every_ms),
    );
    let warmup_key = Some(config.warmup_key.expose().to_string()).filter(|k| !k.is_empty());
    let state: State = Arc::new(Sidecar::new(
        cache,
        grants,
        state::Limits {
            per_key: ratelimit::limiter(config.rate_limit.per_second, config.rate_limit.burst),
            per_address: ratelimit::limiter(
                config.rate_limit.unknown_key_per_second,
                config.rate_limit.unknown_key_burst,
            ),
            trust_forwarded_for: config.rate_limit.trust_forwarded_for,
        },
        upstream,
        metrics,
        signals,
        config.insecure_dev,
        warmup_key,
        audit_sender,
    ));
    state.set_subscribed(false);
    let listener_task = redis.map(|client| tokio::spawn(invalidation::run(state.clone(), client)));

    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen.clone(),
        source,
    })?;
    let (shutdown, mut rx) = watch::channel(false);
    let app = stack::build(state.clone(), config.max_in_flight);
    let serve_options = pika_common::http::ServeOptions {
        header_read_timeout: Duration::from_millis(config.header_read_timeout_ms.max(1)),
        tls: config.tls.acceptor()?,
        drain_timeout: Duration::from_millis(config.drain_timeout_ms),
    };
    let draining = state.clone();
    let shutdown_delay = Duration::from_millis(config.shutdown_delay_ms);
    let server = tokio::spawn(async move {
        // Readiness turns 503 first; requests are still served for
        // `shutdown_delay`, then no new connection is accepted and those in
        // flight get `drain_timeout` to finish.
        let stopped = async move {
            let _ = rx.wait_for(|s| *s).await;
            draining.start_draining();
            tokio::time::sleep(shutdown_delay).await;
        };
        pika_common::http::serve(listener, app, serve_options, stopped).await;
    });
    Ok(Running {
        addr,
        state,
        shutdown,
        server,
        listener_task,
        audit,
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
