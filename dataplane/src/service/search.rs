//! Search: hybrid retrieval over one user's facts and episodes.
//!
//! 1. The query is read as the user's: their own names are dropped ("What does
//!    Na like?" asked of Na's memory is "what do I like").
//! 2. Two branches run at once: embed the query (or take the sidecar's
//!    embedding) and search the vector index; and rank the user's keyword
//!    matches with BM25 (per-user statistics, `service::bm25`), the query's
//!    own terms at full weight and its topic expansions lower.
//! 3. The two rankings are fused by weighted reciprocal rank (RRF): measured on
//!    the dev sets, it beat lifting the cosine by keyword evidence because
//!    cosines of different models and BM25 scores live on unrelated scales,
//!    and ranks do not care. A "when" question lifts items that name a date.
//! 4. Hydration (one query), collapse of results that share a user turn (a
//!    fact and the episode it came from: one slot, the better one), the final
//!    score (`service::ranking`: fused relevance, recency by when it was said,
//!    relationships), the threshold on `similarity`, graph enrichment (one
//!    query). No per-result queries.
//!
//! `similarity` stays an absolute relevance in 0..1 (the cosine rescaled from
//! the model's floor, lifted by keyword coverage) so `score_threshold` keeps
//! meaning "relevant enough" whatever the ranking does; `score` orders.
//!
//! Over 400 lines on purpose: the ranking steps share one candidate list and
//! read top to bottom as the algorithm; BM25 and the scoring formulas are apart
//! (`bm25`, `ranking`).

use crate::config::SearchConfig;
use crate::domain::{Fact, MemoryKind};
use crate::extract::{names, time};
use crate::metrics::Metrics;
use crate::ports::{FactGraph, MetaStore, VectorIndex};
use crate::service::ServiceError;
use crate::service::audit::{Access, Actor, AuditLog};
use crate::service::bm25::{self, Bm25Params, WeightedTerm};
use crate::service::ranking::{QueryTerms, Weights, fuse, keyword_score, recency, relationship, score};
use pika_common::wire::{HitKind, SearchHit, SearchRequest, SearchResponse};
use pika_embed::Embedder;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// A query embedding computed upstream (the sidecar), with its model.
pub struct ProvidedEmbedding {
    pub model: String,
    pub vector: Vec<f32>,
}

/// One candidate while ranking.
struct Scored {
    fact: Fact,
    /// Absolute relevance in 0..1 (thresholded, reported as `similarity`).
    similarity: f32,
    /// Normalised fused rank relevance in 0..1.
    fused: f32,
    total: f32,
}

/// The search use case: the ports it reads and how it ranks.
pub struct SearchService {
    pub meta: Arc<dyn MetaStore>,
    pub vectors: Arc<dyn VectorIndex>,
    pub graph: Arc<dyn FactGraph>,
    pub embedder: Arc<dyn Embedder>,
    pub config: SearchConfig,
    pub metrics: Arc<Metrics>,
    pub audit: AuditLog,
}

impl SearchService {
    /// Runs one search for `actor` and records the access.
    pub async fn search(
        &self,
        actor: &Actor,
        req: &SearchRequest,
        provided: Option<ProvidedEmbedding>,
    ) -> Result<SearchResponse, ServiceError> {
        let scoped = SearchRequest {
            user_id: actor.scope(&req.user_id)?,
            ..req.clone()
        };
        let resp = self.rank(&scoped, provided).await?;
        let access = Access {
            action: "search",
            user_id: Some(&scoped.user_id),
            target: None,
        };
        self.audit.read(actor, access).await;
        Ok(resp)
    }

    /// Finds and ranks the memories of `req.user_id` (a scoped key) for a query.
    pub async fn rank(
        &self,
        req: &SearchRequest,
        provided: Option<ProvidedEmbedding>,
    ) -> Result<SearchResponse, ServiceError> {
        rank(self, req, provided).await
    }
}

