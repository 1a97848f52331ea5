//! The dataplane's ports: one trait per capability (DESIGN.md §4.3).
//!
//! Services hold `Arc<dyn Trait>` and never know which backend answers. The
//! embedded adapters live in [`crate::store`] and [`crate::queue`]; production
//! adapters are added beside them and chosen from configuration by URL scheme.

use crate::domain::{
    ApiKeyRecord, AuditEntry, Candidate, Claim, Consent, Decision, ExtractionPlan, Fact, GraphRepair,
    HistoryEntry, Job, JobFilter, JobSummary, MemoryKind, RepairOp, Tenant,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pika_common::wire::{ExtractRequest, JobState, Message};
use std::collections::HashMap;

/// Errors of the storage ports.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("the job claim was lost (another worker or a restart took it over)")]
    ClaimLost,
    /// A transient failure of a backend (connection, timeout, overload):
    /// worth retrying, and a 503 to clients. The cause is kept as the source.
    #[error("{backend} unavailable: {source}")]
    Unavailable {
        backend: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "embedding model mismatch: index holds {stored}, service uses {configured}; run `pika-dataplane reindex`"
    )]
    ModelMismatch { stored: String, configured: String },
}

/// The cause of a backend failure, whatever the client library's error type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl StoreError {
    /// `backend` unavailable because of `source` (an error, or a message).
    pub fn unavailable(backend: &'static str, source: impl Into<BoxError>) -> Self {
        StoreError::Unavailable {
            backend,
            source: source.into(),
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// A job to be inserted, with its idempotency key.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub job_id: String,
    pub idempotency_key: String,
    pub request: ExtractRequest,
}

/// What an erasure removed from the metadata store.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetaErasure {
    pub facts: u64,
    pub episodes: u64,
    /// Jobs, with the conversations they carried.
    pub jobs: u64,
    pub history: u64,
    pub names: u64,
    /// Audit rows kept, their user id replaced by the pseudonym.
    pub audit_pseudonymised: u64,
    /// Data keys destroyed (1 when the child's data was sealed): every copy
    /// of its sealed data, backups included, is unreadable from now on.
    pub data_keys: u64,
}

/// One page of a user's facts.
#[derive(Debug, Clone)]
pub struct FactPage {
    pub facts: Vec<Fact>,
    pub next_cursor: Option<String>,
}

/// One keyword match: an item's id and its index terms (with repeats), all
/// BM25 needs. The item itself is read afterwards, only if it ranks.
#[derive(Debug, Clone, PartialEq)]
pub struct KeywordItem {
    pub fact_id: String,
    pub terms: Vec<String>,
}

/// Keyword matches of one query in one user's memory (see `keyword_candidates`).
#[derive(Debug, Clone, Default)]
pub struct KeywordMatches {
    pub items: Vec<KeywordItem>,
    /// Active items of the user (BM25's N).
    pub total_items: u64,
    /// Their mean length in index terms (BM25's avgdl).
    pub mean_terms: f32,
}

