//! The search cache: L0 (in-process) then L1 (Redis), exact then semantic,
//! then the dataplane, with the query embedded once.
//!
//! `policy.rs`-like decisions (what is cacheable) live in [`cacheable`];
//! keys in [`key`]; storage in [`l0`] and [`l1`]; matching in [`semantic`].
//! Concurrent misses for one key make one upstream call: the fill runs inside
//! moka's entry API, and the other callers wait for its result.

pub mod key;
pub mod l0;
pub mod l1;
pub mod semantic;

use crate::errors::Refusal;
use crate::metrics::Metrics;
use crate::proxy::{Buffered, ProxyError, Upstream};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use key::SearchKeys;
use l0::{Cached, L0, Source, UserSlot};
use l1::L1;
use pika_common::cache_policy::CachePolicySpec;
use pika_common::wire::SearchRequest;
use pika_embed::Embedder;
use semantic::{SemanticEntry, best_match};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const X_CACHE: &str = "x-cache";
/// `semantic` when the answer was cached for a paraphrase of this query.
pub const X_CACHE_MATCH: &str = "x-cache-match";
pub const X_QUERY_EMBEDDING: &str = "x-pika-query-embedding";
pub const X_EMBEDDING_MODEL: &str = "x-pika-embedding-model";

/// Why a search answer was not cached; the caller gets it as it came.
#[derive(Debug)]
pub enum Uncached {
    /// The dataplane answered with an error or a degraded result.
    Answer(Buffered),
    Unreachable(ProxyError),
}

/// A successful, non-degraded search answer: only those are cached. Mem0
/// shapes carry no `degraded` field: their answers say it in a header.
pub fn cacheable(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> bool {
    if let Some(v) = headers.get(pika_common::mem0::DEGRADED_HEADER) {
        return status == StatusCode::OK && v == "false";
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        data: ProbeData,
    }
    #[derive(serde::Deserialize)]
    struct ProbeData {
        degraded: bool,
    }
    status == StatusCode::OK && serde_json::from_slice::<Probe>(body).is_ok_and(|p| !p.data.degraded)
}

/// The request as the dataplane should see it on a miss.
pub struct Outgoing<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
}

pub struct SearchCache {
    pub l0: L0,
    pub l1: Option<Arc<L1>>,
    pub embedder: Arc<dyn Embedder>,
    pub policy: CachePolicySpec,
    pub upstream: Upstream,
    pub metrics: Arc<Metrics>,
}

fn respond(body: Bytes, x_cache: &'static str, semantic: bool) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(X_CACHE, HeaderValue::from_static(x_cache));
    if semantic {
        h.insert(X_CACHE_MATCH, HeaderValue::from_static("semantic"));
    }
    resp
}

impl SearchCache {
    /// Answers one validated search. `subscribed` says whether invalidation
    /// messages are arriving; when not, L0 serves only very young entries.
    /// Answers `req` from cache or the dataplane. `route` names the answer's
    /// shape (`native`, or a Mem0 shape): answers of different shapes never
    /// stand in for each other.
    pub async fn answer(
        &self,
        req: &SearchRequest,
        route: &str,
        out: Outgoing<'_>,
        subscribed: bool,
    ) -> Response<Body> {
        let started = Instant::now();
        let keys = SearchKeys::new(req, route, self.embedder.model_id());
        let slot = self.l0.user(&keys.user_id);
        slot.touch();
        let epoch = slot.epoch();
        let l0_key = (keys.exact, epoch);
        let max_age = Duration::from_secs(if subscribed {
            self.policy.l0.ttl_seconds
        } else {
            self.policy.l0.unsubscribed_ttl_seconds
        });
        if let Some(hit) = self.l0.entries.get(&l0_key).await {
            if hit.inserted.elapsed() <= max_age {
                self.metrics.cache("l0", "hit");
                self.metrics.hit("l0", started);
                return respond(hit.body.clone(), "L0-HIT", false);
            }
            self.l0.entries.invalidate(&l0_key).await;
        }
        let fill = self.fill(req, &keys, &slot, epoch, out);
        match self.l0.entries.entry(l0_key).or_try_insert_with(fill).await {
            Ok(entry) if entry.is_fresh() => {
                let c = entry.into_value();
                let (label, layer, semantic) = match c.source {
                    Source::L0Semantic => ("L0-HIT", Some("l0"), true),
                    Source::L1Exact => ("L1-HIT", Some("l1"), false),
                    Source::L1Semantic => ("L1-HIT", Some("l1"), true),
                    Source::Upstream => ("MISS", None, false),
                    Source::UpstreamL1Down => ("BYPASS", None, false),
                };
                if let Some(layer) = layer {
                    self.metrics.hit(layer, started);
                }
                respond(c.body.clone(), label, semantic)
            }
            Ok(entry) => {
                // Another request for the same key filled it while we waited.
                self.metrics.cache("l0", "hit");
                self.metrics.hit("l0", started);
                respond(entry.into_value().body.clone(), "L0-HIT", false)
            }
            Err(uncached) => match &*uncached {
                Uncached::Answer(b) => {
                    let mut resp = b.clone().into_response();
                    resp.headers_mut()
                        .insert(X_CACHE, HeaderValue::from_static("MISS"));
                    resp
                }
                Uncached::Unreachable(e) => {
                    let mut resp = Refusal::Upstream(e.clone()).into_response();
                    resp.headers_mut()
                        .insert(X_CACHE, HeaderValue::from_static("MISS"));
                    resp
                }
            },
        }
    }

