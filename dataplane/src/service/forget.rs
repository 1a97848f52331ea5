//! Erasure: one fact (with the episodes that hold the same words), or a whole
//! user. Both deletes run in the same order, chosen so that a failure part
//! way can be retried to completion: the side stores (vectors, graph) first,
//! the metadata rows last (while they exist, a retry finds what is left to
//! remove), then the cache signal.
//!
//! Erasing a user leaves nothing that names them (DESIGN.md §7): a tombstone
//! first (a pseudonym and a time, which a worker holding an older job checks
//! before and after its writes, removing what it wrote), then vectors, graph
//! and every metadata row; the audit log keeps its rows under the pseudonym;
//! then the user's cached answers in Redis, and a message telling every
//! sidecar to forget the user. A second cache sweep a moment later catches
//! an answer a sidecar was filling at the instant of the erasure. The caller
//! gets a receipt of what went where.
//!
//! Why the episodes go with a fact: a child (or parent) asking to forget "Bé
//! thích vẽ mèo" means the memory, not one row. The episode the fact was
//! extracted from (same conversation, a shared user turn) says the same thing
//! in the child's words and would keep answering searches. Each removed item
//! gets a DELETE history entry.

use crate::domain::{Fact, FactStatus, MemoryKind};
use crate::ports::{CacheSignals, FactGraph, MetaErasure, MetaStore, VectorIndex};
use crate::service::ServiceError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// How long after an erasure the cache is swept again (an answer a sidecar
/// was filling when the erasure ran lands within a request's time).
const SECOND_SWEEP_AFTER: Duration = Duration::from_secs(3);

/// The name an erased user keeps in the tombstone and the audit log: a hash
/// of the scoped key, never the id. Not keyed: someone who guesses an id can
/// confirm it was erased, nothing more.
pub fn pseudonym(user_id: &str) -> String {
    let digest = Sha256::digest(format!("pika-erased-v1\0{user_id}").as_bytes());
    format!("erased:{}", hex::encode(&digest[..16]))
}

/// What an erasure removed, store by store: the answer to `DELETE /v1/users/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct ErasureReceipt {
    pub receipt_id: String,
    pub erased_at: DateTime<Utc>,
    /// The name the audit log and the tombstone keep.
    pub pseudonym: String,
    pub metadata: MetaErasure,
    /// Every vector of the user (the index reports no count).
    pub vectors: &'static str,
    /// Every node and relation of the user.
    pub graph: &'static str,
    /// Cached answers removed from Redis (L1); `None` when Redis could not be
    /// reached (they then expire by TTL). Every sidecar is told to drop L0.
    pub cache_entries: Option<u64>,
}

/// The ports an erasure touches.
#[derive(Clone)]
pub struct Forget {
    pub meta: Arc<dyn MetaStore>,
    pub vectors: Arc<dyn VectorIndex>,
    pub graph: Arc<dyn FactGraph>,
    pub signals: Arc<dyn CacheSignals>,
}

/// What a fact deletion removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Deleted {
    pub fact: Fact,
    /// Every item removed: the fact first, then the episodes with its words.
    pub removed: Vec<String>,
}

impl Forget {
    /// Deletes a fact (or an episode) and the episodes sharing its user turns;
    /// `NotFound` when it does not exist or is already deleted.
    pub async fn delete_fact(&self, fact_id: &str) -> Result<Deleted, ServiceError> {
        let fact = self
            .meta
            .get_fact(fact_id)
            .await?
            .filter(|f| f.status != FactStatus::Deleted)
            .ok_or_else(|| ServiceError::NotFound(format!("fact {fact_id}")))?;
        let turns = fact.own_turns();
        let mut targets = vec![fact_id.to_string()];
        for other in self
            .meta
            .conversation_items(&fact.user_id, &fact.conversation_id)
            .await?
        {
            if other.fact_id != fact.fact_id
                && other.kind == MemoryKind::Episode
                && other.status != FactStatus::Deleted
                && other.own_turns().iter().any(|t| turns.contains(t))
            {
                targets.push(other.fact_id);
            }
        }
        self.vectors.delete(&fact.user_id, &targets).await?;
        self.graph.delete_facts(&fact.user_id, &targets).await?;
        let mut removed = Vec::with_capacity(targets.len());
        for id in targets {
            if self.meta.delete_fact(&id).await? {
                removed.push(id);
            }
        }
        if removed.first().is_none_or(|first| first != fact_id) {
            // Deleted concurrently by another request between our read and write.
            return Err(ServiceError::NotFound(format!("fact {fact_id}")));
        }
        self.announce(&fact.user_id).await;
        Ok(Deleted { fact, removed })
    }

    /// Removes every trace of a user (a scoped key) from every store and cache.
    pub async fn delete_user(&self, user_id: &str) -> Result<ErasureReceipt, ServiceError> {
        let erased_at = Utc::now();
        let pseudonym = pseudonym(user_id);
        self.meta.record_erasure(&pseudonym, erased_at).await?;
        self.vectors.delete_user(user_id).await?;
        self.graph.delete_user(user_id).await?;
        let metadata = self.meta.delete_user(user_id, &pseudonym).await?;
        let cache_entries = match self.signals.forget(user_id).await {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "cannot remove cached answers of an erased user; they expire by TTL");
                None
            }
        };
        let signals = self.signals.clone();
        let user = user_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(SECOND_SWEEP_AFTER).await;
            if let Err(e) = signals.forget(&user).await {
                tracing::warn!(error = %e, "second cache sweep after an erasure failed");
            }
        });
        Ok(ErasureReceipt {
            receipt_id: uuid::Uuid::now_v7().to_string(),
            erased_at,
            pseudonym,
            metadata,
            vectors: "removed",
            graph: "removed",
            cache_entries,
        })
    }

    /// After a job of `user_id` accepted at `accepted_at` wrote `fact_ids`:
    /// when the user was erased since, removes what it wrote from the side
    /// stores (and the user's last traces there when nothing of theirs is
    /// left) and answers `true`: the job's results must not be kept.
    pub async fn undo_if_erased(
        &self,
        user_id: &str,
        accepted_at: DateTime<Utc>,
        fact_ids: &[String],
    ) -> Result<bool, ServiceError> {
        if !self.meta.erased_since(&pseudonym(user_id), accepted_at).await? {
            return Ok(false);
        }
        if !fact_ids.is_empty() {
            self.vectors.delete(user_id, fact_ids).await?;
            self.graph.delete_facts(user_id, fact_ids).await?;
        }
        let page = self.meta.list_facts(user_id, None, 1, None).await?;
        if page.facts.is_empty() {
            self.vectors.delete_user(user_id).await?;
            self.graph.delete_user(user_id).await?;
            if let Err(e) = self.signals.forget(user_id).await {
                tracing::warn!(error = %e, "cannot clear the cache of an erased user");
            }
        }
        Ok(true)
    }

    /// Cached answers about the user are stale now; without a signal they
    /// expire by TTL (DESIGN.md §5).
    async fn announce(&self, user_id: &str) {
        if let Err(e) = self.signals.bump(user_id).await {
            tracing::warn!(error = %e, "cannot bump cache generation after a delete");
        }
    }
}