/// Extraction jobs: accepted, claimed by one worker, completed with their
/// whole plan in one transaction, failed or retried.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Inserts the job, or returns the existing one with the same idempotency key
    /// (`false` in the second slot).
    async fn create_job(&self, job: NewJob) -> Result<(Job, bool), StoreError>;
    async fn get_job(&self, job_id: &str) -> Result<Option<Job>, StoreError>;
    /// Ids of jobs waiting in `queued`, oldest first.
    async fn queued_job_ids(&self, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Jobs still `queued` whose last change is older than `cutoff`, oldest
    /// first; the sweeper republishes them and marks them touched.
    async fn stale_queued_job_ids(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
    /// Jobs accepted and not finished (`queued` or `processing`): the
    /// `queue_depth` metric, the same whichever process reads it.
    async fn count_unfinished_jobs(&self) -> Result<u64, StoreError>;
    /// Moves every `processing` job back to `queued` (embedded start-up: no other worker exists).
    async fn requeue_processing(&self) -> Result<u64, StoreError>;
    /// Takes a queued job for processing under a lease of `lease`; `None`
    /// when it is not claimable (done, taken, missing). With `take_over`, a
    /// `processing` job is claimable too: the queue redelivered it because
    /// the worker holding it died.
    async fn claim_job(
        &self,
        job_id: &str,
        take_over: bool,
        lease: std::time::Duration,
    ) -> Result<Option<(Claim, Job)>, StoreError>;
    /// Extends the lease of every job still held under one of `claims` to
    /// now + `lease` (one statement); returns how many were extended.
    async fn renew_leases(&self, claims: &[Claim], lease: std::time::Duration) -> Result<u64, StoreError>;
    /// Puts `processing` jobs whose lease ended before `now` back in
    /// `queued` (their worker died, hung or gave up); returns their ids,
    /// at most `limit`, for the caller to publish.
    async fn requeue_expired_leases(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
    /// Hands a held job back (`processing` → `queued`, the attempt not
    /// counted) when a worker stops before finishing it; `false` when the
    /// claim no longer holds.
    async fn release_job(&self, claim: &Claim) -> Result<bool, StoreError>;
    /// Jobs matching `filter`, newest first, without their conversations.
    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobSummary>, StoreError>;
    /// How many jobs are in each state but `completed` (states with none
    /// are left out): the `jobs_in_state` and `queue_depth` metrics.
    async fn count_jobs_by_state(&self) -> Result<Vec<(JobState, u64)>, StoreError>;
    /// Re-drives failed jobs matching `filter` (its state is ignored): back to
    /// `queued` with no attempts and a new retry horizon. Returns their ids,
    /// for the caller to publish.
    async fn redrive_jobs(&self, filter: &JobFilter) -> Result<Vec<String>, StoreError>;
    /// Queues a graph write for the repair loop.
    async fn queue_graph_repair(
        &self,
        user_id: &str,
        op: RepairOp,
        fact_ids: &[String],
    ) -> Result<(), StoreError>;
    /// Graph repairs due at `now`, at most `limit`; each is postponed by
    /// `hold` as it is taken, so another process does not take it too.
    async fn take_graph_repairs(
        &self,
        now: DateTime<Utc>,
        hold: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<GraphRepair>, StoreError>;
    /// A repair done: removes it.
    async fn finish_graph_repair(&self, id: i64) -> Result<(), StoreError>;
    /// A repair that failed again: tried next at `next_at`.
    async fn postpone_graph_repair(
        &self,
        id: i64,
        error: &str,
        next_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Graph repairs waiting (the `graph_repair_backlog` metric).
    async fn count_graph_repairs(&self) -> Result<u64, StoreError>;
    /// Writes the plan and completes the job in one transaction, if the claim still holds.
    async fn complete_job(&self, claim: &Claim, plan: &ExtractionPlan) -> Result<(), StoreError>;
    /// Fails the job for good, or puts it back in `queued` when `retry` is set.
    async fn fail_job(&self, claim: &Claim, error: &str, retry: bool) -> Result<(), StoreError>;
    /// Records that the user named by `pseudonym` was erased at `at` (kept if
    /// already recorded, at the later time).
    async fn record_erasure(&self, pseudonym: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Whether the user named by `pseudonym` was erased at or after `since`.
    async fn erased_since(&self, pseudonym: &str, since: DateTime<Utc>) -> Result<bool, StoreError>;
}

/// One user's memories at a glance (Mem0's entity listing).
#[derive(Debug, Clone, PartialEq)]
pub struct UserSummary {
    /// The scoped key.
    pub user_id: String,
    pub memories: u64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
}

/// Facts and episodes of each user: reads, keyword candidates, history,
/// erasure and export.
#[async_trait]
pub trait FactStore: Send + Sync {
    /// Active facts among `ids` (one query), in no particular order.
    async fn active_facts(&self, ids: &[String]) -> Result<Vec<Fact>, StoreError>;
    async fn get_fact(&self, fact_id: &str) -> Result<Option<Fact>, StoreError>;
    async fn fact_history(&self, fact_id: &str) -> Result<Vec<HistoryEntry>, StoreError>;
    /// Active facts of every user, in fact-id order after `after` (for reindexing).
    async fn scan_active_facts(&self, after: Option<&str>, limit: usize) -> Result<Vec<Fact>, StoreError>;
    async fn list_facts(
        &self,
        user_id: &str,
        cursor: Option<&str>,
        limit: usize,
        kind: Option<MemoryKind>,
    ) -> Result<FactPage, StoreError>;
    /// Marks a fact deleted, removes its text (row, keyword index, every
    /// history entry naming it) and records a DELETE; `false` when it did not
    /// exist or was already gone.
    async fn delete_fact(&self, fact_id: &str) -> Result<bool, StoreError>;
    /// The users of `tenant_id` that hold active memories, with how many
    /// and when the first was made and the last changed (at most `limit`,
    /// by user key).
    async fn tenant_users(&self, tenant_id: &str, limit: usize) -> Result<Vec<UserSummary>, StoreError>;
    /// Which of `ids` exist, in any state and for any user (ids are global).
    async fn known_fact_ids(&self, ids: &[String]) -> Result<Vec<String>, StoreError>;
    /// Stores the plan's new facts (an import: no job), their history and
    /// the user's names in one transaction; a fact whose id exists is left
    /// as it is. Returns how many were inserted.
    async fn import_facts(&self, plan: &ExtractionPlan) -> Result<usize, StoreError>;
    /// Rewrites each of the plan's `new_facts` in place (same id: text,
    /// entities, tags, attributes, language, `updated_at`, keyword terms)
    /// where it is still active, with the plan's history, in one
    /// transaction. Returns how many were rewritten.
    async fn rewrite_facts(&self, plan: &ExtractionPlan) -> Result<usize, StoreError>;
    /// Erases every row of the user (facts, episodes, history, jobs and the
    /// conversations they carry, names, keyword terms) in one transaction,
    /// and replaces the user id in the audit log with `pseudonym`.
    async fn delete_user(&self, user_id: &str, pseudonym: &str) -> Result<MetaErasure, StoreError>;
    /// One page of a user's items (facts and episodes, any status) in id
    /// order after `after`: the streamed export reads them page by page.
    async fn export_items(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Fact>, StoreError>;
    /// One page of a user's jobs (with the conversations they carry) in id order after `after`.
    async fn export_jobs(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError>;
    /// The history of `fact_ids`, in the order it was written (one query).
    async fn history_of(&self, fact_ids: &[String]) -> Result<Vec<HistoryEntry>, StoreError>;
    /// The user's active memory items holding any of `terms` (index terms
    /// from `pika_common::text::index_terms`), at most `limit` (those holding
    /// the most query terms first), each as its id and its own index terms,
    /// plus the user's item count and mean length: what `service::bm25` needs
    /// to rank them. Ids and terms only: the caller reads the few that rank
    /// (`active_facts`), not every match.
    async fn keyword_candidates(
        &self,
        user_id: &str,
        terms: &[String],
        limit: usize,
    ) -> Result<KeywordMatches, StoreError>;
    /// The user's active items (facts and episodes) from one conversation.
    async fn conversation_items(&self, user_id: &str, conversation_id: &str)
    -> Result<Vec<Fact>, StoreError>;
    /// Which of `keys` (`Fact::dedup_key`) the user's active episodes already have.
    async fn known_episodes(&self, user_id: &str, keys: &[String]) -> Result<Vec<String>, StoreError>;
    /// Names the user is known by (from extract requests and from what they said).
    async fn user_names(&self, user_id: &str) -> Result<Vec<String>, StoreError>;
    /// Bumps `accessed_count` and `last_accessed_at` for facts returned by a search.
    async fn record_access(&self, fact_ids: &[String]) -> Result<(), StoreError>;
    /// Every history entry of a user's facts, oldest first (one query).
    async fn user_history(&self, user_id: &str) -> Result<Vec<HistoryEntry>, StoreError>;
    /// Retention: removes up to `limit` facts and episodes of `tenant_id`
    /// created before `cutoff` (with their history and keyword terms), and
    /// that tenant's finished jobs, history and audit rows older than it.
    /// Returns the removed items, so the caller clears the side stores.
    async fn expire_before(
        &self,
        tenant_id: &str,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Expired, StoreError>;
}

/// What one retention pass removed from the metadata store.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Expired {
    /// `(scoped user key, fact id)` of every fact and episode removed.
    pub items: Vec<(String, String)>,
    pub jobs: u64,
    pub history: u64,
    pub audit: u64,
}

/// Tenants and their API keys (stored as hashes).
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// `false` when the tenant already exists (nothing is changed).
    async fn insert_tenant(&self, tenant: &Tenant) -> Result<bool, StoreError>;
    async fn tenant(&self, tenant_id: &str) -> Result<Option<Tenant>, StoreError>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    /// Turns the tenant's consent requirement on or off; `false` when no such tenant.
    async fn set_require_consent(&self, tenant_id: &str, required: bool) -> Result<bool, StoreError>;
    /// Sets the tenant's retention period; `false` when no such tenant.
    async fn set_retention_days(&self, tenant_id: &str, days: u32) -> Result<bool, StoreError>;
    /// The consent recorded for the user named by `pseudonym`.
    async fn consent(&self, pseudonym: &str) -> Result<Option<Consent>, StoreError>;
    async fn set_consent(&self, pseudonym: &str, consent: &Consent) -> Result<(), StoreError>;
    /// A key whose id or hash exists already is a `Conflict`.
    async fn insert_key(&self, record: &ApiKeyRecord, hash: &str) -> Result<(), StoreError>;
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// `false` when no such key exists.
    async fn revoke_key(&self, key_id: &str) -> Result<bool, StoreError>;
}

/// The append-only audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends audit lines in one transaction.
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;
    /// The user's audit rows with an id above `after`, oldest first.
    async fn audit_of(&self, user_id: &str, after: i64, limit: usize) -> Result<Vec<AuditRow>, StoreError>;
}

/// One stored audit line.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// The critical metadata store: every capability above in one database
/// (SQLite embedded, PostgreSQL in production). Services hold the narrower
/// traits they need (`Arc<dyn MetaStore>` coerces to each).
#[async_trait]
pub trait MetaStore: JobStore + FactStore + KeyStore + AuditStore {
    /// Round trip used by health checks.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// One child's data key as stored: wrapped (sealed) by a key-encryption
/// key, never in the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// Globally unique; sealed values name it, so a reader finds the key.
    pub dek_id: String,
    /// The scoped user key the data key belongs to.
    pub owner: String,
    /// The key-encryption key that wraps it.
    pub kek_id: String,
    /// `seal_bytes` output under that KEK, base64.
    pub wrapped: String,
}

/// The keyring: one data key per child. Deleting a row destroys the key,
/// and with it every copy of that child's sealed data (crypto-shredding).
/// It lives apart from the metadata store (its own SQLite file, or its own
/// PostgreSQL database when configured), so a backup of the metadata holds
/// no keys.
#[async_trait]
pub trait DataKeyStore: Send + Sync {
    async fn data_key(&self, owner: &str) -> Result<Option<WrappedKey>, StoreError>;
    async fn data_key_by_id(&self, dek_id: &str) -> Result<Option<WrappedKey>, StoreError>;
    /// Inserts `key` unless the owner has one already; returns the stored
    /// one (the first writer wins, so replicas agree on one key per child).
    async fn insert_data_key(&self, key: &WrappedKey) -> Result<WrappedKey, StoreError>;
    /// Destroys the owner's key; `false` when there was none.
    async fn delete_data_key(&self, owner: &str) -> Result<bool, StoreError>;
    /// Keys in owner order after `after` (KEK rotation pages through all).
    async fn data_keys_after(&self, after: Option<&str>, limit: usize)
    -> Result<Vec<WrappedKey>, StoreError>;
    /// Replaces the wrapping of `key.owner`'s key if it is still `key.dek_id`
    /// wrapped by `old_kek`; `false` when it changed meanwhile.
    async fn rewrap_data_key(&self, key: &WrappedKey, old_kek: &str) -> Result<bool, StoreError>;
}

/// Fact vectors, searched per user.
#[async_trait]
pub trait VectorIndex: Send + Sync {
    async fn ping(&self) -> Result<(), StoreError>;
    /// Inserts or replaces vectors keyed by fact id. When it returns, the next
    /// `search` sees the written vectors (read-your-writes: a job is marked
    /// completed only after this). Deletes may reach searches a moment later;
    /// callers filter results through the metadata store.
    async fn upsert(&self, user_id: &str, items: &[(String, Vec<f32>)]) -> Result<(), StoreError>;
    /// The `k` nearest facts of the user with their cosine, best first.
    async fn search(&self, user_id: &str, query: &[f32], k: usize) -> Result<Vec<(String, f32)>, StoreError>;
    /// [`VectorIndex::search`] for each of `queries`, in their order. An index
    /// that can answer several queries in one request overrides this (the
    /// worker looks up the neighbours of every fact of a conversation at once).
    async fn search_many(
        &self,
        user_id: &str,
        queries: &[Vec<f32>],
        k: usize,
    ) -> Result<Vec<Vec<(String, f32)>>, StoreError> {
        let mut all = Vec::with_capacity(queries.len());
        for query in queries {
            all.push(self.search(user_id, query, k).await?);
        }
        Ok(all)
    }
    async fn delete(&self, user_id: &str, fact_ids: &[String]) -> Result<(), StoreError>;
    async fn delete_user(&self, user_id: &str) -> Result<(), StoreError>;
}

/// Entities and relations between facts.
#[async_trait]
pub trait FactGraph: Send + Sync {
    async fn ping(&self) -> Result<(), StoreError>;
    /// Records each fact and the entities it mentions (idempotent).
    async fn upsert_facts(&self, user_id: &str, facts: &[(String, Vec<String>)]) -> Result<(), StoreError>;
    /// For each of `fact_ids`, other facts of the user sharing an entity (one query).
    async fn related(
        &self,
        user_id: &str,
        fact_ids: &[String],
        per_fact: usize,
    ) -> Result<HashMap<String, Vec<String>>, StoreError>;
    async fn delete_facts(&self, user_id: &str, fact_ids: &[String]) -> Result<(), StoreError>;
    async fn delete_user(&self, user_id: &str) -> Result<(), StoreError>;
}

/// One message taken from the job queue.
#[derive(Debug)]
pub struct Delivery {
    /// The job id, or `None` when the message body is not a valid job id.
    pub job_id: Option<String>,
    /// The raw body (for dead-letter diagnostics).
    pub body: String,
    /// The broker delivered this message before (its consumer died unacked).
    pub redelivered: bool,
    /// Adapter-specific handle for acknowledging.
    pub tag: u64,
}

/// Delivers job ids to workers, at least once.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Makes a job (already stored as `queued`) visible to workers.
    async fn publish(&self, job_id: &str) -> Result<(), StoreError>;
    /// Waits for the next message.
    async fn next(&self) -> Result<Delivery, StoreError>;
    /// The message is handled (job finished, or nothing to do).
    async fn ack(&self, delivery: &Delivery) -> Result<(), StoreError>;
    /// Delivers the job again after `delay` (retry with backoff) and acks this message.
    async fn retry_later(&self, delivery: &Delivery, delay: std::time::Duration) -> Result<(), StoreError>;
    /// Moves the message to the dead-letter queue, never to be redelivered.
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), StoreError>;
    /// Moves up to `limit` messages from the dead-letter queue back to the
    /// main queue (an operator's re-drive); returns how many. A queue with
    /// no dead-letter queue (the embedded one) has none to move.
    async fn redrive_dead_letters(&self, _limit: usize) -> Result<usize, StoreError> {
        Ok(0)
    }
}

/// Tells caches that a user's data changed.
#[async_trait]
pub trait CacheSignals: Send + Sync {
    /// Bumps the user's generation and announces it; returns the new generation.
    async fn bump(&self, user_id: &str) -> Result<u64, StoreError>;
    async fn generation(&self, user_id: &str) -> Result<u64, StoreError>;
    /// Erasure: removes the user's cached answers (L1) and generation, and
    /// tells every sidecar to forget the user (L0). Returns how many cached
    /// entries were removed.
    async fn forget(&self, user_id: &str) -> Result<u64, StoreError>;
}

/// Errors of extractors.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("language model unavailable: {0}")]
    Unavailable(String),
    #[error("language model reply rejected: {0}")]
    BadReply(String),
}

impl ExtractError {
    pub fn is_transient(&self) -> bool {
        // A malformed reply is retried too: models are not deterministic.
        true
    }
}

/// Pulls candidate facts about the child out of a conversation.
#[async_trait]
pub trait Extractor: Send + Sync {
    fn name(&self) -> &str;
    async fn extract(&self, conversation: &[Message]) -> Result<Vec<Candidate>, ExtractError>;
    /// Decides how `candidate` relates to similar existing facts (`neighbors`, with cosine).
    async fn decide(
        &self,
        candidate: &Candidate,
        neighbors: &[(Fact, f32)],
    ) -> Result<Decision, ExtractError>;
}
