//! Search: embed the query once (or take the sidecar's embedding), gather
//! candidates from the vector index (over-fetched) and from keyword matching,
//! hydrate them in one query, enrich relations in one query, re-rank, apply the
//! threshold. No per-result queries.

use crate::app::AppState;
use crate::domain::Fact;
use crate::service::ServiceError;
use crate::service::ranking::{QueryTerms, Weights, fuse, keyword_score, recency, relationship, score};
use chrono::Utc;
use pika_common::wire::{SearchHit, SearchRequest, SearchResponse};
use std::collections::HashMap;
use std::time::Instant;

/// A query embedding computed upstream (the sidecar), with its model.
pub struct ProvidedEmbedding {
    pub model: String,
    pub vector: Vec<f32>,
}

/// Runs one search.
pub async fn search(
    state: &AppState,
    req: &SearchRequest,
    provided: Option<ProvidedEmbedding>,
) -> Result<SearchResponse, ServiceError> {
    let started = Instant::now();
    let deps = &state.deps;
    let cfg = &state.config.search;
    let embedder = &deps.embedder;
    let k = (req.limit * cfg.overfetch.max(1)).max(50);
    let qterms = QueryTerms::parse(&req.query);
    let folded_terms = qterms.folded();

    // Two independent branches run at once: embed-then-vector-search, and the
    // keyword query (which needs no embedding), so the keyword round trip hides
    // behind the embedding. Without a query vector or a vector index the search
    // degrades to keyword matching over the metadata store (SDD 10.5).
    let vector_search = async {
        let vector = match provided {
            Some(p) if p.model == embedder.model_id() && p.vector.len() == embedder.dimension() => p.vector,
            _ => {
                let t = Instant::now();
                let v = embedder.embed_one(&req.query).await;
                state.metrics.observe_dependency("embedder", "embed_query", t);
                state.metrics.observe_search_stage("embed", t);
                match v {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %e, "embedder unavailable; keyword search only");
                        return Ok(None);
                    }
                }
            }
        };
        let t = Instant::now();
        let hits = deps.vectors.search(&req.user_id, &vector, k).await.map(Some);
        state.metrics.observe_search_stage("vector", t);
        hits
    };
    let keyword_search = async {
        let t = Instant::now();
        let facts = deps.meta.keyword_candidates(&req.user_id, &folded_terms, k).await;
        state.metrics.observe_search_stage("keyword", t);
        facts
    };
    let (vector_hits, keyword_facts) = tokio::join!(vector_search, keyword_search);
    let mut vector_down = false;
    let keyword_facts = keyword_facts?;
    let vector_hits = match vector_hits {
        Ok(Some(hits)) => hits,
        Ok(None) => {
            vector_down = true;
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "vector index unavailable; keyword search only");
            vector_down = true;
            Vec::new()
        }
    };

    let cosine: HashMap<&str, f32> = vector_hits.iter().map(|(id, s)| (id.as_str(), *s)).collect();
    let mut facts: HashMap<String, Fact> = keyword_facts
        .into_iter()
        .map(|f| (f.fact_id.clone(), f))
        .collect();
    let missing: Vec<String> = vector_hits
        .iter()
        .map(|(id, _)| id.clone())
        .filter(|id| !facts.contains_key(id))
        .collect();
    if !missing.is_empty() {
        let t = Instant::now();
        for f in deps.meta.active_facts(&missing).await? {
            facts.insert(f.fact_id.clone(), f);
        }
        state.metrics.observe_search_stage("hydrate", t);
    }

    let weights = Weights {
        similarity: cfg.weight_similarity,
        recency: cfg.weight_recency,
        relationship: cfg.weight_relationship,
        half_life_days: cfg.recency_half_life_days,
        keyword_weight: cfg.keyword_weight,
    };
    let now = Utc::now();
    let mut scored: Vec<(f32, f32, Fact)> = facts
        .into_values()
        .filter(|f| {
            req.categories
                .as_ref()
                .is_none_or(|cats| cats.contains(&f.category))
        })
        .filter_map(|f| {
            let cos = cosine.get(f.fact_id.as_str()).copied().unwrap_or(0.0);
            let sim = fuse(cos, keyword_score(&qterms, &f), weights.keyword_weight);
            (sim >= req.score_threshold).then_some((sim, 0.0, f))
        })
        .collect();

    // Relationship signal from the candidates themselves: a fact connected (by a
    // shared entity) to other relevant facts matters more. No query needed.
    let mut by_entity: HashMap<&str, usize> = HashMap::new();
    for (_, _, f) in &scored {
        for e in &f.entities {
            *by_entity.entry(e.as_str()).or_default() += 1;
        }
    }
    let connected: Vec<usize> = scored
        .iter()
        .map(|(_, _, f)| {
            f.entities
                .iter()
                .map(|e| by_entity.get(e.as_str()).copied().unwrap_or(1) - 1)
                .max()
                .unwrap_or(0)
        })
        .collect();
    for ((sim, total, f), linked) in scored.iter_mut().zip(connected) {
        *total = score(
            &weights,
            *sim,
            recency(f.updated_at, now, weights.half_life_days),
            relationship(f, &qterms, linked),
        );
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.total_cmp(&a.0)));
    scored.truncate(req.limit);

    // Related facts from the graph, in one query, only for what is returned.
    // The graph is an enrichment: when it fails, answer without relations (SDD 10.5).
    let mut graph_down = false;
    let related = if req.include_related && !scored.is_empty() {
        let ids: Vec<String> = scored.iter().map(|(_, _, f)| f.fact_id.clone()).collect();
        let t = Instant::now();
        let r = deps.graph.related(&req.user_id, &ids, 5).await;
        state.metrics.observe_search_stage("graph", t);
        r.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "graph unavailable; answering without relations");
            graph_down = true;
            HashMap::new()
        })
    } else {
        HashMap::new()
    };

    let results: Vec<SearchHit> = scored
        .into_iter()
        .map(|(sim, total, f)| SearchHit {
            related_facts: related.get(&f.fact_id).cloned().unwrap_or_default(),
            fact_id: f.fact_id,
            content: f.content,
            category: f.category,
            score: round4(total),
            similarity: round4(sim),
            created_at: f.created_at,
            conversation_id: f.conversation_id,
            source_turns: f.source_turns,
        })
        .collect();

    // Access counters are bookkeeping: batched off the request path.
    state
        .bookkeeper
        .accessed(results.iter().map(|r| r.fact_id.clone()).collect());
    Ok(SearchResponse {
        query: req.query.clone(),
        results_count: results.len(),
        results,
        processing_time_ms: (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
        degraded: vector_down || graph_down,
        source: match (vector_down, graph_down) {
            (false, false) => "vector+keyword",
            (false, true) => "vector+keyword (graph unavailable)",
            (true, false) => "keyword (vector search unavailable)",
            (true, true) => "keyword (vector search and graph unavailable)",
        }
        .into(),
    })
}

fn round4(x: f32) -> f32 {
    (x * 10_000.0).round() / 10_000.0
}
