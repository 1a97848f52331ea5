//! Wiring: builds every port from configuration, starts the workers and the
//! HTTP server, and shuts them down together.

use crate::config::Config;
use crate::domain::Permission;
use crate::extract::{LlmExtractor, LlmOptions, RuleExtractor};
use crate::metrics::Metrics;
use crate::ports::{CacheSignals, Extractor, FactGraph, JobQueue, MetaStore, StoreError, VectorIndex};
use crate::queue::{EmbeddedQueue, RabbitMqOptions, RabbitMqQueue};
use crate::resilience::{
    Breaker, BreakerSettings, GuardedGraph, GuardedQueue, GuardedSignals, GuardedVectors,
};
use crate::service::bookkeeping::Bookkeeper;
use crate::service::keys;
use crate::service::worker::Worker;
use crate::store::{
    FalkorGraph, IndexSpec, LocalSignals, MilvusIndex, MilvusOptions, Neo4jGraph, Neo4jOptions,
    PostgresMetaStore, RedisSignals, SqliteGraph, SqliteMetaStore, SqliteVectorIndex,
};
use pika_common::embed::{
    E5Embedder, E5Options, Embedder, MiniLmEmbedder, MiniLmOptions, OpenAiEmbedder, OpenAiEmbedderOptions,
};
use std::net::SocketAddr;
use std::sync::Arc;
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
    Embed(#[from] pika_common::embed::EmbedError),
    #[error("extractor: {0}")]
    Extract(#[from] crate::ports::ExtractError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("unsupported {what} {value:?}")]
    Unsupported { what: &'static str, value: String },
    #[error("cannot create data dir {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
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

/// Shared state of handlers and workers.
#[derive(Clone)]
pub struct AppState {
    pub deps: Deps,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// Job ids announced when a job reaches a final state (for `?wait=true`).
    pub job_done: broadcast::Sender<String>,
    /// Batched audit and access-counter writes.
    pub bookkeeper: Bookkeeper,
}

/// Builds the embedder named by the configuration.
pub fn build_embedder(config: &Config) -> Result<Arc<dyn Embedder>, StartError> {
    let e = &config.embedding;
    match e.provider.as_str() {
        "local" | "minilm" => {
            let mut opts = MiniLmOptions::new(&e.model_dir);
            opts.threads = e.threads.max(1);
            opts.max_batch = e.max_batch.max(1);
            Ok(Arc::new(MiniLmEmbedder::load(opts)?))
        }
        "e5" => {
            let mut opts = E5Options::new(&e.e5_model_path);
            opts.threads = e.threads.max(1);
            opts.max_batch = e.max_batch.max(1);
            Ok(Arc::new(E5Embedder::load(opts)?))
        }
        "openai" => Ok(Arc::new(OpenAiEmbedder::new(OpenAiEmbedderOptions {
            base_url: e.base_url.clone(),
            api_key: e.api_key.expose().to_string(),
            model: e.model.clone(),
            dimension: e.dimension,
            request_dimensions: e.model.starts_with("text-embedding-3"),
            timeout: Duration::from_millis(e.timeout_ms),
        })?)),
        other => Err(StartError::Unsupported {
            what: "embedding.provider",
            value: other.into(),
        }),
    }
}

fn build_extractor(config: &Config) -> Result<Arc<dyn Extractor>, StartError> {
    let l = &config.llm;
    match l.provider.as_str() {
        "rules" => Ok(Arc::new(RuleExtractor)),
        "openai" => Ok(Arc::new(LlmExtractor::new(LlmOptions {
            base_url: l.base_url.clone(),
            api_key: l.api_key.expose().to_string(),
            model: l.model.clone(),
            timeout: Duration::from_millis(l.timeout_ms),
        })?)),
        other => Err(StartError::Unsupported {
            what: "llm.provider",
            value: other.into(),
        }),
    }
}

/// Opens (creating the data dir) the embedded SQLite database: the metadata
/// store when `meta_url` is SQLite, and the home of the embedded vector index
/// and graph.
pub async fn open_embedded_db(config: &Config) -> Result<SqliteMetaStore, StartError> {
    std::fs::create_dir_all(&config.storage.data_dir).map_err(|source| StartError::DataDir {
        path: config.storage.data_dir.display().to_string(),
        source,
    })?;
    let url = format!("sqlite://{}", config.storage.data_dir.join("pika.db").display());
    Ok(SqliteMetaStore::connect(&url).await?)
}

/// Opens the metadata store named by `storage.meta_url` (SQLite or PostgreSQL).
pub async fn open_meta(config: &Config) -> Result<Arc<dyn MetaStore>, StartError> {
    let url = config.meta_url();
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(
            PostgresMetaStore::connect(&url, None, config.storage.max_connections).await?,
        ))
    } else if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&config.storage.data_dir).map_err(|source| StartError::DataDir {
            path: config.storage.data_dir.display().to_string(),
            source,
        })?;
        Ok(Arc::new(SqliteMetaStore::connect(&url).await?))
    } else {
        let scheme = url.split(':').next().unwrap_or("").to_string();
        Err(StartError::Unsupported {
            what: "storage.meta_url scheme",
            value: scheme,
        })
    }
}

