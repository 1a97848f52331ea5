//! `VectorIndex` on Milvus (milvus-sdk-rust `ClientV2`).
//!
//! One collection per embedding model and dimension
//! (`{prefix}_{model}_{dimension}`), holding `id` (the fact id, primary key),
//! `user_id` (partition key, so a user's search touches one partition) and
//! `embedding`. Writes are keyed by fact id: rows that already exist (a
//! re-run job, an edited memory) are deleted, then the batch is inserted, so a
//! re-run job writes the same rows again, never duplicates. A job's first
//! attempt deletes nothing (measured: a blind delete per write tripled
//! Milvus's CPU per write, docs/BENCHMARKS.md).
//!
//! Read-your-writes: searches run at `Bounded` consistency (a few ms), which
//! alone would miss writes made a moment ago. So `upsert` returns only once a
//! query sees every written id with its new vector: one `Strong` query, which
//! Milvus answers after one time tick (~200 ms), rather than polling. The
//! worker marks a job `completed` after that, and the next search finds the
//! new facts. The wait costs the worker, not the search path.
//!
//! The client connects lazily: the service starts and serves (degraded to
//! keyword search) while Milvus is down, and picks it up when it answers. A
//! Milvus that answers but holds only another model's collection is a start-up
//! error naming `reindex`.
//!
//! Milvus 2.3.5 leaves the primary-key field name out of search replies, which
//! the SDK's row view rejects; ids and scores are read directly instead.
//!
//! Over 400 lines on purpose: one adapter over one client; the Milvus 2.3.5
//! reply workarounds sit next to the calls they fix.

use crate::ports::{StoreError, VectorIndex};
use async_trait::async_trait;
use milvus::v2::ClientV2;
use milvus::v2::prelude::{
    CheckHealthRequest, CollectionSchema, ConnectConfig, ConsistencyLevel, CreateCollectionRequest,
    CreateIndexRequest, DataType, DeleteRequest, DropCollectionRequest, FieldData, FieldSchema,
    HasCollectionRequest, Ids, IndexParam, IndexType, InsertRequest, ListCollectionsRequest,
    LoadCollectionRequest, MetricType, QueryRequest, RetryConfig, SearchRequest, SearchVectors,
    TelemetryConfig,
};
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

const ID: &str = "id";
const USER: &str = "user_id";
const VECTOR: &str = "embedding";
/// Longest fact id / user id stored (UUIDs and SDD identifiers fit easily).
const MAX_ID_LEN: u32 = 128;

/// The vector index type and its build and search parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexSpec {
    Hnsw {
        m: u32,
        ef_construction: u32,
        ef: u32,
    },
    IvfFlat {
        nlist: u32,
        nprobe: u32,
    },
    Flat,
    GpuCagra {
        intermediate_graph_degree: u32,
        graph_degree: u32,
        itopk_size: u32,
        search_width: u32,
    },
}

impl IndexSpec {
    fn index_type(&self) -> IndexType {
        match self {
            IndexSpec::Hnsw { .. } => IndexType::Hnsw,
            IndexSpec::IvfFlat { .. } => IndexType::IvfFlat,
            IndexSpec::Flat => IndexType::Flat,
            IndexSpec::GpuCagra { .. } => IndexType::GpuCagra,
        }
    }

