//! Mem0's request and response shapes (read from the `mem0ai` clients'
//! source), and their translation to ours. Nothing here does I/O: a Mem0
//! body becomes one of our validated requests, and our domain types become
//! Mem0's JSON.

use crate::domain::{Fact, HistoryEntry, HistoryEvent};
use chrono::{DateTime, Utc};
pub use pika_common::mem0::{search, selector};
use pika_common::tenancy::split_scoped;
use pika_common::validate::{self, ValidationErrors};
use pika_common::wire::{ExtractRequest, RawExtractRequest, SearchHit};
use serde::Serialize;
use serde_json::{Value, json};

/// Mem0's `messages` (a string, one message or a list) as our
/// conversation: system messages (prompts, not the user's words) dropped.
fn conversation(messages: Option<&Value>) -> Result<Value, ValidationErrors> {
    let list = match messages {
        None | Some(Value::Null) => return Err(ValidationErrors::one("messages", "is required")),
        Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
        Some(Value::Object(m)) => vec![Value::Object(m.clone())],
        Some(Value::Array(items)) => items.clone(),
        Some(_) => {
            return Err(ValidationErrors::one(
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
        .ok_or_else(|| ValidationErrors::one("body", "must be a JSON object"))?;
    let store_as_given = match obj.get("infer") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(infer)) => !infer,
        Some(_) => return Err(ValidationErrors::one("infer", "must be true or false")),
    };
    let who = selector(obj)?;
    match obj.get("metadata") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => return Err(ValidationErrors::one("metadata", "must be an object")),
    }
    if obj
        .get("metadata")
        .is_some_and(|m| !pika_common::mem0::metadata_fits(m))
    {
        return Err(ValidationErrors::one(
            "metadata",
            "must be at most 16 KiB as JSON",
        ));
    }
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
        Some(_) => return Err(ValidationErrors::one("async_mode", "must be true or false")),
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

/// One memory as Mem0's clients read it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemoryView {
    pub id: String,
    pub memory: String,
    pub user_id: String,
    pub agent_id: Option<String>,
    pub run_id: Option<String>,
    pub app_id: Option<String>,
    pub metadata: Option<Value>,
    #[schema(value_type = Vec<String>)]
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
}
