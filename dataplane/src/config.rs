//! Configuration: compiled-in defaults, then a TOML file (`--config`), then
//! `PIKA__SECTION__KEY` environment variables, then command-line flags.
//!
//! With nothing set the service runs fully embedded under `./data`.
//!
//! Over 400 lines on purpose: `Config` is one document; most lines are field
//! docs and defaults, one section after another.

use pika_common::config::load_layered;
pub use pika_common::telemetry::LogConfig;
use pika_common::tls::ServerTlsConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use pika_common::secret::Secret;
pub use pika_embed::EmbeddingConfig;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub queue: QueueConfig,
    pub cache: CacheConfig,
    pub vector: VectorConfig,
    pub resilience: ResilienceConfig,
    pub embedding: EmbeddingConfig,
    pub llm: LlmConfig,
    pub worker: WorkerConfig,
    pub search: SearchConfig,
    pub auth: AuthConfig,
    pub retention: RetentionConfig,
    pub encryption: EncryptionConfig,
    pub log: LogConfig,
}

/// Sealing at rest (docs/SECURITY.md): per-child data keys in a keyring,
/// wrapped by key-encryption keys (KEKs) from a file or a Secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Seal conversation text, fact and episode content, history text and
    /// user names, and blind the keyword index and graph entity names.
    pub enabled: bool,
    /// The KEK file: one `ID BASE64KEY` per line, the last one active.
    /// Empty: `{storage.data_dir}/kek.keys`.
    pub kek_file: PathBuf,
    /// KEKs given inline instead of a file (`ID=BASE64;ID=BASE64`, the last
    /// active), e.g. from a Kubernetes Secret as `PIKA__ENCRYPTION__KEKS`.
    pub keks: Secret,
    /// The KEK that wraps new data keys; empty: the last one listed.
    pub active_kek: String,
    /// Create the KEK file (mode 0600) when it does not exist. Right for one
    /// machine (the embedded default); off where replicas must share a KEK
    /// from a Secret (the operator turns it off).
    pub generate_kek: bool,
    /// Where data keys live. Empty: `{storage.data_dir}/keyring.db` when
    /// the metadata store is SQLite, the metadata database otherwise (name a
    /// separate database so metadata backups hold no keys).
    pub keyring_url: Secret,
    /// How long an unwrapped data key stays in memory for reads.
    pub key_cache_ttl_ms: u64,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        EncryptionConfig {
            enabled: true,
            kek_file: PathBuf::new(),
            keks: Secret::default(),
            active_kek: String::new(),
            generate_kek: true,
            keyring_url: Secret::default(),
            key_cache_ttl_ms: 60_000,
        }
    }
}

/// The retention sweep (each tenant's `retention_days`), run by the
/// processes that run workers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    pub enabled: bool,
    /// Seconds between sweeps.
    pub every_s: u64,
    /// Facts and episodes removed per tenant per transaction.
    pub batch: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            enabled: true,
            every_s: 3600,
            batch: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    /// Longest `?wait=true` may hold an extract request, in milliseconds.
    pub max_wait_ms: u64,
    /// Deadline for one request, in milliseconds (at least `max_wait_ms` +
    /// 1 s, so that `?wait=true` keeps its own bound); past it the answer is
    /// 503 `SERVICE_UNAVAILABLE` with `Retry-After`.
    pub request_timeout_ms: u64,
    /// Requests in flight at once; beyond, 503 with `Retry-After` at once
    /// (load shedding). Liveness and metrics are exempt.
    pub max_in_flight: usize,
    /// `?wait=true` extracts held open at once, in all and per API key;
    /// beyond, the extract answers 202 at once (the client polls the job).
    pub max_waiting: usize,
    pub max_waiting_per_key: usize,
    /// A client must send a request's headers within this, else its
    /// connection is closed (slow-header attacks); idle keep-alive
    /// connections close after it too.
    pub header_read_timeout_ms: u64,
    /// HTTPS (rustls) when `tls.cert_file` is set; in a pod the sidecar is
    /// the way in and serves TLS, and this listens on loopback in plain HTTP.
    pub tls: ServerTlsConfig,
    /// On shutdown, how long the server goes on serving with readiness
    /// already 503, so load balancers stop sending before it stops accepting.
    pub shutdown_delay_ms: u64,
    /// Then, how long requests in flight may take to finish before their
    /// connections are closed.
    pub drain_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Folder for the embedded SQLite database.
    pub data_dir: PathBuf,
    /// Metadata store URL: empty means `sqlite://{data_dir}/pika.db`;
    /// `postgres://user:pass@host/db` for production.
    pub meta_url: Secret,
    /// Connections in the metadata store's pool (PostgreSQL).
    pub max_connections: u32,
    /// Graph store: empty means the embedded SQLite tables; `falkordb://host:6379`
    /// for FalkorDB; `neo4j://user:password@host:7687` (or `bolt://`) for Neo4j
    /// (its default database).
    pub graph_url: Secret,
    /// Graph name (FalkorDB key).
    pub graph_name: String,
    /// Deadline for one graph call, in milliseconds.
    pub graph_timeout_ms: u64,
    /// Embedded SQLite: every commit reaches the disk before it returns
    /// (`synchronous=FULL`), so an accepted job survives an OS crash or
    /// power loss; false trades that for cheaper commits (WAL `NORMAL`:
    /// a process crash still loses nothing).
    pub durable_commits: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Empty: the embedded queue (jobs table, in-process workers, one process
    /// only). `amqp://user:pass@host:5672/%2f`: RabbitMQ; `amqps://` over
    /// TLS (system roots, or `ca_file`).
    pub url: Secret,
    /// PEM CA certificate(s) that sign the broker's certificate, for a
    /// private CA; empty: the system roots.
    pub ca_file: PathBuf,
    /// Base name of the queues (`NAME`, `NAME.retry`, `NAME.dead`).
    pub name: String,
    pub publish_timeout_ms: u64,
    /// The outbox sweeper republishes jobs still `queued` after this long.
    pub sweep_after_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Empty: in-process generations. `redis://host:6379`: Redis generations
    /// and `pika:invalidate` messages for the sidecars; `rediss://` over TLS
    /// (system roots, or `redis_ca_file`).
    pub redis_url: Secret,
    /// PEM CA certificate(s) of a Redis with a private CA.
    pub redis_ca_file: PathBuf,
    pub timeout_ms: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            url: Secret::default(),
            name: "pika.jobs".into(),
            publish_timeout_ms: 5_000,
            sweep_after_ms: 30_000,
            ca_file: PathBuf::new(),
        }
    }
}

