//! Mem0's request and response shapes (read from the `mem0ai` clients'
//! source), and their translation to ours. Nothing here does I/O: a Mem0
//! body becomes one of our validated requests, and our domain types become
//! Mem0's JSON.

use crate::domain::{Fact, HistoryEntry, HistoryEvent};
use chrono::{DateTime, Utc};
use pika_common::tenancy::split_scoped;
use pika_common::validate::{self, ValidationErrors};
use pika_common::wire::{ExtractRequest, RawExtractRequest, RawSearchRequest, SearchHit, SearchRequest};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Mem0's search defaults (`top_k`, `threshold`); our `limit` stops at 100.
const DEFAULT_TOP_K: u64 = 10;
const DEFAULT_THRESHOLD: f64 = 0.1;
const MAX_TOP_K: u64 = 100;

/// Entity filters Mem0 scopes by that PIKA does not keep (yet): refused
/// with their names rather than silently ignored.
const UNSUPPORTED_SCOPES: &[&str] = &["agent_id", "run_id", "app_id", "org_id", "project_id"];

fn one(field: &str, reason: impl Into<String>) -> ValidationErrors {
    ValidationErrors::one(field, reason)
}

/// The `user_id` a Mem0 body names: top level, in `filters`, or in an
/// `AND` list of `filters`. Anything else in `filters` is refused by name.
pub fn user_of(body: &Map<String, Value>) -> Result<Value, ValidationErrors> {
    if let Some(u) = body.get("user_id").filter(|v| !v.is_null()) {
        return Ok(u.clone());
    }
    let Some(filters) = body.get("filters").filter(|v| !v.is_null()) else {
        return Err(one("user_id", "is required (top level or in filters)"));
    };
    let mut found = None;
    collect_filters(filters, &mut found)?;
    found.ok_or_else(|| one("filters.user_id", "is required"))
}

fn collect_filters(f: &Value, user: &mut Option<Value>) -> Result<(), ValidationErrors> {
    let Some(obj) = f.as_object() else {
        return Err(one("filters", "must be an object"));
    };
    for (k, v) in obj {
        match k.as_str() {
            "user_id" => *user = Some(v.clone()),
            "AND" => {
                let items = v.as_array().ok_or_else(|| one("filters.AND", "must be a list"))?;
                for item in items {
                    collect_filters(item, user)?;
                }
            }
            other if UNSUPPORTED_SCOPES.contains(&other) => {
                // A null or wildcard entity filter narrows nothing.
                if !(v.is_null() || v == "*") {
                    return Err(one(
                        &format!("filters.{other}"),
                        "is not supported by PIKA (memories are scoped by user_id only)",
                    ));
                }
            }
            other => {
                return Err(one(
                    &format!("filters.{other}"),
                    "is not supported by PIKA (supported: user_id, AND)",
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
    let raw = RawExtractRequest {
        user_id: Some(user_of(obj)?),
        conversation_id: Some(Value::String(conversation_id)),
        conversation: Some(conversation(obj.get("messages"))?),
        metadata: obj.get("metadata").cloned(),
        occurred_at: obj.get("timestamp").and_then(timestamp),
        user_name: None,
    };
    let mut request = validate::extract_with_min(raw, 1)?;
    request.store_as_given = store_as_given;
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
    let raw = RawSearchRequest {
        user_id: Some(user_of(obj)?),
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
    validate::search(raw)
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
    MemoryView {
        id: f.fact_id,
        memory: f.content,
        user_id: split_scoped(&f.user_id).1.to_string(),
        agent_id: None,
        run_id: None,
        app_id: None,
        metadata: None,
        categories: vec![json!(f.category)],
        score: None,
        created_at: f.created_at,
        updated_at: f.updated_at,
    }
}

/// A search hit; `user_id` is the caller's, unscoped.
pub fn hit(h: SearchHit, user_id: &str) -> MemoryView {
    MemoryView {
        id: h.fact_id,
        memory: h.content,
        user_id: user_id.to_string(),
        agent_id: None,
        run_id: None,
        app_id: None,
        metadata: None,
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

    #[test]
    fn the_user_comes_from_the_top_level_filters_or_an_and_list() {
        let top = json!({"user_id": "kid1"});
        assert_eq!(user_of(top.as_object().expect("obj")).expect("user"), "kid1");
        let filters = json!({"filters": {"user_id": "kid2"}});
        assert_eq!(user_of(filters.as_object().expect("obj")).expect("user"), "kid2");
        let and = json!({"filters": {"AND": [{"user_id": "kid3"}, {"agent_id": "*"}]}});
        assert_eq!(user_of(and.as_object().expect("obj")).expect("user"), "kid3");
        let agent = json!({"filters": {"AND": [{"user_id": "kid3"}, {"agent_id": "bot"}]}});
        let e = user_of(agent.as_object().expect("obj")).expect_err("agent scope refused");
        assert!(e.summary().contains("filters.agent_id"), "{}", e.summary());
        let or = json!({"filters": {"OR": [{"user_id": "a"}]}});
        assert!(user_of(or.as_object().expect("obj")).is_err());
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
