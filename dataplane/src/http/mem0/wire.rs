//! Mem0's request and response shapes (read from the `mem0ai` clients'
//! source), and their translation to ours. Nothing here does I/O: a Mem0
//! body becomes one of our validated requests, and our domain types become
//! Mem0's JSON.

use crate::domain::{Fact, HistoryEntry, HistoryEvent};
use chrono::{DateTime, Utc};
use pika_common::tenancy::split_scoped;
use pika_common::validate::{self, ValidationErrors};
use pika_common::wire::{
    ExtractRequest, MemoryScope, RawExtractRequest, RawSearchRequest, SearchHit, SearchRequest,
};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Mem0's search defaults (`top_k`, `threshold`); our `limit` stops at 100.
const DEFAULT_TOP_K: u64 = 10;
const DEFAULT_THRESHOLD: f64 = 0.1;
const MAX_TOP_K: u64 = 100;

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

/// Mem0's `messages` (a string, one message or a list) as our
/// conversation: system messages (prompts, not the user's words) dropped.
fn conversation(messages: Option<&Value>) -> Result<Value, ValidationErrors> {
    let list = match messages {
        None | Some(Value::Null) => return Err(one("messages", "is required")),
        Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
        Some(Value::Object(m)) => vec![Value::Object(m.clone())],
        Some(Value::Array(items)) => items.clone(),
        Some(_) => {
            return Err(one(
                "messages",
                "must be a string, a message or a list of messages",
            ));
        }
    };
    let kept: Vec<Value> = list
        .into_iter()
        .filter(|m| m.get("role").and_then(Value::as_str) != Some("system"))
        .collect();
    Ok(Value::Array(kept))
}

/// How an add should run.
#[derive(Debug)]
pub struct Add {
    pub request: ExtractRequest,
    /// `async_mode` (default true, as in Mem0): answer PENDING at once.
    pub asynchronous: bool,
}

/// A Mem0 add (`/v3/memories/add/`, `/v1/memories/`) as our extract
/// request; `default_async` when the body has no `async_mode` (v3: true;
/// v1: false, as the old API answered with the results).
pub fn add(body: &Value, conversation_id: String, default_async: bool) -> Result<Add, ValidationErrors> {
    let obj = body
        .as_object()
        .ok_or_else(|| one("body", "must be a JSON object"))?;
    let store_as_given = match obj.get("infer") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(infer)) => !infer,
        Some(_) => return Err(one("infer", "must be true or false")),
    };
    let who = selector(obj)?;
    let raw = RawExtractRequest {
        user_id: Some(who.user),
        conversation_id: Some(Value::String(conversation_id)),
        conversation: Some(conversation(obj.get("messages"))?),
        metadata: obj.get("metadata").cloned(),
        occurred_at: obj.get("timestamp").and_then(timestamp),
        user_name: None,
    };
    let mut request = validate::extract_with_min(raw, 1)?;
    request.store_as_given = store_as_given;
    // Mem0 memories carry the add's metadata and scope.
    request.scope = Some(who.scope);
    let asynchronous = match obj.get("async_mode") {
        None | Some(Value::Null) => default_async,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(one("async_mode", "must be true or false")),
    };
    Ok(Add {
        request,
        asynchronous,
    })
}

/// Mem0's `timestamp` (Unix seconds) as RFC 3339.
fn timestamp(v: &Value) -> Option<Value> {
    let secs = v.as_i64()?;
    DateTime::<Utc>::from_timestamp(secs, 0).map(|t| Value::String(t.to_rfc3339()))
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

/// One memory as Mem0's clients read it.
#[derive(Debug, Serialize)]
pub struct MemoryView {
    pub id: String,
    pub memory: String,
    pub user_id: String,
    pub agent_id: Option<String>,
    pub run_id: Option<String>,
    pub app_id: Option<String>,
    pub metadata: Option<Value>,
    pub categories: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn memory(f: Fact) -> MemoryView {
    let attrs = f.attrs.unwrap_or_default();
    MemoryView {
        id: f.fact_id,
        memory: f.content,
        user_id: split_scoped(&f.user_id).1.to_string(),
        agent_id: attrs.scope.agent_id,
        run_id: attrs.scope.run_id,
        app_id: attrs.scope.app_id,
        metadata: attrs.metadata,
        categories: vec![json!(f.category)],
        score: None,
        created_at: f.created_at,
        updated_at: f.updated_at,
    }
}

/// A search hit; `user_id` is the caller's, unscoped.
pub fn hit(h: SearchHit, user_id: &str) -> MemoryView {
    let attrs = h.attrs.unwrap_or_default();
    MemoryView {
        id: h.fact_id,
        memory: h.content,
        user_id: user_id.to_string(),
        agent_id: attrs.scope.agent_id,
        run_id: attrs.scope.run_id,
        app_id: attrs.scope.app_id,
        metadata: attrs.metadata,
        categories: vec![json!(h.category)],
        score: Some(h.score),
        created_at: h.created_at,
        updated_at: h.created_at,
    }
}

/// One history row as Mem0's `history()` returns it.
pub fn history_row(memory_id: &str, i: usize, h: HistoryEntry) -> Value {
    let event = match h.event {
        HistoryEvent::Add => "ADD",
        HistoryEvent::Update => "UPDATE",
        HistoryEvent::Delete => "DELETE",
        HistoryEvent::None => "NONE",
    };
    json!({
        "id": format!("{memory_id}-{i}"),
        "memory_id": memory_id,
        "old_memory": h.old_content,
        "new_memory": h.new_content,
        "event": event,
        "input": null,
        "created_at": h.created_at,
        "updated_at": h.created_at,
    })
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
    fn an_add_takes_a_string_a_message_or_a_list_and_drops_system_prompts() {
        for messages in [
            json!("Mình thích mèo"),
            json!({"role": "user", "content": "Mình thích mèo"}),
            json!([{"role": "system", "content": "be nice"}, {"role": "user", "content": "Mình thích mèo"}]),
        ] {
            let a = add(
                &json!({"messages": messages, "user_id": "kid1"}),
                "c1".into(),
                true,
            )
            .expect("valid");
            assert_eq!(a.request.conversation.len(), 1);
            assert_eq!(a.request.conversation[0].content, "Mình thích mèo");
            assert!(a.asynchronous, "async by default on v3, as in Mem0");
            assert!(!a.request.store_as_given);
        }
        let body = json!({"messages": "x y", "user_id": "k", "async_mode": false});
        assert!(!add(&body, "c".into(), true).expect("valid").asynchronous);
        let old = json!({"messages": "x y", "user_id": "k"});
        assert!(
            !add(&old, "c".into(), false).expect("valid").asynchronous,
            "v1 answers with results"
        );
        let given = json!({"messages": "x", "user_id": "k", "infer": false});
        assert!(
            add(&given, "c".into(), true)
                .expect("valid")
                .request
                .store_as_given
        );
        let bad = json!({"messages": "x", "user_id": "k", "infer": "no"});
        assert!(add(&bad, "c".into(), true).is_err());
        assert!(add(&json!({"messages": [], "user_id": "k"}), "c".into(), true).is_err());
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
}
