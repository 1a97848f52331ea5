//! Re-embedding every active fact with the configured embedder, after the
//! embedding model changes (the vector index refuses to open with a model it
//! was not built with).

use crate::domain::Fact;
use crate::ports::{MetaStore, VectorIndex};
use crate::service::ServiceError;
use pika_embed::Embedder;
use std::collections::HashMap;

const BATCH: usize = 64;

/// Embeds all active facts in batches and upserts their vectors; returns the count.
pub async fn reindex(
    meta: &dyn MetaStore,
    vectors: &dyn VectorIndex,
    embedder: &dyn Embedder,
) -> Result<usize, ServiceError> {
    let mut after: Option<String> = None;
    let mut total = 0;
    loop {
        let page = meta.scan_active_facts(after.as_deref(), BATCH).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.fact_id.clone());
        let embedded = embedder
            .embed_passages(page.iter().map(Fact::embedding_text).collect())
            .await?;
        let mut per_user: HashMap<&str, Vec<(String, Vec<f32>)>> = HashMap::new();
        for (f, v) in page.iter().zip(embedded) {
            per_user
                .entry(f.user_id.as_str())
                .or_default()
                .push((f.fact_id.clone(), v));
        }
        for (user, items) in per_user {
            vectors.upsert(user, &items).await?;
        }
        total += page.len();
        tracing::info!(total, "reindexed");
    }
    Ok(total)
}