async fn rank(
    deps: &SearchService,
    req: &SearchRequest,
    provided: Option<ProvidedEmbedding>,
) -> Result<SearchResponse, ServiceError> {
    let started = Instant::now();
    let cfg = &deps.config;
    let embedder = &deps.embedder;
    let k = (req.limit * cfg.overfetch.max(1)).max(cfg.min_candidates);

    let user_names = deps.meta.user_names(&req.user_id).await?;
    let query = names::without_names(&req.query, &user_names);
    let qterms = QueryTerms::parse(&query);
    let weighted = weighted_terms(&query, &qterms, cfg.expansion_weight);
    let store_terms: Vec<String> = {
        let mut v: Vec<String> = weighted.iter().map(|w| w.term.clone()).collect();
        v.sort();
        v.dedup();
        v
    };

    // The provided embedding was computed on the query as sent; it is used
    // only when model, dimension and text agree (names dropped changes the text).
    let vector_search = async {
        let vector = match provided {
            Some(p)
                if p.model == embedder.model_id()
                    && p.vector.len() == embedder.dimension()
                    && query == req.query =>
            {
                p.vector
            }
            _ => {
                let t = Instant::now();
                let v = embedder.embed_one(&query).await;
                deps.metrics.observe_dependency("embedder", "embed_query", t);
                deps.metrics.observe_search_stage("embed", t);
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
        deps.metrics.observe_search_stage("vector", t);
        hits
    };
    let keyword_search = async {
        let t = Instant::now();
        let m = deps
            .meta
            .keyword_candidates(&req.user_id, &store_terms, k.max(200))
            .await;
        deps.metrics.observe_search_stage("keyword", t);
        m
    };
    let (vector_hits, keyword) = tokio::join!(vector_search, keyword_search);
    let keyword = keyword?;
    let mut vector_down = false;
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

    // BM25 over the keyword candidates, ranked.
    let doc_terms: Vec<&[String]> = keyword.items.iter().map(|i| i.terms.as_slice()).collect();
    let bm25_scores = bm25::score_all(
        Bm25Params::default(),
        &weighted,
        &doc_terms,
        keyword.total_items,
        keyword.mean_terms,
    );
    let mut keyword_ranked: Vec<(usize, f32)> = bm25_scores
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, s)| *s > 0.0)
        .collect();
    keyword_ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    keyword_ranked.truncate(k);

    let keyword_rank: HashMap<&str, usize> = keyword_ranked
        .iter()
        .enumerate()
        .map(|(rank, (i, _))| (keyword.items[*i].fact_id.as_str(), rank))
        .collect();
    let cosine: HashMap<&str, f32> = vector_hits.iter().map(|(id, s)| (id.as_str(), *s)).collect();
    let dense_rank: HashMap<&str, usize> = vector_hits
        .iter()
        .enumerate()
        .map(|(rank, (id, _))| (id.as_str(), rank))
        .collect();
    // Only what either list ranks is read (and opened), in one batch.
    let mut wanted: Vec<String> = keyword_rank.keys().map(|id| id.to_string()).collect();
    wanted.extend(
        vector_hits
            .iter()
            .map(|(id, _)| id.clone())
            .filter(|id| !keyword_rank.contains_key(id.as_str())),
    );
    let mut facts: HashMap<String, Fact> = HashMap::new();
    if !wanted.is_empty() {
        let t = Instant::now();
        for f in deps.meta.active_facts(&wanted).await? {
            facts.insert(f.fact_id.clone(), f);
        }
        deps.metrics.observe_search_stage("hydrate", t);
    }

    let weights = Weights {
        similarity: cfg.weight_similarity,
        recency: cfg.weight_recency,
        relationship: cfg.weight_relationship,
        half_life_days: cfg.recency_half_life_days,
        keyword_weight: cfg.keyword_weight,
    };
    let floor = cosine_floor(cfg.cosine_floor, embedder.model_id());
    let asks_when = time::asks_when(&query);
    let rrf_max = (cfg.rrf_dense_weight + cfg.rrf_keyword_weight) / (cfg.rrf_k + 1.0);
    let mut scored: Vec<Scored> = facts
        .into_values()
        .filter(|f| {
            req.categories
                .as_ref()
                .is_none_or(|cats| cats.contains(&f.category))
        })
        .filter(|f| {
            req.scope
                .as_ref()
                .is_none_or(|scope| scope.admits(f.attrs.as_ref()))
        })
        .filter_map(|f| {
            let cos = cosine.get(f.fact_id.as_str()).copied().unwrap_or(0.0);
            let cos = ((cos - floor) / (1.0 - floor)).clamp(0.0, 1.0);
            let similarity = fuse(cos, keyword_score(&qterms, &f), weights.keyword_weight);
            if similarity < req.score_threshold {
                return None;
            }
            let mut rrf = 0.0;
            if let Some(r) = dense_rank.get(f.fact_id.as_str()) {
                rrf += cfg.rrf_dense_weight / (cfg.rrf_k + 1.0 + *r as f32);
            }
            if let Some(r) = keyword_rank.get(f.fact_id.as_str()) {
                rrf += cfg.rrf_keyword_weight / (cfg.rrf_k + 1.0 + *r as f32);
            }
            let mut fused = if rrf_max > 0.0 { rrf / rrf_max } else { 0.0 };
            if asks_when && names_a_date(&f) {
                fused += cfg.dated_bonus * fused;
            }
            Some(Scored {
                fact: f,
                similarity,
                fused,
                total: 0.0,
            })
        })
        .collect();

    // Relationship signal from the candidates themselves: a fact connected (by a
    // shared entity) to other relevant facts matters more. No query needed.
    let mut by_entity: HashMap<&str, usize> = HashMap::new();
    for s in &scored {
        for e in &s.fact.entities {
            *by_entity.entry(e.as_str()).or_default() += 1;
        }
    }
    let connected: Vec<usize> = scored
        .iter()
        .map(|s| {
            s.fact
                .entities
                .iter()
                .map(|e| by_entity.get(e.as_str()).copied().unwrap_or(1) - 1)
                .max()
                .unwrap_or(0)
        })
        .collect();
    // Recency by when it was said, relative to the newest candidate: the
    // current state outranks an older one of equal relevance, and a memory
    // imported from last year is not penalised against itself.
    let newest = scored
        .iter()
        .map(|s| said(&s.fact))
        .max()
        .unwrap_or_else(chrono::Utc::now);
    for (s, linked) in scored.iter_mut().zip(connected) {
        s.total = score(
            &weights,
            s.fused,
            recency(said(&s.fact), newest, weights.half_life_days),
            relationship(&s.fact, &qterms, linked),
        );
    }
    scored.sort_by(|a, b| {
        b.total
            .total_cmp(&a.total)
            .then_with(|| b.similarity.total_cmp(&a.similarity))
    });
    if cfg.collapse_same_turn {
        collapse_same_turn(&mut scored);
    }
    scored.truncate(req.limit);

    // Related facts from the graph, in one query, only for returned facts.
    // The graph is an enrichment: when it fails, answer without relations (SDD 10.5).
    let mut graph_down = false;
    let fact_ids: Vec<String> = scored
        .iter()
        .filter(|s| s.fact.kind == MemoryKind::Fact)
        .map(|s| s.fact.fact_id.clone())
        .collect();
    let related = if req.include_related && !fact_ids.is_empty() {
        let t = Instant::now();
        let r = deps.graph.related(&req.user_id, &fact_ids, 5).await;
        deps.metrics.observe_search_stage("graph", t);
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
        .map(|s| {
            let f = s.fact;
            SearchHit {
                related_facts: related.get(&f.fact_id).cloned().unwrap_or_default(),
                fact_id: f.fact_id,
                kind: match f.kind {
                    MemoryKind::Fact => HitKind::Fact,
                    MemoryKind::Episode => HitKind::Episode,
                },
                content: f.content,
                context: f.context,
                occurred_at: f.occurred_at,
                category: f.category,
                score: round4(s.total),
                similarity: round4(s.similarity),
                created_at: f.created_at,
                conversation_id: f.conversation_id,
                source_turns: f.source_turns,
                attrs: f.attrs,
            }
        })
        .collect();

    // Access counters are bookkeeping: batched off the request path.
    deps.audit
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

/// BM25 query terms: the query's own at weight 1, the index terms of the
/// topics it names (tags such as "mèo", "pet" for "thú cưng") lower.
fn weighted_terms(query: &str, qterms: &QueryTerms, expansion_weight: f32) -> Vec<WeightedTerm> {
    let mut out: Vec<WeightedTerm> = pika_common::text::index_terms(query)
        .into_iter()
        .map(|term| WeightedTerm { term, weight: 1.0 })
        .collect();
    if expansion_weight > 0.0 {
        for tag in qterms.expansion_tags() {
            for term in pika_common::text::index_terms(&tag) {
                if !out.iter().any(|w| w.term == term) {
                    out.push(WeightedTerm {
                        term,
                        weight: expansion_weight,
                    });
                }
            }
        }
    }
    out
}

/// When it was said (older rows without it: when it was stored).
fn said(f: &Fact) -> chrono::DateTime<chrono::Utc> {
    f.said_at.unwrap_or(f.created_at)
}

/// True when the item's text names a date ("hôm qua", "last weekend").
fn names_a_date(f: &Fact) -> bool {
    match (f.occurred_at, f.said_at) {
        (Some(o), Some(s)) if o != s => true,
        _ => {
            let reference = chrono::Utc::now().fixed_offset();
            time::resolve(&f.content, reference).is_some()
                || f.context
                    .as_deref()
                    .is_some_and(|c| time::resolve(c, reference).is_some())
        }
    }
}

/// Keeps the first (best) of the results that share a user turn of one
/// conversation; ranked order is kept.
fn collapse_same_turn(scored: &mut Vec<Scored>) {
    let mut seen: HashSet<(String, u32)> = HashSet::new();
    scored.retain(|s| {
        let f = &s.fact;
        // An episode's first turn may be the answered one (the other
        // speaker's); its own turns are the rest. Facts list their own.
        let own = f.own_turns();
        let dup = own
            .iter()
            .any(|t| seen.contains(&(f.conversation_id.clone(), *t)));
        for t in own {
            seen.insert((f.conversation_id.clone(), t));
        }
        !dup
    });
}

/// The cosine unrelated texts reach with this embedder (see `SearchConfig::cosine_floor`).
fn cosine_floor(configured: f32, model_id: &str) -> f32 {
    if configured >= 0.0 {
        return configured.min(0.99);
    }
    if model_id.contains("e5") { 0.75 } else { 0.0 }
}

fn round4(x: f32) -> f32 {
    (x * 10_000.0).round() / 10_000.0
}
