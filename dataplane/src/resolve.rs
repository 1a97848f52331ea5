//! The one place a URL in the configuration becomes an adapter (DESIGN.md
//! §4.3): `serve`, `worker`, `migrate`, `reindex` and the tests all resolve
//! their ports here. Each `*_backend` function reads a URL's scheme into a
//! backend choice (an empty URL is the embedded default); [`build_deps`]
//! opens them all and puts breakers in front of the remote ones.

use crate::app::{Deps, StartError};
use crate::config::Config;
use crate::extract::{LlmExtractor, LlmOptions, RuleExtractor};
use crate::metrics::Metrics;
use crate::ports::{
    CacheSignals, DataKeyStore, Extractor, FactGraph, JobQueue, MetaStore, StoreError, VectorIndex,
};
use crate::queue::{EmbeddedQueue, RabbitMqOptions, RabbitMqQueue};
use crate::resilience::{
    Breaker, BreakerSettings, GuardedGraph, GuardedQueue, GuardedSignals, GuardedVectors,
};
use crate::store::{
    FalkorGraph, IndexSpec, LocalSignals, MilvusIndex, MilvusOptions, Neo4jGraph, Neo4jOptions,
    PostgresDataKeys, PostgresMetaStore, RedisSignals, SqliteDataKeys, SqliteGraph, SqliteMetaStore,
    SqliteVectorIndex, redis_client,
};
use crate::vault::kek::KekRing;
use crate::vault::{SealedGraph, SealedMeta, Vault};
use pika_embed::Embedder;
use std::sync::Arc;
use std::time::Duration;

/// Where the metadata lives (`storage.meta_url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaBackend {
    Sqlite(String),
    Postgres(String),
}

/// Where the vectors live (`vector.url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VectorBackend {
    /// In the data dir's SQLite file.
    Embedded,
    Milvus,
}

/// Where the entity graph lives (`storage.graph_url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphBackend {
    Embedded,
    FalkorDb(String),
    Neo4j(String),
}

fn scheme(url: &str) -> String {
    url.split(':').next().unwrap_or("").to_string()
}

pub fn meta_backend(config: &Config) -> Result<MetaBackend, StartError> {
    let url = config.meta_url();
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(MetaBackend::Postgres(url))
    } else if url.starts_with("sqlite:") {
        Ok(MetaBackend::Sqlite(url))
    } else {
        Err(StartError::Unsupported {
            what: "storage.meta_url scheme (sqlite:, postgres:)",
            value: scheme(&url),
        })
    }
}

pub fn vector_backend(config: &Config) -> Result<VectorBackend, StartError> {
    let url = config.vector.url.expose();
    if url.is_empty() {
        Ok(VectorBackend::Embedded)
    } else if url.starts_with("http://") || url.starts_with("https://") {
        Ok(VectorBackend::Milvus)
    } else {
        Err(StartError::Unsupported {
            what: "vector.url scheme (http:// or https:// of Milvus)",
            value: scheme(url),
        })
    }
}

pub fn graph_backend(config: &Config) -> Result<GraphBackend, StartError> {
    let url = config.storage.graph_url.expose();
    if url.is_empty() {
        Ok(GraphBackend::Embedded)
    } else if url.starts_with("falkordb://") || url.starts_with("redis://") {
        Ok(GraphBackend::FalkorDb(url.to_string()))
    } else if ["neo4j://", "neo4j+s://", "bolt://", "bolt+s://"]
        .iter()
        .any(|s| url.starts_with(s))
    {
        Ok(GraphBackend::Neo4j(url.to_string()))
    } else {
        Err(StartError::Unsupported {
            what: "storage.graph_url scheme (falkordb://, redis://, neo4j://, bolt://)",
            value: scheme(url),
        })
    }
}

