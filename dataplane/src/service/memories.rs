//! Memories written directly rather than extracted: an in-place update of
//! one memory (Mem0's `update`) and a bulk import (a Mem0 export). Both keep
//! the memory's id, embed with our embedder, write the vector and graph
//! first (idempotent, keyed by id), then the metadata in one transaction,
//! then bump the user's cache generation, as the worker does.

use crate::domain::{ExtractionPlan, Fact, FactStatus, HistoryEntry, HistoryEvent, MemoryKind, Polarity};
use crate::extract::lexicon;
use crate::ports::{CacheSignals, FactGraph, MetaStore, VectorIndex};
use crate::service::ServiceError;
use crate::service::audit::{Access, Actor, AuditLog};
use chrono::{DateTime, Utc};
use pika_common::wire::{Category, MemoryAttrs};
use pika_embed::Embedder;
use std::collections::HashSet;
use std::sync::Arc;

pub struct MemoryEdits {
    pub meta: Arc<dyn MetaStore>,
    pub vectors: Arc<dyn VectorIndex>,
    pub graph: Arc<dyn FactGraph>,
    pub embedder: Arc<dyn Embedder>,
    pub signals: Arc<dyn CacheSignals>,
    pub audit: AuditLog,
}

/// What an update changes; at least one of the two (the handler checks).
#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    /// New text (validated: 1..5000 characters).
    pub text: Option<String>,
    /// New metadata, replacing the old.
    pub metadata: Option<serde_json::Value>,
}

/// One memory to import, as the export described it.
#[derive(Debug, Clone)]
pub struct Imported {
    pub id: String,
    pub text: String,
    pub category: Category,
    pub attrs: Option<MemoryAttrs>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Its earlier history (Mem0's history rows), oldest first; an ADD is
    /// recorded when empty.
    pub history: Vec<HistoryEntry>,
}

/// What one import batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCount {
    pub inserted: usize,
    /// Ids that exist already (imported before, or used by another memory).
    pub skipped: usize,
}

