//! The graph with entity names blinded: an entity node holds a keyed hash
//! of its name under the child's data key, never the name. Facts still meet
//! at a shared entity (the same name gives the same token for one child),
//! tokens of two children never match, and an erased child's tokens cannot
//! be tied to any name once its key is gone.

use super::Vault;
use crate::ports::{FactGraph, StoreError};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;

const ENTITY: &str = "entity";

/// [`FactGraph`] over another, with entity names blinded.
pub struct SealedGraph {
    inner: Arc<dyn FactGraph>,
    vault: Arc<Vault>,
}

impl SealedGraph {
    pub fn new(inner: Arc<dyn FactGraph>, vault: Arc<Vault>) -> SealedGraph {
        SealedGraph { inner, vault }
    }
}

#[async_trait]
impl FactGraph for SealedGraph {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn upsert_facts(&self, user_id: &str, facts: &[(String, Vec<String>)]) -> Result<(), StoreError> {
        // Never makes a key, and never writes names in the clear. Every job
        // got its child's key when it was accepted, so none now means the
        // child was erased while this job ran: nothing of theirs may be
        // written (its commit is refused next). A job queued before sealing
        // was turned on also lands here and keeps its facts, without graph
        // links.
        let Some(key) = self.vault.existing_key(user_id).await? else {
            tracing::debug!("no data key for the job's user (erased meanwhile): graph write skipped");
            return Ok(());
        };
        let blinded: Vec<(String, Vec<String>)> = facts
            .iter()
            .map(|(id, names)| (id.clone(), names.iter().map(|n| key.blind(ENTITY, n)).collect()))
            .collect();
        self.inner.upsert_facts(user_id, &blinded).await
    }

    async fn related(
        &self,
        user_id: &str,
        fact_ids: &[String],
        per_fact: usize,
    ) -> Result<HashMap<String, Vec<String>>, StoreError> {
        self.inner.related(user_id, fact_ids, per_fact).await
    }

    async fn delete_facts(&self, user_id: &str, fact_ids: &[String]) -> Result<(), StoreError> {
        self.inner.delete_facts(user_id, fact_ids).await
    }

    async fn delete_user(&self, user_id: &str) -> Result<(), StoreError> {
        self.inner.delete_user(user_id).await
    }
}