/// The vector index: embedded (exact search in SQLite) or Milvus.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VectorConfig {
    /// Empty: the embedded exact index. `http://host:19530`: Milvus;
    /// `https://` over TLS (system roots, or `ca_file`).
    pub url: Secret,
    /// PEM CA certificate of a Milvus with a private CA (turns TLS on).
    pub ca_file: PathBuf,
    /// Milvus token (`user:password`); empty when authentication is off.
    pub token: Secret,
    /// Collections are named `{collection_prefix}_{model}_{dimension}`.
    pub collection_prefix: String,
    /// Partitions behind the `user_id` partition key.
    pub num_partitions: i64,
    /// `HNSW`, `IVF_FLAT`, `FLAT` or `GPU_CAGRA` (needs a Milvus with a GPU).
    pub index_type: String,
    /// HNSW graph degree.
    pub hnsw_m: u32,
    pub hnsw_ef_construction: u32,
    /// HNSW search breadth (raised to `k` when smaller).
    pub hnsw_ef: u32,
    pub ivf_nlist: u32,
    pub ivf_nprobe: u32,
    pub cagra_intermediate_graph_degree: u32,
    pub cagra_graph_degree: u32,
    pub cagra_itopk_size: u32,
    pub cagra_search_width: u32,
    /// Deadline for one call to the vector store, in milliseconds.
    pub timeout_ms: u64,
    /// Longest a write waits until searches can see it (read-your-writes), in milliseconds.
    pub visible_timeout_ms: u64,
}

impl Default for VectorConfig {
    fn default() -> Self {
        VectorConfig {
            url: Secret::default(),
            token: Secret::default(),
            ca_file: PathBuf::new(),
            collection_prefix: "pika_facts".into(),
            num_partitions: 64,
            index_type: "HNSW".into(),
            hnsw_m: 16,
            hnsw_ef_construction: 200,
            hnsw_ef: 64,
            ivf_nlist: 1024,
            ivf_nprobe: 16,
            cagra_intermediate_graph_degree: 64,
            cagra_graph_degree: 32,
            cagra_itopk_size: 64,
            cagra_search_width: 4,
            timeout_ms: 1_000,
            visible_timeout_ms: 5_000,
        }
    }
}

