//! Deleting one fact: the fact and the episodes that hold the same words.
//!
//! Why the episodes too: a child (or parent) asking to forget "Bé thích vẽ
//! mèo" means the memory, not one row. The episode the fact was extracted
//! from (same conversation, a shared user turn) says the same thing in the
//! child's words and would keep answering searches. Each removed item gets a
//! DELETE history entry; vectors and graph nodes go with them.

use crate::domain::{Fact, MemoryKind};
use crate::ports::{CacheSignals, FactGraph, MetaStore, VectorIndex};
use crate::service::ServiceError;

/// The ports a deletion touches.
pub struct Forget<'a> {
    pub meta: &'a dyn MetaStore,
    pub vectors: &'a dyn VectorIndex,
    pub graph: &'a dyn FactGraph,
    pub signals: &'a dyn CacheSignals,
}

/// What a deletion removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Deleted {
    pub fact: Fact,
    /// Every item removed: the fact first, then the episodes with its words.
    pub removed: Vec<String>,
}

impl Forget<'_> {
    /// Deletes a fact (or an episode) and the episodes sharing its user turns;
    /// `NotFound` when it does not exist or is already deleted.
    pub async fn delete_fact(&self, fact_id: &str) -> Result<Deleted, ServiceError> {
        let fact = self
            .meta
            .get_fact(fact_id)
            .await?
            .filter(|f| f.status != crate::domain::FactStatus::Deleted)
            .ok_or_else(|| ServiceError::NotFound(format!("fact {fact_id}")))?;
        if !self.meta.delete_fact(fact_id).await? {
            return Err(ServiceError::NotFound(format!("fact {fact_id}")));
        }
        let mut removed = vec![fact_id.to_string()];
        let turns = fact.own_turns();
        for other in self
            .meta
            .conversation_items(&fact.user_id, &fact.conversation_id)
            .await?
        {
            if other.fact_id != fact.fact_id
                && other.kind == MemoryKind::Episode
                && other.own_turns().iter().any(|t| turns.contains(t))
                && self.meta.delete_fact(&other.fact_id).await?
            {
                removed.push(other.fact_id);
            }
        }
        self.vectors.delete(&fact.user_id, &removed).await?;
        self.graph.delete_facts(&fact.user_id, &removed).await?;
        if let Err(e) = self.signals.bump(&fact.user_id).await {
            tracing::warn!(error = %e, "cannot bump cache generation after a delete");
        }
        Ok(Deleted { fact, removed })
    }
}
