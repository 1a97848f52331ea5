//! Mem0's request shapes that both servers read (DESIGN.md §13): whose
//! memories a body names (user, and agent, run and app within it) and a
//! Mem0 search as our [`SearchRequest`]. The dataplane answers Mem0
//! searches with it; the sidecar keys its cache with it, so a Mem0 search
//! is cached exactly like a native one. Pure parsing: no I/O.

use crate::validate::{self, ValidationErrors};
use crate::wire::{MemoryScope, RawSearchRequest, SearchRequest};
use serde_json::{Map, Value, json};

/// Mem0's search defaults (`top_k`, `threshold`); our `limit` stops at 100.
pub const DEFAULT_TOP_K: u64 = 10;
pub const DEFAULT_THRESHOLD: f64 = 0.1;
pub const MAX_TOP_K: u64 = 100;

/// Mem0's entity ids besides the user: kept on each memory (as its scope)
/// and filtered by.
const SCOPE_KEYS: &[&str] = &["agent_id", "run_id", "app_id"];
/// Ids the 0.1.x/1.x clients send back from `/v1/ping/`: the key names the
/// tenant, so they narrow nothing.
const IGNORED_KEYS: &[&str] = &["org_id", "project_id"];

fn one(field: &str, reason: impl Into<String>) -> ValidationErrors {
    ValidationErrors::one(field, reason)
}

/// Whose memories a Mem0 body names: the user (required: PIKA's memories
/// belong to users) and, optionally, the agent, run and app inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub user: Value,
    pub scope: MemoryScope,
}

/// Reads the entity ids of a Mem0 body: top level, in `filters`, or in an
/// `AND` list of `filters`. Any other filter (OR, NOT, metadata,
/// operators) is refused by name rather than ignored.
pub fn selector(body: &Map<String, Value>) -> Result<Selector, ValidationErrors> {
    let mut found = Found::default();
    for key in std::iter::once("user_id").chain(SCOPE_KEYS.iter().copied()) {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            found.set(key, key, v)?;
        }
    }
    if let Some(filters) = body.get("filters").filter(|v| !v.is_null()) {
        collect_filters(filters, "filters", &mut found)?;
    }
    let user = found
        .user
        .ok_or_else(|| one("user_id", "is required (top level or in filters)"))?;
    Ok(Selector {
        user,
        scope: found.scope,
    })
}

#[derive(Default)]
struct Found {
    user: Option<Value>,
    scope: MemoryScope,
}

impl Found {
    fn set(&mut self, key: &str, path: &str, v: &Value) -> Result<(), ValidationErrors> {
        // A wildcard names no entity: it narrows nothing.
        if v == "*" {
            return Ok(());
        }
        if key == "user_id" {
            self.user = Some(v.clone());
            return Ok(());
        }
        let id = v
            .as_str()
            .ok_or_else(|| one(path, "must be a string"))?
            .to_string();
        validate::check_id(&id).map_err(|r| one(path, r))?;
        let slot = match key {
            "agent_id" => &mut self.scope.agent_id,
            "run_id" => &mut self.scope.run_id,
            _ => &mut self.scope.app_id,
        };
        *slot = Some(id);
        Ok(())
    }
}

fn collect_filters(f: &Value, path: &str, found: &mut Found) -> Result<(), ValidationErrors> {
    let Some(obj) = f.as_object() else {
        return Err(one(path, "must be an object"));
    };
    for (k, v) in obj {
        let here = format!("{path}.{k}");
        match k.as_str() {
            "AND" => {
                let items = v.as_array().ok_or_else(|| one(&here, "must be a list"))?;
                for item in items {
                    collect_filters(item, &here, found)?;
                }
            }
            key if key == "user_id" || SCOPE_KEYS.contains(&key) => {
                if !v.is_null() {
                    found.set(key, &here, v)?;
                }
            }
            key if IGNORED_KEYS.contains(&key) => {}
            _ => {
                return Err(one(
                    &here,
                    "is not supported by PIKA (supported: user_id, agent_id, run_id, app_id, AND)",
                ));
            }
        }
    }
    Ok(())
}

/// The most a memory's `metadata` may take, as JSON: it is copied onto
/// every memory an add makes, so it is bounded well below the body limit.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Whether `metadata` fits [`MAX_METADATA_BYTES`].
pub fn metadata_fits(metadata: &Value) -> bool {
    serde_json::to_vec(metadata).is_ok_and(|b| b.len() <= MAX_METADATA_BYTES)
}

/// Header on Mem0 search answers saying whether the answer was degraded
/// (`true`/`false`): Mem0's shapes have no `degraded` field, and the
/// sidecar caches only answers that were not.
pub const DEGRADED_HEADER: &str = "x-pika-degraded";

/// How a Mem0 search route answers: v3 wraps the list in `{"results"}`,
/// v1 and v2 return it bare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchShape {
    Wrapped,
    Bare,
}

