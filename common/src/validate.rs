//! Validation of requests at the edge, with the limits of SDD 6.2 / DESIGN.md §4.1.
//!
//! Every rule reports the field path and a reason; all violations of a request
//! are collected so one round trip shows the client everything to fix. Text is
//! stored exactly as given (trimmed only for the emptiness and length checks):
//! no keyword stripping, no escaping.

use crate::wire::{
    Category, ExtractRequest, Message, RawExtractRequest, RawSearchRequest, Role, SearchRequest,
};
use serde::Serialize;
use serde_json::Value;

pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub const MAX_ID_CHARS: usize = 100;
pub const MIN_MESSAGES: usize = 2;
pub const MAX_MESSAGES: usize = 100;
pub const MAX_MESSAGE_CHARS: usize = 5000;
pub const MAX_QUERY_CHARS: usize = 500;
pub const MAX_NAME_CHARS: usize = 100;
pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;
pub const DEFAULT_SCORE_THRESHOLD: f32 = 0.4;
/// Longest `categories` list (there are 8 categories; repeats are allowed
/// but pointless).
pub const MAX_CATEGORIES: usize = 16;
/// Violations reported per request: a hostile body of 500k bad items gets the
/// first ones and a count, not 500k error entries.
pub const MAX_REPORTED_ERRORS: usize = 20;

/// One violated rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

/// All violations of one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// One violation (a path segment or query parameter checked by a handler).
    pub fn one(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let mut e = ValidationErrors::default();
        e.push(field, reason);
        e
    }

    pub fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        match self.0.len() {
            n if n < MAX_REPORTED_ERRORS => self.0.push(FieldError {
                field: field.into(),
                reason: reason.into(),
            }),
            // One last entry says that more were found, without building them.
            n if n == MAX_REPORTED_ERRORS => self.0.push(FieldError {
                field: "*".into(),
                reason: format!("more violations; only the first {MAX_REPORTED_ERRORS} are reported"),
            }),
            _ => {}
        }
    }

    /// A one-line summary for the envelope's `message`.
    pub fn summary(&self) -> String {
        self.0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Checks an identifier (`user_id`, `conversation_id`): 1..100 chars of `[A-Za-z0-9_.:@-]`.
pub fn check_id(value: &str) -> Result<(), String> {
    let n = value.chars().count();
    if n == 0 {
        return Err("must not be empty".into());
    }
    if n > MAX_ID_CHARS {
        return Err(format!("must be at most {MAX_ID_CHARS} characters (got {n})"));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '@' | '-')))
    {
        return Err(format!(
            "contains {bad:?}; allowed are letters, digits and _ . : @ -"
        ));
    }
    Ok(())
}

fn required_id(v: &Option<Value>, field: &str, errs: &mut ValidationErrors) -> Option<String> {
    match v {
        None | Some(Value::Null) => {
            errs.push(field, "is required");
            None
        }
        Some(Value::String(s)) => match check_id(s) {
            Ok(()) => Some(s.clone()),
            Err(reason) => {
                errs.push(field, reason);
                None
            }
        },
        Some(_) => {
            errs.push(field, "must be a string");
            None
        }
    }
}

/// Validates an extract request.
pub fn extract(raw: RawExtractRequest) -> Result<ExtractRequest, ValidationErrors> {
    extract_with_min(raw, MIN_MESSAGES)
}