    fn build_params(&self) -> HashMap<String, String> {
        let kv = |pairs: &[(&str, u32)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        match self {
            IndexSpec::Hnsw {
                m, ef_construction, ..
            } => kv(&[("M", *m), ("efConstruction", *ef_construction)]),
            IndexSpec::IvfFlat { nlist, .. } => kv(&[("nlist", *nlist)]),
            IndexSpec::Flat => HashMap::new(),
            IndexSpec::GpuCagra {
                intermediate_graph_degree,
                graph_degree,
                ..
            } => kv(&[
                ("intermediate_graph_degree", *intermediate_graph_degree),
                ("graph_degree", *graph_degree),
            ]),
        }
    }

    /// Search parameters for a top-`k` search (graph breadths never below `k`).
    fn search_params(&self, k: usize) -> HashMap<String, String> {
        let k = k.min(u32::MAX as usize) as u32;
        let kv = |pairs: &[(&str, u32)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        match self {
            IndexSpec::Hnsw { ef, .. } => kv(&[("ef", (*ef).max(k))]),
            IndexSpec::IvfFlat { nprobe, .. } => kv(&[("nprobe", *nprobe)]),
            IndexSpec::Flat => HashMap::new(),
            IndexSpec::GpuCagra {
                itopk_size,
                search_width,
                ..
            } => kv(&[
                ("itopk_size", (*itopk_size).max(k)),
                ("search_width", *search_width),
            ]),
        }
    }
}

/// How to reach Milvus and what to build there.
#[derive(Debug, Clone)]
pub struct MilvusOptions {
    pub url: String,
    /// `user:password`, or empty.
    pub token: String,
    /// PEM CA certificate of a Milvus with a private CA (turns TLS on);
    /// empty: TLS only for `https://` URLs, with the system roots.
    pub ca_file: std::path::PathBuf,
    pub collection_prefix: String,
    pub num_partitions: i64,
    pub index: IndexSpec,
    /// Deadline for one call.
    pub timeout: Duration,
    /// Longest `upsert` waits until its rows are searchable.
    pub visible_timeout: Duration,
}

/// `VectorIndex` on a Milvus collection.
pub struct MilvusIndex {
    options: MilvusOptions,
    collection: String,
    dimension: usize,
    client: OnceCell<ClientV2>,
}

/// The collection for a model: letters, digits and `_` only, as Milvus requires.
pub fn collection_name(prefix: &str, model: &str, dimension: usize) -> String {
    let slug: String = model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}_{slug}_{dimension}")
}

/// A string literal for a Milvus boolean expression.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `user_id == "u" && id in ["a", "b"]`.
fn ids_filter(user_id: &str, ids: &[String]) -> String {
    let list: Vec<String> = ids.iter().map(|i| quote(i)).collect();
    format!("{USER} == {} && {ID} in [{}]", quote(user_id), list.join(", "))
}

fn unavailable(e: impl Into<crate::ports::BoxError>) -> StoreError {
    StoreError::unavailable("milvus", e)
}

impl MilvusIndex {
    /// An index for `model`; nothing is contacted until [`MilvusIndex::ready`] or the first call.
    pub fn new(options: MilvusOptions, model: &str, dimension: usize) -> Self {
        let collection = collection_name(&options.collection_prefix, model, dimension);
        MilvusIndex {
            options,
            collection,
            dimension,
            client: OnceCell::new(),
        }
    }

    pub fn collection(&self) -> &str {
        &self.collection
    }

    async fn call<T, E: Into<crate::ports::BoxError>>(
        &self,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.options.timeout, fut).await {
            Ok(r) => r.map_err(unavailable),
            Err(_) => Err(StoreError::unavailable(
                "milvus",
                format!("no answer within {} ms", self.options.timeout.as_millis()),
            )),
        }
    }

    async fn connect(&self) -> Result<ClientV2, StoreError> {
        let mut config = ConnectConfig::new()
            .uri(self.options.url.clone())
            .connect_timeout(self.options.timeout)
            .rpc_timeout(self.options.timeout)
            // One retry at most: a slow or absent Milvus must degrade search quickly.
            .retry(
                RetryConfig::new()
                    .max_attempts(2)
                    .max_retry_timeout(self.options.timeout),
            )
            .telemetry(TelemetryConfig::new().enabled(false));
        if !self.options.token.is_empty() {
            config = config.token(self.options.token.clone());
        }
        if !self.options.ca_file.as_os_str().is_empty() {
            config = config.ca_certificate(self.options.ca_file.to_string_lossy().into_owned());
        }
        self.call(ClientV2::new(&config)).await
    }

    /// Connects, then checks or creates the collection, its index and its load.
    /// A collection of another model without one of ours is `ModelMismatch`.
    async fn prepare(&self) -> Result<ClientV2, StoreError> {
        let client = self.connect().await?;
        let exists = self
            .call(
                client.has_collection(
                    HasCollectionRequest::builder()
                        .collection_name(&self.collection)
                        .build()
                        .map_err(unavailable)?,
                ),
            )
            .await?
            .exists();
        if !exists {
            if let Some(other) = self.other_collections(&client).await?.into_iter().next() {
                return Err(StoreError::ModelMismatch {
                    stored: format!("Milvus collection {other}"),
                    configured: format!("collection {}", self.collection),
                });
            }
            self.create(&client).await?;
        }
        // Loading is idempotent and fast when already loaded; a fresh collection
        // must be loaded before it can be searched.
        self.load(&client).await?;
        Ok(client)
    }