/// The configured embedder (`[embedding]`).
pub fn build_embedder(config: &Config) -> Result<Arc<dyn Embedder>, StartError> {
    Ok(pika_embed::build(&config.embedding)?)
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

fn create_data_dir(config: &Config) -> Result<(), StartError> {
    std::fs::create_dir_all(&config.storage.data_dir).map_err(|source| StartError::DataDir {
        path: config.storage.data_dir.display().to_string(),
        source,
    })
}

/// Opens (creating the data dir) the embedded SQLite database: the metadata
/// store when `meta_url` is SQLite, and the home of the embedded vector index
/// and graph.
pub async fn open_embedded_db(config: &Config) -> Result<SqliteMetaStore, StartError> {
    create_data_dir(config)?;
    let url = format!("sqlite://{}", config.storage.data_dir.join("pika.db").display());
    Ok(SqliteMetaStore::connect_with(&url, config.storage.durable_commits).await?)
}

/// Opens the metadata store (and applies its migrations), sealed when
/// encryption is on.
pub async fn open_meta(config: &Config) -> Result<Arc<dyn MetaStore>, StartError> {
    let vault = open_vault(config).await?;
    open_meta_with(config, vault.as_ref()).await
}

async fn open_meta_with(
    config: &Config,
    vault: Option<&Arc<Vault>>,
) -> Result<Arc<dyn MetaStore>, StartError> {
    let plain: Arc<dyn MetaStore> = match meta_backend(config)? {
        MetaBackend::Postgres(url) => {
            Arc::new(PostgresMetaStore::connect(&url, None, config.storage.max_connections).await?)
        }
        MetaBackend::Sqlite(url) => {
            create_data_dir(config)?;
            Arc::new(SqliteMetaStore::connect_with(&url, config.storage.durable_commits).await?)
        }
    };
    Ok(match vault {
        Some(v) => Arc::new(SealedMeta::new(plain, v.clone())),
        None => plain,
    })
}

/// The KEKs and the keyring (`[encryption]`), or `None` when sealing is off.
pub async fn open_vault(config: &Config) -> Result<Option<Arc<Vault>>, StartError> {
    let e = &config.encryption;
    if !e.enabled {
        return Ok(None);
    }
    create_data_dir(config)?;
    let keks = KekRing::load(e, &config.storage.data_dir)?;
    let url = if e.keyring_url.is_empty() {
        match meta_backend(config)? {
            MetaBackend::Sqlite(_) => format!(
                "sqlite://{}",
                config.storage.data_dir.join("keyring.db").display()
            ),
            MetaBackend::Postgres(url) => url,
        }
    } else {
        e.keyring_url.expose().to_string()
    };
    let store: Arc<dyn DataKeyStore> = match scheme(&url).as_str() {
        "sqlite" => Arc::new(SqliteDataKeys::connect(&url).await?),
        "postgres" | "postgresql" => {
            Arc::new(PostgresDataKeys::connect(&url, config.storage.max_connections).await?)
        }
        other => {
            return Err(StartError::Unsupported {
                what: "encryption.keyring_url scheme",
                value: other.to_string(),
            });
        }
    };
    Ok(Some(Arc::new(Vault::new(
        keks,
        store,
        Duration::from_millis(e.key_cache_ttl_ms),
    ))))
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
        ca_file: v.ca_file.clone(),
        collection_prefix: v.collection_prefix.clone(),
        num_partitions: v.num_partitions,
        index,
        timeout: Duration::from_millis(v.timeout_ms),
        visible_timeout: Duration::from_millis(v.visible_timeout_ms),
    })
}