impl SearchShape {
    pub fn as_str(self) -> &'static str {
        match self {
            SearchShape::Wrapped => "mem0-wrapped",
            SearchShape::Bare => "mem0-bare",
        }
    }
}

/// The shape of a Mem0 search path (with or without the trailing `/`).
pub fn search_route(path: &str) -> Option<SearchShape> {
    match path.trim_end_matches('/') {
        "/v3/memories/search" => Some(SearchShape::Wrapped),
        "/v2/memories/search" | "/v1/memories/search" => Some(SearchShape::Bare),
        _ => None,
    }
}

/// A Mem0 search (`top_k`, `threshold`, `filters`) as ours.
pub fn search(body: &Value) -> Result<SearchRequest, ValidationErrors> {
    let obj = body
        .as_object()
        .ok_or_else(|| one("body", "must be a JSON object"))?;
    let top_k = match obj.get("top_k").or_else(|| obj.get("limit")) {
        None | Some(Value::Null) => DEFAULT_TOP_K,
        Some(v) => v
            .as_u64()
            .filter(|k| (1..=1000).contains(k))
            .ok_or_else(|| one("top_k", "must be 1..1000"))?,
    };
    let who = selector(obj)?;
    let raw = RawSearchRequest {
        user_id: Some(who.user),
        query: obj.get("query").cloned(),
        limit: Some(json!(top_k.min(MAX_TOP_K))),
        score_threshold: Some(
            obj.get("threshold")
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or(json!(DEFAULT_THRESHOLD)),
        ),
        categories: obj.get("categories").filter(|v| !v.is_null()).cloned(),
        include_related: Some(Value::Bool(false)),
    };
    let mut req = validate::search(raw)?;
    req.scope = (!who.scope.is_empty()).then_some(who.scope);
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_of(body: &Map<String, Value>) -> Result<Value, ValidationErrors> {
        selector(body).map(|s| s.user)
    }

    #[test]
    fn the_user_comes_from_the_top_level_filters_or_an_and_list() {
        let top = json!({"user_id": "kid1"});
        assert_eq!(user_of(top.as_object().expect("obj")).expect("user"), "kid1");
        let filters = json!({"filters": {"user_id": "kid2"}});
        assert_eq!(user_of(filters.as_object().expect("obj")).expect("user"), "kid2");
        let and = json!({"filters": {"AND": [{"user_id": "kid3"}, {"agent_id": "*"}]}});
        assert_eq!(user_of(and.as_object().expect("obj")).expect("user"), "kid3");
        let agent = json!({"filters": {"AND": [{"user_id": "kid3"}, {"agent_id": "bot"}]}, "run_id": "r1"});
        let s = selector(agent.as_object().expect("obj")).expect("agent scope kept");
        assert_eq!(s.user, "kid3");
        assert_eq!(s.scope.agent_id.as_deref(), Some("bot"));
        assert_eq!(s.scope.run_id.as_deref(), Some("r1"));
        let or = json!({"filters": {"OR": [{"user_id": "a"}]}});
        let e = user_of(or.as_object().expect("obj")).expect_err("OR refused");
        assert!(e.summary().contains("filters.OR"), "{}", e.summary());
        let meta = json!({"filters": {"AND": [{"user_id": "a"}, {"metadata": {"k": 1}}]}});
        let e = user_of(meta.as_object().expect("obj")).expect_err("metadata filter refused");
        assert!(e.summary().contains("filters.AND.metadata"), "{}", e.summary());
        let bad = json!({"user_id": "a", "agent_id": "no spaces"});
        assert!(selector(bad.as_object().expect("obj")).is_err());
        assert!(user_of(json!({}).as_object().expect("obj")).is_err());
    }

    #[test]
    fn a_search_maps_top_k_and_threshold_with_mem0_defaults() {
        let s = search(&json!({"query": "pets", "filters": {"user_id": "kid1"}})).expect("valid");
        assert_eq!((s.limit, s.score_threshold), (10, 0.1));
        let s = search(&json!({"query": "pets", "user_id": "kid1", "top_k": 500, "threshold": 0.5}))
            .expect("valid");
        assert_eq!((s.limit, s.score_threshold), (100, 0.5));
        assert!(search(&json!({"query": "pets", "user_id": "kid1", "top_k": 0})).is_err());
        assert!(search(&json!({"user_id": "kid1"})).is_err(), "query required");
    }

    #[test]
    fn search_routes_and_their_shapes() {
        assert_eq!(search_route("/v3/memories/search/"), Some(SearchShape::Wrapped));
        assert_eq!(search_route("/v2/memories/search"), Some(SearchShape::Bare));
        assert_eq!(search_route("/v1/memories/search/"), Some(SearchShape::Bare));
        assert_eq!(search_route("/v3/memories/"), None);
        let s = search(&json!({"query": "q", "filters": {"AND": [{"user_id": "k"}, {"agent_id": "a"}]}}))
            .expect("valid");
        assert_eq!(s.scope.and_then(|sc| sc.agent_id).as_deref(), Some("a"));
    }
}