    /// L1 exact, then (with the query embedded once) L0 and L1 semantic, then
    /// the dataplane. Runs once per key however many requests wait on it.
    async fn fill(
        &self,
        req: &SearchRequest,
        keys: &SearchKeys,
        slot: &UserSlot,
        epoch: u64,
        out: Outgoing<'_>,
    ) -> Result<Arc<Cached>, Uncached> {
        let cached = |body: Bytes, source: Source, generation: Option<u64>| {
            Arc::new(Cached {
                body,
                inserted: Instant::now(),
                source,
                generation,
            })
        };
        self.metrics.cache("l0", "miss");
        let l1 = self.l1.as_ref().filter(|l| l.usable());
        let mut generation = None;
        if let Some(l1) = l1 {
            match l1.lookup(keys).await {
                Ok(found) => {
                    generation = Some(found.generation);
                    if let Some(body) = found.body {
                        self.metrics.cache("l1", "hit");
                        return Ok(cached(body, Source::L1Exact, generation));
                    }
                }
                Err(e) => tracing::debug!(error = %e, "L1 lookup failed; going on without it"),
            }
        }

        // The user's L1 candidates are fetched while the query is embedded, so
        // the semantic L1 check adds no round trip to a miss.
        let semantic = self.policy.semantic.enabled;
        let l1_candidates = async {
            match (semantic, l1, generation) {
                (true, Some(l1), Some(g)) => l1.candidates(&keys.user_id, g).await.ok(),
                _ => None,
            }
        };
        let (embedded, l1_candidates) = tokio::join!(self.embedder.embed_one(&req.query), l1_candidates);
        let embedding: Option<Arc<[f32]>> = match embedded {
            Ok(v) => Some(v.into()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot embed the query; the dataplane will");
                None
            }
        };
        let entry = embedding.as_ref().map(|v| SemanticEntry {
            params: keys.params,
            exact: keys.exact,
            query: keys.query.clone(),
            embedding: v.clone(),
        });

        if let (true, Some(entry)) = (semantic, &entry) {
            let threshold = self.policy.semantic.threshold as f32;
            let recent = slot.recent();
            if let Some((m, _)) = best_match(&recent, keys.params, &keys.query, &entry.embedding, threshold)
                && let Some(c) = self.l0.entries.get(&(m.exact, epoch)).await
            {
                self.metrics.cache("l0", "semantic_hit");
                slot.remember(epoch, entry.clone());
                // The copied answer is as old as the one it copies.
                return Ok(cached(c.body.clone(), Source::L0Semantic, c.generation));
            }
            if let (Some(l1), Some(g), Some(candidates)) = (l1, generation, &l1_candidates)
                && let Some((m, _)) =
                    best_match(candidates, keys.params, &keys.query, &entry.embedding, threshold)
                && let Ok(Some(body)) = l1.body(&keys.user_id, g, m.exact).await
            {
                self.metrics.cache("l1", "semantic_hit");
                slot.remember(epoch, entry.clone());
                return Ok(cached(body, Source::L1Semantic, generation));
            }
        }
        let l1_live = generation.is_some();
        self.metrics.cache("l1", if l1_live { "miss" } else { "bypass" });

        let extra: Vec<(HeaderName, String)> = match &embedding {
            Some(v) => vec![
                (
                    HeaderName::from_static(X_QUERY_EMBEDDING),
                    pika_common::vector::encode_f32_base64(v),
                ),
                (
                    HeaderName::from_static(X_EMBEDDING_MODEL),
                    self.embedder.model_id().to_string(),
                ),
            ],
            None => Vec::new(),
        };
        let t = Instant::now();
        let answer = self
            .upstream
            .send_buffered(out.method, out.uri, out.headers, &extra, out.body)
            .await;
        self.metrics
            .upstream_duration
            .with_label_values(&["search"])
            .observe(t.elapsed().as_secs_f64());
        let answer = answer.map_err(Uncached::Unreachable)?;
        if !cacheable(answer.status, &answer.headers, &answer.body) {
            return Err(Uncached::Answer(answer));
        }
        if let Some(entry) = entry {
            slot.remember(epoch, entry.clone());
            if let (Some(l1), Some(g)) = (l1, generation) {
                let l1 = l1.clone();
                let user = keys.user_id.clone();
                let body = answer.body.clone();
                // Off the request path: the caller has its answer already.
                tokio::spawn(async move {
                    if let Err(e) = l1.store(&user, g, &entry, &body).await {
                        tracing::debug!(error = %e, "cannot store in L1");
                    }
                });
            }
        }
        Ok(cached(
            answer.body,
            if l1_live {
                Source::Upstream
            } else {
                Source::UpstreamL1Down
            },
            generation,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_successful_non_degraded_answers_are_cached() {
        let ok = br#"{"status":"success","data":{"degraded":false,"results":[]}}"#;
        let degraded = br#"{"status":"success","data":{"degraded":true,"results":[]}}"#;
        let none = HeaderMap::new();
        assert!(cacheable(StatusCode::OK, &none, ok));
        assert!(!cacheable(StatusCode::OK, &none, degraded));
        assert!(!cacheable(StatusCode::SERVICE_UNAVAILABLE, &none, ok));
        assert!(!cacheable(StatusCode::OK, &none, b"not json"));
        // Mem0 shapes: the header decides.
        let mut fine = HeaderMap::new();
        fine.insert(
            pika_common::mem0::DEGRADED_HEADER,
            "false".parse().expect("value"),
        );
        let mut worse = HeaderMap::new();
        worse.insert(pika_common::mem0::DEGRADED_HEADER, "true".parse().expect("value"));
        assert!(cacheable(StatusCode::OK, &fine, br#"{"results":[]}"#));
        assert!(cacheable(StatusCode::OK, &fine, b"[]"));
        assert!(!cacheable(StatusCode::OK, &worse, b"[]"));
    }
}