/// The Milvus connection and index settings of `[vector]`.
pub fn milvus_options(config: &Config) -> Result<MilvusOptions, StartError> {
    let v = &config.vector;
    let index = match v.index_type.to_ascii_uppercase().as_str() {
        "HNSW" => IndexSpec::Hnsw {
            m: v.hnsw_m,
            ef_construction: v.hnsw_ef_construction,
            ef: v.hnsw_ef,
        },
        "IVF_FLAT" => IndexSpec::IvfFlat {
            nlist: v.ivf_nlist,
            nprobe: v.ivf_nprobe,
        },
        "FLAT" => IndexSpec::Flat,
        "GPU_CAGRA" => IndexSpec::GpuCagra {
            intermediate_graph_degree: v.cagra_intermediate_graph_degree,
            graph_degree: v.cagra_graph_degree,
            itopk_size: v.cagra_itopk_size,
            search_width: v.cagra_search_width,
        },
        other => {
            return Err(StartError::Unsupported {
                what: "vector.index_type (HNSW, IVF_FLAT, FLAT or GPU_CAGRA)",
                value: other.into(),
            });
        }
    };
    Ok(MilvusOptions {
        url: v.url.expose().to_string(),
        token: v.token.expose().to_string(),
        collection_prefix: v.collection_prefix.clone(),
        num_partitions: v.num_partitions,
        index,
        timeout: Duration::from_millis(v.timeout_ms),
        visible_timeout: Duration::from_millis(v.visible_timeout_ms),
    })
}

/// Opens the vector index named by `vector.url`: Milvus, or the embedded index
/// in the data dir's SQLite file.
async fn open_vectors(
    config: &Config,
    embedder: &dyn Embedder,
    embedded: Option<&SqliteMetaStore>,
) -> Result<Arc<dyn VectorIndex>, StartError> {
    let url = config.vector.url.expose();
    if let (true, Some(db)) = (url.is_empty(), embedded) {
        return Ok(Arc::new(
            SqliteVectorIndex::open(db.pool(), embedder.model_id(), embedder.dimension()).await?,
        ));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(StartError::Unsupported {
            what: "vector.url scheme (http:// or https:// of Milvus)",
            value: url.split(':').next().unwrap_or("").to_string(),
        });
    }
    let index = MilvusIndex::new(milvus_options(config)?, embedder.model_id(), embedder.dimension());
    match index.ready().await {
        Ok(_) => {}
        // A wrong model is a configuration error; an absent Milvus only degrades search.
        Err(e @ StoreError::ModelMismatch { .. }) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "Milvus unavailable at start-up; search degrades to keywords until it answers")
        }
    }
    Ok(Arc::new(index))
}

/// Which processes consume jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `serve`: the API (and, with the embedded queue, the workers).
    Api,
    /// `worker`: extraction workers only.
    Worker,
}