/// Circuit breakers in front of the vector store, the graph and Redis.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ResilienceConfig {
    /// Consecutive transient failures that open a dependency's breaker.
    pub breaker_failures: u32,
    /// Shortest pause before a trial call, in milliseconds (whole seconds, at least 1000;
    /// the first pause is jittered between this and twice this).
    pub breaker_open_min_ms: u64,
    /// Longest pause between trial calls, in milliseconds.
    pub breaker_open_max_ms: u64,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        ResilienceConfig {
            breaker_failures: 5,
            breaker_open_min_ms: 1_000,
            breaker_open_max_ms: 30_000,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            redis_url: Secret::default(),
            redis_ca_file: PathBuf::new(),
            timeout_ms: 500,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// `rules` (built-in extractor) or `openai` (chat completions with a JSON schema).
    pub provider: String,
    pub base_url: String,
    pub api_key: Secret,
    pub model: String,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// In-process extraction workers (embedded queue).
    pub concurrency: usize,
    /// Most attempts of one job (a bound besides `retry_horizon_ms`).
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt up to `retry_max_delay_ms`,
    /// with jitter.
    pub retry_base_ms: u64,
    /// Longest pause between two attempts.
    pub retry_max_delay_ms: u64,
    /// How long transient failures (a dependency down or restarting) are
    /// retried before the job fails, counted from its acceptance or its last
    /// re-drive. It outlasts a dependency restart: minutes, not seconds.
    pub retry_horizon_ms: u64,
    /// A worker holds a job under a lease it renews every third of this; a
    /// job whose lease ran out (its worker died or hung) is queued again.
    pub lease_ms: u64,
    /// On shutdown, how long in-flight jobs may run on; past it they are
    /// handed back to the queue unfinished.
    pub drain_timeout_ms: u64,
    /// Longest one attempt of a job may take (extraction, embedding, side
    /// stores); past it the attempt counts as a transient failure. A hung
    /// call in a live process would otherwise hold the job for ever: its
    /// lease is renewed as long as the process lives.
    pub job_timeout_ms: u64,
    /// How often graph writes missed while the graph was down are retried.
    pub graph_repair_every_ms: u64,
    /// With an external queue, `serve` also runs workers (set false when a
    /// separate `pika-dataplane worker` Deployment does the work).
    pub in_process: bool,
    /// Health and metrics address of `pika-dataplane worker`.
    pub listen: String,
    /// Cosine at or above which a candidate is the same fact as an existing one
    /// (MiniLM and OpenAI-compatible embedders).
    pub duplicate_threshold: f32,
    /// The same for multilingual-e5, whose cosines run high: measured, "Bé thích
    /// mèo" / "Bé thích chó" 0.965 and "Bé thích ăn kem" / "Bé rất thích ăn
    /// kem" 0.996, so only near-identical wording is a duplicate by cosine alone.
    pub duplicate_threshold_e5: f32,
    /// With multilingual-e5, a candidate in another language than an existing
    /// fact is its duplicate at this cosine or above when both name the same
    /// entities with the same predicate and polarity ("Bé nuôi chó" / "The
    /// child has a dog": 0.86).
    pub cross_lingual_threshold_e5: f32,
    /// Cosine at or above which an existing fact is shown to the decision step.
    pub related_threshold: f32,
    /// Most consecutive user messages kept as one episode (1: one per message).
    pub episode_max_messages: usize,
    /// Most characters of one episode (a longer run of messages is split).
    pub episode_max_chars: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    pub weight_similarity: f32,
    pub weight_recency: f32,
    pub weight_relationship: f32,
    pub recency_half_life_days: f32,
    /// How strongly a keyword match lifts a weak vector score (0..1) in the
    /// reported `similarity` (the relevance floor `score_threshold` applies to).
    pub keyword_weight: f32,
    /// Vector hits fetched per requested result (over-fetch before re-ranking).
    pub overfetch: usize,
    /// Fewest candidates taken from each of the dense and keyword lists.
    pub min_candidates: usize,
    /// Reciprocal-rank fusion constant (larger: flatter).
    pub rrf_k: f32,
    /// Weight of the dense ranking in the fusion.
    pub rrf_dense_weight: f32,
    /// Weight of the BM25 ranking in the fusion.
    pub rrf_keyword_weight: f32,
    /// Weight of topic-expansion terms ("thú cưng" → "mèo") against the query's own words in BM25.
    pub expansion_weight: f32,
    /// Fused-relevance bonus for items that name a date, when the query asks "when".
    pub dated_bonus: f32,
    /// Cosine that unrelated texts already reach with the embedder; cosines are
    /// rescaled from it to 1 before thresholding. Negative: chosen by model
    /// (0.75 for multilingual-e5, 0 otherwise).
    pub cosine_floor: f32,
    /// Keep only the best of the results that share a user turn (a fact and
    /// the episode it came from).
    pub collapse_same_turn: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Turn off API keys (local experiments only).
    pub insecure_dev: bool,
    /// Environment label inside generated keys: `pika_{env}_sk_...`.
    pub key_env: String,
    /// How long a key's grant is trusted before the key store is asked again:
    /// a revoked key keeps working at most this long (plus the sidecar's own
    /// `--key-cache-ttl-ms`). 0 asks on every request.
    pub key_cache_ttl_ms: u64,
    /// Where the admin key made on first start is written (mode 0600), once:
    /// never to the logs; on stdout only when stdout is a terminal. Empty:
    /// `{storage.data_dir}/bootstrap-admin.key`.
    pub bootstrap_key_file: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8081".into(),
            max_wait_ms: 30_000,
            request_timeout_ms: 30_000,
            max_in_flight: 512,
            max_waiting: 256,
            max_waiting_per_key: 32,
            header_read_timeout_ms: 10_000,
            tls: ServerTlsConfig::default(),
            shutdown_delay_ms: 0,
            drain_timeout_ms: 25_000,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("data"),
            meta_url: Secret::default(),
            max_connections: 16,
            graph_url: Secret::default(),
            graph_name: "pika".into(),
            graph_timeout_ms: 1_000,
            durable_commits: true,
        }
    }
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            provider: "rules".into(),
            base_url: "https://api.openai.com/v1".into(),
            api_key: Secret::default(),
            model: "gpt-4o-mini".into(),
            timeout_ms: 30_000,
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 2,
            in_process: true,
            listen: "127.0.0.1:8082".into(),
            max_attempts: 40,
            retry_base_ms: 500,
            retry_max_delay_ms: 30_000,
            retry_horizon_ms: 600_000,
            lease_ms: 30_000,
            drain_timeout_ms: 30_000,
            job_timeout_ms: 300_000,
            graph_repair_every_ms: 5_000,
            duplicate_threshold: 0.92,
            duplicate_threshold_e5: 0.985,
            cross_lingual_threshold_e5: 0.84,
            related_threshold: 0.6,
            episode_max_messages: 3,
            episode_max_chars: 1200,
        }
    }
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            // Measured on the child set (docs/QUALITY.md): the SDD's 0.7/0.2/0.1
            // cost 0.10 of recall@3 against these; recency stays as a small
            // newest-state signal, the entity signal is off by default.
            weight_similarity: 0.9,
            weight_recency: 0.1,
            weight_relationship: 0.0,
            recency_half_life_days: 30.0,
            keyword_weight: 0.85,
            overfetch: 3,
            min_candidates: 100,
            rrf_k: 60.0,
            rrf_dense_weight: 1.0,
            rrf_keyword_weight: 1.0,
            expansion_weight: 0.3,
            dated_bonus: 0.3,
            cosine_floor: -1.0,
            collapse_same_turn: true,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            insecure_dev: false,
            key_env: "live".into(),
            key_cache_ttl_ms: 5_000,
            bootstrap_key_file: PathBuf::new(),
        }
    }
}

/// Configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Defaults, then the optional TOML file, then `PIKA__SECTION__KEY` variables.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let cfg: Config = load_layered(file, "PIKA__").map_err(|e| ConfigError(e.to_string()))?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let w = &self.search;
        if [w.weight_similarity, w.weight_recency, w.weight_relationship]
            .iter()
            .any(|x| *x < 0.0)
        {
            return Err(ConfigError("search weights must not be negative".into()));
        }
        if !(0.0..=1.0).contains(&self.worker.duplicate_threshold) {
            return Err(ConfigError(
                "worker.duplicate_threshold must be within 0..1".into(),
            ));
        }
        if self.worker.concurrency == 0 {
            return Err(ConfigError("worker.concurrency must be at least 1".into()));
        }
        Ok(())
    }

    /// The metadata store URL, defaulting to SQLite under the data dir.
    pub fn meta_url(&self) -> String {
        if self.storage.meta_url.expose().is_empty() {
            format!("sqlite://{}", self.storage.data_dir.join("pika.db").display())
        } else {
            self.storage.meta_url.expose().to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let mut c = Config::default();
        c.llm.api_key = Secret::new("sk-very-secret");
        assert!(!format!("{c:?}").contains("very-secret"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature is fixed
    fn env_overrides_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "pika.toml",
                "[server]\nlisten = \"0.0.0.0:1\"\n[worker]\nconcurrency = 4\n",
            )?;
            jail.set_env("PIKA__SERVER__LISTEN", "127.0.0.1:9");
            let c = Config::load(Some(Path::new("pika.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.server.listen, "127.0.0.1:9");
            assert_eq!(c.worker.concurrency, 4);
            Ok(())
        });
    }

    #[test]
    fn the_production_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/production.example.toml");
        let c = Config::load(Some(&path)).expect("example parses");
        assert!(c.meta_url().starts_with("postgres://"));
        assert!(c.vector.url.expose().starts_with("http://"));
        assert!(c.storage.graph_url.expose().starts_with("neo4j://"));
        assert!(!c.worker.in_process);
        assert_eq!(c.vector.index_type, "HNSW");
    }
}