/// Bilingual concept tags for a text written as given (no extractor ran):
/// they let keyword search find "mèo" under "pets" as for extracted facts.
pub fn concept_tags(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    lexicon::concepts_in(text)
        .into_iter()
        .flat_map(lexicon::tags_of)
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

fn language_of(text: &str) -> String {
    if pika_common::text::looks_vietnamese(text) {
        "vi"
    } else {
        "en"
    }
    .into()
}

impl MemoryEdits {
    /// Rewrites one active memory of the caller's in place: same id, new
    /// text and/or metadata, an UPDATE in its history.
    pub async fn update(&self, actor: &Actor, fact_id: &str, change: Rewrite) -> Result<Fact, ServiceError> {
        let old = self
            .meta
            .get_fact(fact_id)
            .await?
            .filter(|f| f.status == FactStatus::Active && actor.owns(&f.user_id))
            .ok_or_else(|| ServiceError::NotFound(format!("memory {fact_id}")))?;
        let now = Utc::now();
        let mut new = old.clone();
        new.updated_at = now;
        if let Some(meta) = change.metadata {
            let attrs = new.attrs.get_or_insert_with(MemoryAttrs::default);
            attrs.metadata = Some(meta);
        }
        let text_changed = change.text.as_ref().is_some_and(|t| *t != old.content);
        if let Some(text) = change.text.filter(|_| text_changed) {
            new.tags = concept_tags(&text);
            new.entities = Vec::new();
            new.language = language_of(&text);
            new.content = text;
            new.context = None;
            new.predicate = None;
        }
        if text_changed {
            let vector = self
                .embedder
                .embed_passages(vec![new.embedding_text()])
                .await?
                .pop()
                .ok_or_else(|| ServiceError::Embed(pika_embed::EmbedError::BadReply("no vector".into())))?;
            self.vectors
                .upsert(&new.user_id, &[(new.fact_id.clone(), vector)])
                .await?;
            // Its old entities no longer hold; the graph is an enrichment
            // (SDD 10.5): a failure here leaves stale relations, not a failed update.
            if !old.entities.is_empty()
                && let Err(e) = self
                    .graph
                    .delete_facts(&new.user_id, &[new.fact_id.clone()])
                    .await
            {
                tracing::warn!(error = %e, "cannot drop the graph node of an updated memory");
            }
        }
        let plan = ExtractionPlan {
            user_id: new.user_id.clone(),
            history: vec![HistoryEntry {
                fact_id: new.fact_id.clone(),
                event: HistoryEvent::Update,
                old_content: Some(old.content.clone()),
                new_content: Some(new.content.clone()),
                related_fact_id: None,
                job_id: None,
                created_at: now,
            }],
            new_facts: vec![new.clone()],
            ..ExtractionPlan::default()
        };
        self.bump(&new.user_id).await;
        let rewritten = self.meta.rewrite_facts(&plan).await;
        if !matches!(rewritten, Ok(n) if n > 0) {
            // Deleted or erased between the read and the write: the vector
            // just written must not outlive the memory.
            if text_changed {
                self.drop_vectors(&new.user_id, std::slice::from_ref(&new.fact_id))
                    .await;
            }
            rewritten?;
            return Err(ServiceError::NotFound(format!("memory {fact_id}")));
        }
        self.bump(&new.user_id).await;
        let access = Access {
            action: "update_fact",
            user_id: Some(&new.user_id),
            target: Some(fact_id),
        };
        self.audit.write_now(actor, access).await?;
        Ok(new)
    }

    /// Imports memories of one user (`user_id` scoped, as stored). Ids that
    /// exist are skipped before anything is embedded, so a second run adds
    /// nothing and costs only a lookup.
    pub async fn import(
        &self,
        actor: &Actor,
        user_id: &str,
        memories: Vec<Imported>,
    ) -> Result<ImportCount, ServiceError> {
        let ids: Vec<String> = memories.iter().map(|m| m.id.clone()).collect();
        let known: HashSet<String> = self.meta.known_fact_ids(&ids).await?.into_iter().collect();
        let mut seen = HashSet::new();
        let fresh: Vec<Imported> = memories
            .into_iter()
            .filter(|m| !known.contains(&m.id) && seen.insert(m.id.clone()))
            .collect();
        let skipped = ids.len() - fresh.len();
        if fresh.is_empty() {
            return Ok(ImportCount { inserted: 0, skipped });
        }
        let mut plan = ExtractionPlan {
            user_id: user_id.to_string(),
            ..ExtractionPlan::default()
        };
        for m in fresh {
            let fact = imported_fact(user_id, &m);
            if m.history.is_empty() {
                plan.history.push(HistoryEntry {
                    fact_id: fact.fact_id.clone(),
                    event: HistoryEvent::Add,
                    old_content: None,
                    new_content: Some(fact.content.clone()),
                    related_fact_id: None,
                    job_id: None,
                    created_at: fact.created_at,
                });
            } else {
                plan.history.extend(m.history.into_iter().map(|mut h| {
                    h.fact_id = fact.fact_id.clone();
                    h
                }));
            }
            plan.new_facts.push(fact);
        }
        let texts: Vec<String> = plan.new_facts.iter().map(Fact::embedding_text).collect();
        let vectors = self.embedder.embed_passages(texts).await?;
        if vectors.len() != plan.new_facts.len() {
            return Err(pika_embed::EmbedError::BadReply("too few vectors".into()).into());
        }
        let items: Vec<(String, Vec<f32>)> = plan
            .new_facts
            .iter()
            .map(|f| f.fact_id.clone())
            .zip(vectors)
            .collect();
        self.vectors.upsert(user_id, &items).await?;
        self.bump(user_id).await;
        let inserted = match self.meta.import_facts(&plan).await {
            Ok(n) => n,
            Err(e) => {
                // Nothing of the batch was stored (one transaction): neither
                // may its vectors be (the user may have been erased meanwhile).
                let ids: Vec<String> = plan.new_facts.iter().map(|f| f.fact_id.clone()).collect();
                self.drop_vectors(user_id, &ids).await;
                return Err(e.into());
            }
        };
        self.bump(user_id).await;
        let access = Access {
            action: "import",
            user_id: Some(user_id),
            target: None,
        };
        self.audit.write_now(actor, access).await?;
        Ok(ImportCount {
            inserted,
            skipped: skipped + (plan.new_facts.len() - inserted),
        })
    }

    async fn drop_vectors(&self, user_id: &str, ids: &[String]) {
        if let Err(e) = self.vectors.delete(user_id, ids).await {
            tracing::warn!(error = %e, "cannot drop the vectors of memories that were not stored");
        }
    }

    async fn bump(&self, user_id: &str) {
        if let Err(e) = self.signals.bump(user_id).await {
            tracing::warn!(error = %e, "cannot bump cache generation");
        }
    }
}

/// The fact an imported memory becomes: kept as given (no extraction), so
/// no entities or predicate; concept tags for keyword search.
fn imported_fact(user_id: &str, m: &Imported) -> Fact {
    Fact {
        fact_id: m.id.clone(),
        user_id: user_id.to_string(),
        conversation_id: "mem0-import".into(),
        kind: MemoryKind::Fact,
        content: m.text.clone(),
        context: None,
        occurred_at: Some(m.created_at),
        said_at: Some(m.created_at),
        category: m.category,
        confidence: 1.0,
        entities: Vec::new(),
        tags: concept_tags(&m.text),
        source_turns: Vec::new(),
        language: language_of(&m.text),
        status: FactStatus::Active,
        polarity: Polarity::Positive,
        predicate: None,
        supersedes: None,
        created_at: m.created_at,
        updated_at: m.updated_at,
        accessed_count: 0,
        last_accessed_at: None,
        attrs: m.attrs.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concept_tags_relate_a_pet_to_its_bilingual_tags_once_each() {
        let tags = concept_tags("Mình nuôi con mèo tên Miu");
        assert!(tags.iter().any(|t| t == "pet"), "{tags:?}");
        let unique: HashSet<&String> = tags.iter().collect();
        assert_eq!(unique.len(), tags.len(), "no repeats: {tags:?}");
        assert!(concept_tags("zzz qqq").is_empty());
    }
}
