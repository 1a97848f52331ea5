//! Wiring: builds every port from configuration, starts the workers and the
//! HTTP server, and shuts them down together.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::ports::{CacheSignals, Extractor, FactGraph, JobQueue, MetaStore, StoreError, VectorIndex};
use crate::resilience::Breaker;
use crate::service::Services;
use crate::service::bookkeeping::Bookkeeper;
use crate::service::keys;
use crate::service::leases::{self, HeldJobs};
use crate::service::worker::Worker;
use pika_common::grants::GrantCache;
use pika_embed::Embedder;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("embedder: {0} (the local model's weights come from scripts/fetch-model.sh)")]
    Embed(#[from] pika_embed::EmbedError),
    #[error("extractor: {0}")]
    Extract(#[from] crate::ports::ExtractError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("server.{0}")]
    Tls(#[from] pika_common::tls::TlsError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("unsupported {what} {value:?}")]
    Unsupported { what: &'static str, value: String },
    #[error("cannot create data dir {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("keys: {0}")]
    Keys(#[from] keys::KeyError),
    #[error("encryption: {0}")]
    Vault(#[from] crate::vault::VaultError),
    #[error(
        "cannot write the bootstrap admin key to {path} (the key was revoked; fix and restart): {source}"
    )]
    BootstrapKey { path: String, source: std::io::Error },
}

/// The ports the services use.
#[derive(Clone)]
pub struct Deps {
    pub meta: Arc<dyn MetaStore>,
    pub vectors: Arc<dyn VectorIndex>,
    pub graph: Arc<dyn FactGraph>,
    pub queue: Arc<dyn JobQueue>,
    pub signals: Arc<dyn CacheSignals>,
    pub embedder: Arc<dyn Embedder>,
    pub extractor: Arc<dyn Extractor>,
    /// The registry that adapters and handlers record into.
    pub metrics: Arc<Metrics>,
    /// Breakers in front of remote optional dependencies (for `/health`).
    pub breakers: Vec<Arc<Breaker>>,
}

/// What the HTTP layer holds: the services, the key grants in front of the
/// key store, and the few settings handlers read.
#[derive(Clone)]
pub struct AppState {
    pub services: Arc<Services>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// Key grants, cached for `auth.key_cache_ttl_ms` in front of the key store.
    pub grants: Arc<GrantCache>,
    /// Shutdown has begun: readiness answers 503 while requests still flow.
    pub draining: Arc<AtomicBool>,
}

/// Which processes consume jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `serve`: the API (and, with the embedded queue, the workers).
    Api,
    /// `worker`: extraction workers only.
    Worker,
}

/// A running service.
pub struct Running {
    pub addr: SocketAddr,
    /// The admin key created on first start (no keys existed), shown once.
    pub bootstrap_admin_key: Option<String>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    /// Extraction workers: each finishes its job in flight on shutdown,
    /// within `worker.drain_timeout_ms`.
    workers: Vec<JoinHandle<()>>,
    /// The sweeper, retention and graph repair loops (they stop at once).
    background: Vec<JoinHandle<()>>,
    /// Renews the leases of `held` until the workers are done.
    renewer: Option<JoinHandle<()>>,
    held: Arc<HeldJobs>,
    meta: Arc<dyn MetaStore>,
    metrics: Arc<Metrics>,
    drain_timeout: Duration,
    bookkeeping: JoinHandle<()>,
}

impl Running {
    /// Stops accepting requests, drains in-flight ones and finishes in-flight jobs.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.wait().await;
    }

    /// Waits until the server stops (after a signal); workers then get
    /// `worker.drain_timeout_ms` to finish their jobs, and jobs still held
    /// after it are handed back to the queue.
    pub async fn wait(mut self) {
        let _ = (&mut self.server).await;
        let finished = futures::future::join_all(self.workers.iter_mut());
        if tokio::time::timeout(self.drain_timeout, finished).await.is_err() {
            // Finished handles may have been polled to completion already:
            // only the ones still running are stopped and awaited.
            for w in std::mem::take(&mut self.workers)
                .into_iter()
                .filter(|w| !w.is_finished())
            {
                w.abort();
                let _ = w.await;
            }
            let released = leases::release_all(self.meta.as_ref(), &self.held).await;
            self.metrics
                .jobs_requeued
                .with_label_values(&["released"])
                .inc_by(released as u64);
            tracing::warn!(
                released,
                deadline = ?self.drain_timeout,
                "jobs still running at the drain deadline were handed back to the queue"
            );
        }
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        for b in std::mem::take(&mut self.background) {
            let _ = b.await;
        }
        // Flushes queued audit lines once every state handle is gone.
        if tokio::time::timeout(Duration::from_secs(5), self.bookkeeping)
            .await
            .is_err()
        {
            tracing::warn!("bookkeeping did not flush within 5 s");
        }
    }

    /// A handle that triggers graceful shutdown.
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Creates the first admin key when the store has none (one replica wins:
/// the key id is fixed) and writes it to `auth.bootstrap_key_file`, never
/// to a log. A key that cannot be written is revoked, so no admin key
/// exists that nobody holds.
pub async fn bootstrap_admin_key(
    config: &Config,
    meta: &dyn MetaStore,
) -> Result<Option<String>, StartError> {
    if config.auth.insecure_dev {
        return Ok(None);
    }
    let Some(key) = keys::create_bootstrap(meta, &config.auth.key_env).await? else {
        return Ok(None);
    };
    let path = bootstrap_key_path(config);
    if let Err(source) = write_secret_file(&path, &key.secret) {
        meta.revoke_key(&key.record.key_id).await?;
        return Err(StartError::BootstrapKey {
            path: path.display().to_string(),
            source,
        });
    }
    tracing::info!(path = %path.display(), key_id = %key.record.key_id, "bootstrap admin key written");
    Ok(Some(key.secret))
}

/// `auth.bootstrap_key_file`, or `bootstrap-admin.key` in the data folder.
pub fn bootstrap_key_path(config: &Config) -> std::path::PathBuf {
    if config.auth.bootstrap_key_file.as_os_str().is_empty() {
        config.storage.data_dir.join("bootstrap-admin.key")
    } else {
        config.auth.bootstrap_key_file.clone()
    }
}

/// Creates `path` (never overwrites) readable by its owner only.
pub(crate) fn write_secret_file(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{secret}")?;
    file.sync_all()
}

/// Starts workers and the HTTP server on `config.server.listen`.
pub async fn start(config: Config) -> Result<Running, StartError> {
    start_role(config, Role::Api).await
}

/// Starts the API (`Role::Api`) or a worker process (`Role::Worker`).
pub async fn start_role(config: Config, role: Role) -> Result<Running, StartError> {
    if role == Role::Worker && config.queue.url.is_empty() {
        return Err(StartError::Unsupported {
            what: "worker without queue.url (the embedded queue runs workers inside `serve`)",
            value: String::new(),
        });
    }
    let deps = crate::resolve::build_deps(&config).await?;
    start_with(config, deps, role).await
}

/// Starts workers and the HTTP server with the given ports.
pub async fn start_with(config: Config, deps: Deps, role: Role) -> Result<Running, StartError> {
    let bootstrap_admin_key = match role {
        Role::Api => bootstrap_admin_key(&config, deps.meta.as_ref()).await?,
        Role::Worker => None,
    };
    let listen = match role {
        Role::Api => config.server.listen.clone(),
        Role::Worker => config.worker.listen.clone(),
    };
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: listen.clone(),
        source,
    })?;
    let metrics = deps.metrics.clone();
    let (job_done, _) = broadcast::channel(1024);
    let (bookkeeper, bookkeeping) = Bookkeeper::start(deps.meta.clone());
    let ttl = Duration::from_millis(config.auth.key_cache_ttl_ms);
    let grants = Arc::new(GrantCache::new(
        Arc::new(crate::http::auth::StoredGrants(deps.meta.clone())),
        ttl,
        ttl,
        100_000,
    ));
    let services = Arc::new(Services::new(&deps, &config, bookkeeper, job_done.clone()));
    let (shutdown, shutdown_rx) = watch::channel(false);

    let external_queue = !config.queue.url.is_empty();
    let run_workers = role == Role::Worker || !external_queue || config.worker.in_process;
    let held = Arc::new(HeldJobs::default());
    let workers: Vec<JoinHandle<()>> = if run_workers {
        (0..config.worker.concurrency)
            .map(|i| {
                let worker = Worker::new(
                    deps.clone(),
                    config.worker.clone(),
                    job_done.clone(),
                    held.clone(),
                    i,
                );
                let rx = shutdown_rx.clone();
                tokio::spawn(async move { worker.run(rx).await })
            })
            .collect()
    } else {
        Vec::new()
    };
    let renewer = run_workers.then(|| {
        tokio::spawn(leases::renew(
            deps.meta.clone(),
            held.clone(),
            Duration::from_millis(config.worker.lease_ms.max(1)),
        ))
    });
    let mut background = Vec::new();
    // The outbox sweeper: for a broker, publishes lost between the store and
    // the broker; for the embedded queue, jobs past its bounded channel;
    // for both, jobs whose lease ran out.
    if run_workers || external_queue {
        background.push(tokio::spawn(crate::service::sweeper::run(
            deps.meta.clone(),
            deps.queue.clone(),
            deps.metrics.clone(),
            config.queue.sweep_after_ms,
            shutdown_rx.clone(),
        )));
    }
    // Retention and graph repair run where workers run (idempotent, so
    // several processes may run them).
    if run_workers && config.retention.enabled {
        let retention = crate::service::retention::Retention::new(deps.clone(), config.retention.batch);
        let every = Duration::from_secs(config.retention.every_s.max(1));
        background.push(tokio::spawn(retention.run(every, shutdown_rx.clone())));
    }
    if run_workers {
        let repairer = crate::service::repair::GraphRepairer::new(
            &deps,
            Duration::from_millis(config.worker.graph_repair_every_ms),
        );
        background.push(tokio::spawn(repairer.run(shutdown_rx.clone())));
    }
    let drain_timeout = Duration::from_millis(config.worker.drain_timeout_ms);
    let draining = Arc::new(AtomicBool::new(false));
    let state = AppState {
        services,
        grants,
        config: Arc::new(config),
        metrics,
        draining: draining.clone(),
    };

    let router = match role {
        Role::Api => crate::http::router(state.clone()),
        Role::Worker => crate::http::ops_router(state.clone()),
    };
    let mut rx = shutdown_rx.clone();
    let serve_options = pika_common::http::ServeOptions {
        header_read_timeout: Duration::from_millis(state.config.server.header_read_timeout_ms.max(1)),
        tls: state.config.server.tls.acceptor()?,
        drain_timeout: Duration::from_millis(state.config.server.drain_timeout_ms),
    };
    let shutdown_delay = Duration::from_millis(state.config.server.shutdown_delay_ms);
    let server = tokio::spawn(async move {
        // Readiness turns 503 first; requests are still served for
        // `server.shutdown_delay_ms` (load balancers stop sending), then no
        // connection is accepted and those in flight get `drain_timeout_ms`.
        let graceful = async move {
            while !*rx.borrow() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
            draining.store(true, Ordering::Relaxed);
            tokio::time::sleep(shutdown_delay).await;
        };
        pika_common::http::serve(listener, router, serve_options, graceful).await;
    });
    tracing::info!(%addr, ?role, "pika-dataplane listening");
    Ok(Running {
        addr,
        bookkeeping,
        bootstrap_admin_key,
        shutdown,
        server,
        workers,
        background,
        renewer,
        held,
        meta: deps.meta.clone(),
        metrics: deps.metrics.clone(),
        drain_timeout,
    })
}
