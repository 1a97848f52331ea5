//! Erasure: one fact (with the episodes that hold the same words), or a whole
//! user. Both deletes run in the same order, chosen so that a failure part
//! way can be retried to completion: the side stores (vectors, graph) first,
//! the metadata rows last (while they exist, a retry finds what is left to
//! remove), then the cache signal.
//!
//! Why the episodes go with a fact: a child (or parent) asking to forget "Bé
//! thích vẽ mèo" means the memory, not one row. The episode the fact was
//! extracted from (same conversation, a shared user turn) says the same thing
//! in the child's words and would keep answering searches. Each removed item
//! gets a DELETE history entry.

use crate::domain::{Fact, FactStatus, MemoryKind};
use crate::ports::{CacheSignals, FactGraph, MetaStore, VectorIndex};
use crate::service::ServiceError;
use std::sync::Arc;

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

    /// Removes every trace of a user from the stores; returns how many facts
    /// and episodes the metadata store held.
    pub async fn delete_user(&self, user_id: &str) -> Result<u64, ServiceError> {
        self.vectors.delete_user(user_id).await?;
        self.graph.delete_user(user_id).await?;
        let removed = self.meta.delete_user(user_id).await?;
        self.announce(user_id).await;
        Ok(removed)
    }

    /// Cached answers about the user are stale now; without a signal they
    /// expire by TTL (DESIGN.md §5).
    async fn announce(&self, user_id: &str) {
        if let Err(e) = self.signals.bump(user_id).await {
            tracing::warn!(error = %e, "cannot bump cache generation after a delete");
        }
    }
}