/// Like [`extract`], with at least `min_messages` messages (1 for the Mem0
/// surface, whose clients add a single sentence).
pub fn extract_with_min(
    raw: RawExtractRequest,
    min_messages: usize,
) -> Result<ExtractRequest, ValidationErrors> {
    let mut errs = ValidationErrors::default();
    let user_id = required_id(&raw.user_id, "user_id", &mut errs);
    let conversation_id = required_id(&raw.conversation_id, "conversation_id", &mut errs);
    let mut messages = Vec::new();
    match &raw.conversation {
        None | Some(Value::Null) => errs.push("conversation", "is required"),
        Some(Value::Array(items)) => {
            if items.len() < min_messages {
                errs.push(
                    "conversation",
                    format!("must have at least {min_messages} messages (got {})", items.len()),
                );
            } else if items.len() > MAX_MESSAGES {
                errs.push(
                    "conversation",
                    format!("must have at most {MAX_MESSAGES} messages (got {})", items.len()),
                );
            }
            for (i, item) in items.iter().enumerate().take(MAX_MESSAGES) {
                if let Some(m) = message(item, i, &mut errs) {
                    messages.push(m);
                }
            }
        }
        Some(_) => errs.push("conversation", "must be an array of messages"),
    }
    if let Some(meta) = &raw.metadata
        && !(meta.is_object() || meta.is_null())
    {
        errs.push("metadata", "must be an object");
    }
    let occurred_at = match &raw.occurred_at {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match chrono::DateTime::parse_from_rfc3339(s.trim()) {
            Ok(t) if t.with_timezone(&chrono::Utc) <= chrono::Utc::now() + chrono::Duration::days(1) => {
                Some(t)
            }
            Ok(_) => {
                errs.push("occurred_at", "must not be in the future");
                None
            }
            Err(_) => {
                errs.push(
                    "occurred_at",
                    "must be an RFC 3339 date-time (2026-09-05T18:30:00+07:00)",
                );
                None
            }
        },
        Some(_) => {
            errs.push("occurred_at", "must be a string");
            None
        }
    };
    let user_name = match &raw.user_name {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() && s.trim().chars().count() <= MAX_NAME_CHARS => {
            Some(s.trim().to_string())
        }
        Some(_) => {
            errs.push(
                "user_name",
                format!("must be a string of 1..{MAX_NAME_CHARS} characters"),
            );
            None
        }
    };
    match (user_id, conversation_id) {
        (Some(user_id), Some(conversation_id)) if errs.0.is_empty() => Ok(ExtractRequest {
            user_id,
            conversation_id,
            conversation: messages,
            metadata: raw.metadata.filter(|m| !m.is_null()),
            occurred_at,
            user_name,
            store_as_given: false,
            scope: None,
        }),
        _ => Err(errs),
    }
}

fn message(item: &Value, i: usize, errs: &mut ValidationErrors) -> Option<Message> {
    let Some(obj) = item.as_object() else {
        errs.push(
            format!("conversation[{i}]"),
            "must be an object with role and content",
        );
        return None;
    };
    let role = match obj.get("role") {
        Some(Value::String(r)) if r == "user" => Some(Role::User),
        Some(Value::String(r)) if r == "assistant" => Some(Role::Assistant),
        None | Some(Value::Null) => {
            errs.push(format!("conversation[{i}].role"), "is required");
            None
        }
        Some(_) => {
            errs.push(
                format!("conversation[{i}].role"),
                "must be \"user\" or \"assistant\"",
            );
            None
        }
    };
    let content = match obj.get("content") {
        Some(Value::String(c)) => {
            let n = c.trim().chars().count();
            if n == 0 {
                errs.push(format!("conversation[{i}].content"), "must not be empty");
                None
            } else if n > MAX_MESSAGE_CHARS {
                errs.push(
                    format!("conversation[{i}].content"),
                    format!("must be at most {MAX_MESSAGE_CHARS} characters (got {n})"),
                );
                None
            } else {
                Some(c.clone())
            }
        }
        None | Some(Value::Null) => {
            errs.push(format!("conversation[{i}].content"), "is required");
            None
        }
        Some(_) => {
            errs.push(format!("conversation[{i}].content"), "must be a string");
            None
        }
    };
    Some(Message {
        role: role?,
        content: content?,
    })
}