    async fn other_collections(&self, client: &ClientV2) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{}_", self.options.collection_prefix);
        let listed = self
            .call(client.list_collections(ListCollectionsRequest::builder().build().map_err(unavailable)?))
            .await?;
        Ok(listed
            .collection_names()
            .iter()
            .filter(|n| n.starts_with(&prefix) && **n != self.collection)
            .cloned()
            .collect())
    }

    async fn create(&self, client: &ClientV2) -> Result<(), StoreError> {
        let schema = CollectionSchema::new()
            .add_field(
                FieldSchema::new()
                    .name(ID)
                    .data_type(DataType::VarChar)
                    .max_length(MAX_ID_LEN)
                    .primary_key(true)
                    .auto_id(false),
            )
            .add_field(
                FieldSchema::new()
                    .name(USER)
                    .data_type(DataType::VarChar)
                    .max_length(MAX_ID_LEN)
                    .partition_key(true),
            )
            .add_field(
                FieldSchema::new()
                    .name(VECTOR)
                    .data_type(DataType::FloatVector)
                    .dimension(self.dimension as u32),
            );
        let create = CreateCollectionRequest::builder()
            .collection_name(&self.collection)
            .description("PIKA fact embeddings")
            .schema(schema)
            .num_partitions(self.options.num_partitions)
            .consistency_level(ConsistencyLevel::Bounded)
            .build()
            .map_err(unavailable)?;
        self.call(client.create_collection(create)).await?;
        let index = CreateIndexRequest::builder()
            .collection_name(&self.collection)
            .index_param(
                IndexParam::new()
                    .field_name(VECTOR)
                    .index_type(self.options.index.index_type())
                    .metric_type(MetricType::Ip)
                    .extra_params(self.options.index.build_params()),
            )
            .build()
            .map_err(unavailable)?;
        if let Err(e) = self.call(client.create_index(index)).await {
            // Leave no half-made collection behind: the next start tries again.
            let _ = self.drop_collection(client, &self.collection).await;
            return Err(StoreError::unavailable(
                "milvus",
                format!(
                    "it rejected the {:?} index (GPU_CAGRA needs a Milvus with a GPU): {e}",
                    self.options.index
                ),
            ));
        }
        tracing::info!(collection = %self.collection, index = ?self.options.index, "created Milvus collection");
        Ok(())
    }

    async fn load(&self, client: &ClientV2) -> Result<(), StoreError> {
        let load = LoadCollectionRequest::builder()
            .collection_name(&self.collection)
            .build()
            .map_err(unavailable)?;
        // Loading a new collection can take longer than one call's deadline.
        match tokio::time::timeout(
            self.options.visible_timeout.max(self.options.timeout),
            client.load_collection(load),
        )
        .await
        {
            Ok(r) => r.map_err(unavailable),
            Err(_) => Err(StoreError::unavailable(
                "milvus",
                format!("collection {} did not load", self.collection),
            )),
        }
    }

    async fn drop_collection(&self, client: &ClientV2, name: &str) -> Result<(), StoreError> {
        let drop = DropCollectionRequest::builder()
            .collection_name(name)
            .build()
            .map_err(unavailable)?;
        self.call(client.drop_collection(drop)).await
    }

    /// The connected client with the collection ready; connects on first use.
    pub async fn ready(&self) -> Result<&ClientV2, StoreError> {
        self.client.get_or_try_init(|| self.prepare()).await
    }

    /// For `reindex`: drops this model's collection (if any) and creates it empty.
    pub async fn recreate(&self) -> Result<(), StoreError> {
        let client = self.connect().await?;
        self.drop_collection(&client, &self.collection).await?;
        self.create(&client).await?;
        self.load(&client).await?;
        let _ = self.client.set(client);
        Ok(())
    }

    /// For `reindex`, once the new collection is full: drops other models' collections.
    pub async fn drop_other_models(&self) -> Result<Vec<String>, StoreError> {
        let client = self.ready().await?;
        let others = self.other_collections(client).await?;
        for name in &others {
            self.drop_collection(client, name).await?;
        }
        Ok(others)
    }

    /// Drops this model's collection (tests and uninstall).
    pub async fn drop(&self) -> Result<(), StoreError> {
        let client = self.connect().await?;
        self.drop_collection(&client, &self.collection).await
    }

    /// Drops every collection under `options.collection_prefix` (uninstall, tests).
    pub async fn drop_prefix(options: MilvusOptions) -> Result<Vec<String>, StoreError> {
        let probe = MilvusIndex::new(options, "", 0);
        let client = probe.connect().await?;
        let others = probe.other_collections(&client).await?;
        for name in &others {
            probe.drop_collection(&client, name).await?;
        }
        Ok(others)
    }

    /// The rows a query returns for `items`' ids, with their vectors.
    async fn stored(
        &self,
        client: &ClientV2,
        user_id: &str,
        ids: &[String],
        level: ConsistencyLevel,
        with_vectors: bool,
    ) -> Result<(Vec<String>, Vec<Vec<f32>>), StoreError> {
        let fields: &[&str] = if with_vectors { &[ID, VECTOR] } else { &[ID] };
        let query = QueryRequest::builder()
            .collection_name(&self.collection)
            .filter(ids_filter(user_id, ids))
            .output_fields(fields.iter().copied())
            .consistency_level(level)
            .build()
            .map_err(unavailable)?;
        let reply = self.call(client.query(query)).await?;
        let rows = reply.results();
        let found = rows
            .get_output_field(ID)
            .and_then(|f| f.as_varchar())
            .map(|f| f.to_vec())
            .unwrap_or_default();
        let vectors = rows
            .get_output_field(VECTOR)
            .and_then(|f| f.as_float_vectors())
            .map(|v| v.to_vec())
            .unwrap_or_default();
        Ok((found, vectors))
    }

    /// How the rows of `items` look to a query at `level`.
    async fn visibility(
        &self,
        client: &ClientV2,
        user_id: &str,
        items: &[(String, Vec<f32>)],
        level: ConsistencyLevel,
    ) -> Result<Visibility, StoreError> {
        let ids: Vec<String> = items.iter().map(|(id, _)| id.clone()).collect();
        let (found, vectors) = self.stored(client, user_id, &ids, level, true).await?;
        Ok(Visibility::of(items, &found, &vectors))
    }

    /// Waits until searches see `items` as written (see the module docs):
    /// one `Strong` query, which Milvus answers once it has applied every
    /// write made before it (about one time tick), then, should that still
    /// miss a row, `Eventually` queries at a time tick's pace.
    async fn await_visible(
        &self,
        client: &ClientV2,
        user_id: &str,
        items: &[(String, Vec<f32>)],
    ) -> Result<Visibility, StoreError> {
        let started = Instant::now();
        let mut seen = self
            .visibility(client, user_id, items, ConsistencyLevel::Strong)
            .await?;
        let mut pause = Duration::from_millis(50);
        while seen == Visibility::Pending {
            if started.elapsed() >= self.options.visible_timeout {
                return Err(StoreError::unavailable(
                    "milvus",
                    format!(
                        "{} written vectors not searchable after {} ms",
                        items.len(),
                        self.options.visible_timeout.as_millis()
                    ),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
            seen = self
                .visibility(client, user_id, items, ConsistencyLevel::Eventually)
                .await?;
        }
        Ok(seen)
    }

    /// Deletes rows by primary key alone (no query needed to find them).
    async fn delete_ids(&self, client: &ClientV2, ids: &[String]) -> Result<(), StoreError> {
        let delete = DeleteRequest::builder()
            .collection_name(&self.collection)
            .filter(format!(
                "{ID} in [{}]",
                ids.iter().map(|i| quote(i)).collect::<Vec<_>>().join(", ")
            ))
            .build()
            .map_err(unavailable)?;
        self.call(client.delete(delete)).await.map(drop)
    }

    async fn insert(
        &self,
        client: &ClientV2,
        user_id: &str,
        items: &[(String, Vec<f32>)],
    ) -> Result<(), StoreError> {
        let columns = vec![
            FieldData::varchar(ID, items.iter().map(|(id, _)| id.clone()).collect()),
            FieldData::varchar(USER, vec![user_id.to_string(); items.len()]),
            FieldData::float_vector(VECTOR, items.iter().map(|(_, v)| v.clone()).collect()),
        ];
        let insert = InsertRequest::builder()
            .collection_name(&self.collection)
            .columns(columns)
            .build()
            .map_err(unavailable)?;
        self.call(client.insert(insert)).await.map(drop)
    }
}

/// What a query sees of a batch of written rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visibility {
    /// One row per id, each holding the written vector.
    Exact,
    /// A row is missing or still holds its old vector: not applied yet.
    Pending,
    /// More rows than ids: an earlier copy survived (it was written but not
    /// yet visible when the upsert looked for rows to replace).
    Duplicated,
}

impl Visibility {
    fn of(items: &[(String, Vec<f32>)], found: &[String], vectors: &[Vec<f32>]) -> Self {
        if found.len() > items.len() {
            return Visibility::Duplicated;
        }
        if found.len() < items.len() || vectors.len() != found.len() {
            return Visibility::Pending;
        }
        let written: HashMap<&str, &[f32]> =
            items.iter().map(|(id, v)| (id.as_str(), v.as_slice())).collect();
        let exact = found.iter().zip(vectors).all(|(id, stored)| {
            written.get(id.as_str()).is_some_and(|w| {
                w.len() == stored.len() && w.iter().zip(stored).all(|(a, b)| (a - b).abs() <= 1e-6)
            })
        });
        if exact {
            Visibility::Exact
        } else {
            Visibility::Pending
        }
    }
}

#[async_trait]
impl VectorIndex for MilvusIndex {
    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.ready().await?;
        let health = self
            .call(client.check_health(CheckHealthRequest::builder().build().map_err(unavailable)?))
            .await?;
        if health.is_healthy() {
            Ok(())
        } else {
            Err(StoreError::unavailable("milvus", "it reports itself unhealthy"))
        }
    }

    async fn upsert(&self, user_id: &str, items: &[(String, Vec<f32>)]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        if let Some((id, v)) = items.iter().find(|(_, v)| v.len() != self.dimension) {
            return Err(StoreError::Corrupt(format!(
                "vector of fact {id} has {} dims, the collection {}",
                v.len(),
                self.dimension
            )));
        }
        let client = self.ready().await?;
        let ids: Vec<String> = items.iter().map(|(id, _)| id.clone()).collect();
        // Milvus 2.3's own upsert ignores the partition key (rows land where
        // `user_id == ..` searches never look), so rows are replaced by
        // delete + insert, and only rows that exist are deleted: a job's first
        // attempt writes new ids, and a blind delete costs Milvus a tombstone
        // per row on every write.
        let (existing, _) = self
            .stored(client, user_id, &ids, ConsistencyLevel::Eventually, false)
            .await?;
        if !existing.is_empty() {
            self.delete_ids(client, &existing).await?;
        }
        self.insert(client, user_id, items).await?;
        if self.await_visible(client, user_id, items).await? == Visibility::Duplicated {
            // A copy the first look missed (written a moment before, by an
            // attempt that then failed): replace every id outright.
            self.delete_ids(client, &ids).await?;
            self.insert(client, user_id, items).await?;
            if self.await_visible(client, user_id, items).await? != Visibility::Exact {
                return Err(StoreError::unavailable(
                    "milvus",
                    format!("{} rewritten vectors still show duplicates", items.len()),
                ));
            }
        }
        Ok(())
    }

    async fn search(&self, user_id: &str, query: &[f32], k: usize) -> Result<Vec<(String, f32)>, StoreError> {
        let mut all = self.search_many(user_id, &[query.to_vec()], k).await?;
        Ok(all.pop().unwrap_or_default())
    }

    /// One request for all `queries` (Milvus searches them together).
    async fn search_many(
        &self,
        user_id: &str,
        queries: &[Vec<f32>],
        k: usize,
    ) -> Result<Vec<Vec<(String, f32)>>, StoreError> {
        if k == 0 || queries.is_empty() {
            return Ok(vec![Vec::new(); queries.len()]);
        }
        let client = self.ready().await?;
        let search = SearchRequest::builder()
            .collection_name(&self.collection)
            .vector_field(VECTOR)
            .vectors(SearchVectors::Float(queries.to_vec()))
            .filter(format!("{USER} == {}", quote(user_id)))
            .metric_type(MetricType::Ip)
            .extra_params(self.options.index.search_params(k))
            .limit(k as i64)
            .consistency_level(ConsistencyLevel::Bounded)
            .build()
            .map_err(unavailable)?;
        let reply = self.call(client.search(search)).await?;
        let mut all = Vec::with_capacity(queries.len());
        for result in reply.results() {
            let ids = match result.get_ids() {
                Ids::VarChar(ids) => ids,
                // An empty result comes back with the default (integer) id list.
                ids if ids.is_empty() => {
                    all.push(Vec::new());
                    continue;
                }
                _ => {
                    return Err(StoreError::Corrupt(
                        "milvus returned integer ids for varchar keys".into(),
                    ));
                }
            };
            let mut hits: Vec<(String, f32)> = ids
                .iter()
                .cloned()
                .zip(result.get_scores().iter().copied())
                .collect();
            hits.sort_by(|a, b| b.1.total_cmp(&a.1));
            hits.truncate(k);
            all.push(hits);
        }
        if all.len() != queries.len() {
            return Err(StoreError::Corrupt(format!(
                "milvus answered {} of {} searches",
                all.len(),
                queries.len()
            )));
        }
        Ok(all)
    }

    async fn delete(&self, user_id: &str, fact_ids: &[String]) -> Result<(), StoreError> {
        if fact_ids.is_empty() {
            return Ok(());
        }
        let client = self.ready().await?;
        let delete = DeleteRequest::builder()
            .collection_name(&self.collection)
            .filter(ids_filter(user_id, fact_ids))
            .build()
            .map_err(unavailable)?;
        self.call(client.delete(delete)).await.map(drop)
    }

    async fn delete_user(&self, user_id: &str) -> Result<(), StoreError> {
        let client = self.ready().await?;
        let delete = DeleteRequest::builder()
            .collection_name(&self.collection)
            .filter(format!("{USER} == {}", quote(user_id)))
            .build()
            .map_err(unavailable)?;
        self.call(client.delete(delete)).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_are_milvus_identifiers() {
        assert_eq!(
            collection_name("pika_facts", "all-MiniLM-L6-v2", 384),
            "pika_facts_all_minilm_l6_v2_384"
        );
        assert_eq!(
            collection_name("p", "text-embedding-3-small", 1536),
            "p_text_embedding_3_small_1536"
        );
    }

    #[test]
    fn filters_quote_and_escape_user_text() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(
            ids_filter("u1", &["f1".into(), "f2".into()]),
            r#"user_id == "u1" && id in ["f1", "f2"]"#
        );
    }

    #[test]
    fn a_write_is_visible_only_with_one_row_per_id_holding_the_new_vector() {
        let items = vec![
            ("a".to_string(), vec![1.0, 0.0]),
            ("b".to_string(), vec![0.0, 1.0]),
        ];
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let new = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        assert_eq!(Visibility::of(&items, &ids(&["a", "b"]), &new), Visibility::Exact);
        assert_eq!(
            Visibility::of(&items, &ids(&["b", "a"]), &[vec![0.0, 1.0], vec![1.0, 0.0]]),
            Visibility::Exact
        );
        // Not applied yet: a row missing, or still the old vector.
        assert_eq!(
            Visibility::of(&items, &ids(&["a"]), &new[..1]),
            Visibility::Pending
        );
        assert_eq!(
            Visibility::of(&items, &ids(&["a", "b"]), &[vec![1.0, 0.0], vec![0.5, 0.5]]),
            Visibility::Pending
        );
        assert_eq!(
            Visibility::of(&items, &ids(&["a", "a"]), &[vec![1.0, 0.0], vec![0.3, 0.3]]),
            Visibility::Pending
        );
        // An earlier copy beside the new one.
        assert_eq!(
            Visibility::of(
                &items,
                &ids(&["a", "a", "b"]),
                &[vec![1.0, 0.0], vec![0.3, 0.3], vec![0.0, 1.0]]
            ),
            Visibility::Duplicated
        );
    }

    #[test]
    fn graph_search_breadth_is_never_below_k() {
        let hnsw = IndexSpec::Hnsw {
            m: 16,
            ef_construction: 200,
            ef: 16,
        };
        assert_eq!(hnsw.search_params(50)["ef"], "50");
        assert_eq!(hnsw.search_params(5)["ef"], "16");
        assert_eq!(hnsw.build_params()["M"], "16");
        let cagra = IndexSpec::GpuCagra {
            intermediate_graph_degree: 64,
            graph_degree: 32,
            itopk_size: 64,
            search_width: 4,
        };
        assert_eq!(cagra.search_params(100)["itopk_size"], "100");
        assert_eq!(cagra.index_type(), IndexType::GpuCagra);
    }
}