/// Opens the vector index: Milvus, or the embedded index in the data dir's
/// SQLite file.
async fn open_vectors(
    config: &Config,
    embedder: &dyn Embedder,
    embedded: Option<&SqliteMetaStore>,
) -> Result<Arc<dyn VectorIndex>, StartError> {
    match (vector_backend(config)?, embedded) {
        (VectorBackend::Embedded, Some(db)) => Ok(Arc::new(
            SqliteVectorIndex::open(db.pool(), embedder.model_id(), embedder.dimension()).await?,
        )),
        (VectorBackend::Embedded, None) => {
            let db = open_embedded_db(config).await?;
            Ok(Arc::new(
                SqliteVectorIndex::open(db.pool(), embedder.model_id(), embedder.dimension()).await?,
            ))
        }
        (VectorBackend::Milvus, _) => {
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
    }
}

async fn open_graph(
    config: &Config,
    embedded: Option<&SqliteMetaStore>,
) -> Result<Arc<dyn FactGraph>, StartError> {
    let timeout = Duration::from_millis(config.storage.graph_timeout_ms);
    Ok(match graph_backend(config)? {
        GraphBackend::Embedded => match embedded {
            Some(db) => Arc::new(SqliteGraph::new(db.pool())),
            None => Arc::new(SqliteGraph::new(open_embedded_db(config).await?.pool())),
        },
        GraphBackend::FalkorDb(url) => {
            Arc::new(FalkorGraph::connect(&url, &config.storage.graph_name, timeout).await?)
        }
        GraphBackend::Neo4j(uri) => Arc::new(
            Neo4jGraph::connect(Neo4jOptions {
                uri,
                user: String::new(),
                password: String::new(),
                database: String::new(),
                max_connections: config.storage.max_connections as usize,
                timeout,
            })
            .await?,
        ),
    })
}

/// Builds every port from configuration and, for the embedded queue,
/// recovers unfinished jobs.
pub async fn build_deps(config: &Config) -> Result<Deps, StartError> {
    let (ports, mut breakers) = build(config).await?;
    let queue = open_queue(config, ports.meta.as_ref()).await?;
    let queue: Arc<dyn JobQueue> = if config.queue.url.is_empty() {
        queue
    } else {
        let breaker = Arc::new(Breaker::new("queue", breaker_settings(config), &ports.metrics));
        breakers.push(breaker.clone());
        Arc::new(GuardedQueue {
            inner: queue,
            breaker,
        })
    };
    Ok(Deps {
        meta: ports.meta,
        vectors: ports.vectors,
        graph: ports.graph,
        queue,
        signals: ports.signals,
        embedder: ports.embedder,
        extractor: build_extractor(config)?,
        metrics: ports.metrics,
        breakers,
    })
}

/// The ports that store memories, for tools that write them without
/// serving (`pika-dataplane import`): no queue is opened, so a running
/// server's unfinished jobs are left to it.
pub struct StorePorts {
    pub meta: Arc<dyn MetaStore>,
    pub vectors: Arc<dyn VectorIndex>,
    pub graph: Arc<dyn FactGraph>,
    pub signals: Arc<dyn CacheSignals>,
    pub embedder: Arc<dyn Embedder>,
    pub metrics: Arc<Metrics>,
}

pub async fn build_store_ports(config: &Config) -> Result<StorePorts, StartError> {
    Ok(build(config).await?.0)
}

fn breaker_settings(config: &Config) -> BreakerSettings {
    let r = &config.resilience;
    BreakerSettings {
        failures: r.breaker_failures,
        open_min: Duration::from_millis(r.breaker_open_min_ms),
        open_max: Duration::from_millis(r.breaker_open_max_ms),
    }
}

/// Every port but the queue, behind breakers where remote.
async fn build(config: &Config) -> Result<(StorePorts, Vec<Arc<Breaker>>), StartError> {
    let metrics = Arc::new(Metrics::new()?);
    let vault = open_vault(config).await?;
    let meta = open_meta_with(config, vault.as_ref()).await?;
    let embedder = build_embedder(config)?;
    // The embedded SQLite file is opened once, when some port lives in it.
    let embedded = if vector_backend(config)? == VectorBackend::Embedded
        || graph_backend(config)? == GraphBackend::Embedded
    {
        Some(open_embedded_db(config).await?)
    } else {
        None
    };
    let vectors = open_vectors(config, embedder.as_ref(), embedded.as_ref()).await?;
    let graph = open_graph(config, embedded.as_ref()).await?;
    let graph: Arc<dyn FactGraph> = match &vault {
        Some(v) => Arc::new(SealedGraph::new(graph, v.clone())),
        None => graph,
    };
    let signals: Arc<dyn CacheSignals> = if config.cache.redis_url.is_empty() {
        Arc::new(LocalSignals::default())
    } else {
        // Lazy: the service must start and serve while Redis is down.
        Arc::new(RedisSignals::from_client(
            redis_client(
                config.cache.redis_url.expose(),
                &config.cache.redis_ca_file,
                "redis",
            )?,
            Duration::from_millis(config.cache.timeout_ms),
        ))
    };
    let settings = breaker_settings(config);
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
    let ports = StorePorts {
        meta,
        vectors,
        graph,
        signals,
        embedder,
        metrics,
    };
    Ok((ports, breakers))
}

/// The job queue of `queue.url`, or the embedded one over the jobs table
/// (which re-delivers unfinished jobs: only a serving process opens it).
///
/// For a command that publishes (a re-drive): the broker, or `None` for the
/// embedded queue, which only the serving process may open; its sweeper
/// publishes jobs queued by another process within `queue.sweep_after_ms`.
pub async fn open_broker(config: &Config) -> Result<Option<Arc<dyn JobQueue>>, StartError> {
    if config.queue.url.is_empty() {
        return Ok(None);
    }
    let meta = open_meta(config).await?;
    open_queue(config, meta.as_ref()).await.map(Some)
}

async fn open_queue(config: &Config, meta: &dyn MetaStore) -> Result<Arc<dyn JobQueue>, StartError> {
    let queue: Arc<dyn JobQueue> = if config.queue.url.is_empty() {
        let (queue, pending) = EmbeddedQueue::recover(meta).await?;
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
                ca_file: config.queue.ca_file.clone(),
            })
            .await?,
        )
    };
    Ok(queue)
}