/// Validates a search request and applies defaults.
pub fn search(raw: RawSearchRequest) -> Result<SearchRequest, ValidationErrors> {
    let mut errs = ValidationErrors::default();
    let user_id = required_id(&raw.user_id, "user_id", &mut errs);
    let query = match &raw.query {
        None | Some(Value::Null) => {
            errs.push("query", "is required");
            None
        }
        Some(Value::String(q)) => {
            let n = q.trim().chars().count();
            if n == 0 {
                errs.push("query", "must not be empty");
                None
            } else if n > MAX_QUERY_CHARS {
                errs.push(
                    "query",
                    format!("must be at most {MAX_QUERY_CHARS} characters (got {n})"),
                );
                None
            } else {
                Some(q.trim().to_string())
            }
        }
        Some(_) => {
            errs.push("query", "must be a string");
            None
        }
    };
    let limit = match &raw.limit {
        None | Some(Value::Null) => DEFAULT_LIMIT,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => n as usize,
            _ => {
                errs.push("limit", format!("must be an integer from 1 to {MAX_LIMIT}"));
                DEFAULT_LIMIT
            }
        },
    };
    let score_threshold = match &raw.score_threshold {
        None | Some(Value::Null) => DEFAULT_SCORE_THRESHOLD,
        Some(v) => match v.as_f64() {
            Some(x) if (0.0..=1.0).contains(&x) => x as f32,
            _ => {
                errs.push("score_threshold", "must be a number from 0 to 1");
                DEFAULT_SCORE_THRESHOLD
            }
        },
    };
    let categories = match &raw.categories {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if items.len() > MAX_CATEGORIES => {
            errs.push(
                "categories",
                format!(
                    "must list at most {MAX_CATEGORIES} categories (got {})",
                    items.len()
                ),
            );
            None
        }
        Some(Value::Array(items)) => {
            let mut cats = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str().and_then(Category::parse) {
                    Some(c) => cats.push(c),
                    None => errs.push(
                        format!("categories[{i}]"),
                        "must be one of preference, experience, habit, emotion, relationship, learning, personal, other",
                    ),
                }
            }
            Some(cats)
        }
        Some(_) => {
            errs.push("categories", "must be an array of category names");
            None
        }
    };
    let include_related = match &raw.include_related {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errs.push("include_related", "must be a boolean");
            true
        }
    };
    match (user_id, query) {
        (Some(user_id), Some(query)) if errs.0.is_empty() => Ok(SearchRequest {
            user_id,
            query,
            limit,
            score_threshold,
            categories,
            include_related,
            scope: None,
        }),
        _ => Err(errs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw_extract(v: Value) -> RawExtractRequest {
        serde_json::from_value(v).expect("shape")
    }

    #[test]
    fn accepts_a_good_extract_and_keeps_text_as_given() {
        let r = extract(raw_extract(json!({
            "user_id": "u-1", "conversation_id": "c:1",
            "conversation": [
                {"role": "assistant", "content": "Hi"},
                {"role": "user", "content": "  I want to DROP my bag; <b>  "}
            ]
        })))
        .expect("valid");
        assert_eq!(r.conversation[1].content, "  I want to DROP my bag; <b>  ");
    }

    #[test]
    fn reports_every_bad_field() {
        let e = extract(raw_extract(json!({
            "user_id": "bad id", "conversation": [{"role": "bot", "content": ""}]
        })))
        .expect_err("invalid");
        let fields: Vec<&str> = e.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "user_id",
                "conversation_id",
                "conversation",
                "conversation[0].role",
                "conversation[0].content"
            ]
        );
    }

    #[test]
    fn search_defaults_and_limits() {
        let ok = search(serde_json::from_value(json!({"user_id":"u","query":" cat "})).expect("shape"))
            .expect("valid");
        assert_eq!(
            (ok.limit, ok.score_threshold, ok.include_related),
            (20, 0.4, true)
        );
        assert_eq!(ok.query, "cat");
        let e = search(
            serde_json::from_value(json!({"user_id":"u","query":"q","limit":0,"score_threshold":1.5}))
                .expect("shape"),
        )
        .expect_err("invalid");
        assert_eq!(e.0.len(), 2);
    }

    #[test]
    fn hostile_bodies_get_a_bounded_number_of_errors() {
        let many: Vec<Value> = (0..500_000).map(|_| json!(1)).collect();
        let e = search(
            serde_json::from_value(json!({"user_id":"u","query":"q","categories": many})).expect("shape"),
        )
        .expect_err("invalid");
        assert_eq!(e.0.len(), 1, "one error for an over-long list, not one per item");
        let bad: Vec<Value> = (0..100)
            .map(|_| json!({"role": "robot", "content": ""}))
            .collect();
        let e = extract(
            serde_json::from_value(json!({"user_id":"u","conversation_id":"c","conversation": bad}))
                .expect("shape"),
        )
        .expect_err("invalid");
        assert_eq!(e.0.len(), MAX_REPORTED_ERRORS + 1, "{:?}", e.0.last());
        assert_eq!(e.0[MAX_REPORTED_ERRORS].field, "*");
    }
}