/// Builds every port from configuration and, for the embedded queue, recovers unfinished jobs.
pub async fn build_deps(config: &Config) -> Result<Deps, StartError> {
    let metrics = Arc::new(Metrics::new()?);
    let meta = open_meta(config).await?;
    let embedder = build_embedder(config)?;
    let graph_url = config.storage.graph_url.expose();
    // The embedded SQLite file is opened only when some port lives in it.
    let embedded = if config.vector.url.is_empty() || graph_url.is_empty() {
        Some(open_embedded_db(config).await?)
    } else {
        None
    };
    let vectors = open_vectors(config, embedder.as_ref(), embedded.as_ref()).await?;
    let graph: Arc<dyn FactGraph> = if let (true, Some(db)) = (graph_url.is_empty(), embedded.as_ref()) {
        Arc::new(SqliteGraph::new(db.pool()))
    } else if graph_url.starts_with("falkordb://") || graph_url.starts_with("redis://") {
        let timeout = Duration::from_millis(config.storage.graph_timeout_ms);
        Arc::new(FalkorGraph::connect(graph_url, &config.storage.graph_name, timeout).await?)
    } else if ["neo4j://", "neo4j+s://", "bolt://", "bolt+s://"]
        .iter()
        .any(|s| graph_url.starts_with(s))
    {
        Arc::new(
            Neo4jGraph::connect(Neo4jOptions {
                uri: graph_url.to_string(),
                user: String::new(),
                password: String::new(),
                database: String::new(),
                max_connections: config.storage.max_connections as usize,
                timeout: Duration::from_millis(config.storage.graph_timeout_ms),
            })
            .await?,
        )
    } else {
        let scheme = graph_url.split(':').next().unwrap_or("").to_string();
        return Err(StartError::Unsupported {
            what: "storage.graph_url scheme (falkordb://, redis://, neo4j://, bolt://)",
            value: scheme,
        });
    };
    let queue: Arc<dyn JobQueue> = if config.queue.url.is_empty() {
        let (queue, pending) = EmbeddedQueue::recover(meta.as_ref()).await?;
        if pending > 0 {
            tracing::info!(pending, "unfinished jobs re-delivered to workers");
        }
        Arc::new(queue)
    } else {
        Arc::new(
            RabbitMqQueue::connect(RabbitMqOptions {
                url: config.queue.url.expose().to_string(),
                queue: config.queue.name.clone(),
                prefetch: config.worker.concurrency.min(u16::MAX as usize) as u16,
                publish_timeout: Duration::from_millis(config.queue.publish_timeout_ms),
            })
            .await?,
        )
    };
    let signals: Arc<dyn CacheSignals> = if config.cache.redis_url.is_empty() {
        Arc::new(LocalSignals::default())
    } else {
        // Lazy: the service must start and serve while Redis is down.
        Arc::new(RedisSignals::new(
            config.cache.redis_url.expose(),
            Duration::from_millis(config.cache.timeout_ms),
        )?)
    };
    let r = &config.resilience;
    let settings = BreakerSettings {
        failures: r.breaker_failures,
        open_min: Duration::from_millis(r.breaker_open_min_ms),
        open_max: Duration::from_millis(r.breaker_open_max_ms),
    };
    let mut breakers = Vec::new();
    let mut guard = |name: &'static str| {
        let b = Arc::new(Breaker::new(name, settings, &metrics));
        breakers.push(b.clone());
        b
    };
    // Embedded adapters share the process's fate; only remote ones get a breaker.
    let vectors: Arc<dyn VectorIndex> = if config.vector.url.is_empty() {
        vectors
    } else {
        Arc::new(GuardedVectors {
            inner: vectors,
            breaker: guard("vectors"),
        })
    };
    let graph: Arc<dyn FactGraph> = if config.storage.graph_url.is_empty() {
        graph
    } else {
        Arc::new(GuardedGraph {
            inner: graph,
            breaker: guard("graph"),
        })
    };
    let signals: Arc<dyn CacheSignals> = if config.cache.redis_url.is_empty() {
        signals
    } else {
        Arc::new(GuardedSignals {
            inner: signals,
            breaker: guard("redis"),
        })
    };
    let queue: Arc<dyn JobQueue> = if config.queue.url.is_empty() {
        queue
    } else {
        Arc::new(GuardedQueue {
            inner: queue,
            breaker: guard("queue"),
        })
    };
    Ok(Deps {
        meta,
        vectors,
        graph,
        queue,
        signals,
        embedder,
        extractor: build_extractor(config)?,
        metrics,
        breakers,
    })
}

/// A running service.
pub struct Running {
    pub addr: SocketAddr,
    /// The admin key created on first start (no keys existed), shown once.
    pub bootstrap_admin_key: Option<String>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    bookkeeping: JoinHandle<()>,
}

impl Running {
    /// Stops accepting requests, drains in-flight ones and finishes in-flight jobs.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.wait().await;
    }

    /// Waits until the server stops (after a signal).
    pub async fn wait(self) {
        let _ = self.server.await;
        for w in self.workers {
            let _ = w.await;
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

/// Creates the first admin key when the store has none.
pub async fn bootstrap_admin_key(
    config: &Config,
    meta: &dyn MetaStore,
) -> Result<Option<String>, StoreError> {
    if config.auth.insecure_dev || !meta.list_keys().await?.is_empty() {
        return Ok(None);
    }
    let key = keys::create(
        meta,
        &config.auth.key_env,
        "bootstrap-admin",
        vec![Permission::Admin],
        None,
    )
    .await?;
    Ok(Some(key.secret))
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
    let deps = build_deps(&config).await?;
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
    let state = AppState {
        bookkeeper,
        deps,
        config: Arc::new(config),
        metrics,
        job_done,
    };
    let (shutdown, shutdown_rx) = watch::channel(false);

    let external_queue = !state.config.queue.url.is_empty();
    let run_workers = role == Role::Worker || !external_queue || state.config.worker.in_process;
    let mut workers: Vec<JoinHandle<()>> = if run_workers {
        (0..state.config.worker.concurrency)
            .map(|i| {
                let worker = Worker::new(state.clone(), i);
                let rx = shutdown_rx.clone();
                tokio::spawn(async move { worker.run(rx).await })
            })
            .collect()
    } else {
        Vec::new()
    };
    if external_queue {
        workers.push(tokio::spawn(crate::service::sweeper::run(
            state.clone(),
            shutdown_rx.clone(),
        )));
    }

    let router = match role {
        Role::Api => crate::http::router(state.clone()),
        Role::Worker => crate::http::ops_router(state.clone()),
    };
    let mut rx = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        let graceful = async move {
            while !*rx.borrow() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(graceful)
            .await
        {
            tracing::error!(error = %e, "http server failed");
        }
    });
    tracing::info!(%addr, ?role, "pika-dataplane listening");
    Ok(Running {
        addr,
        bookkeeping,
        bootstrap_admin_key,
        shutdown,
        server,
        workers,
    })
}
