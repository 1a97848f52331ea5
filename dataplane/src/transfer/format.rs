//! Mem0's export formats, read and written: the memory objects `get_all`
//! returns (a bare list, a page `{count, next, previous, results}`, a list
//! of pages, or JSON Lines of either), and the history database of Mem0's
//! open-source library (`history.db`, SQLite). Pure parsing and shaping;
//! the only I/O is reading the SQLite file.

use crate::domain::{Fact, HistoryEntry, HistoryEvent};
use chrono::{DateTime, NaiveDateTime, Utc};
use pika_common::tenancy::split_scoped;
use pika_common::validate;
use pika_common::wire::{Category, MemoryAttrs, MemoryScope};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{0}: not JSON, JSON Lines or a Mem0 page ({1})")]
    NotAnExport(String, String),
    #[error("{path}: cannot read the history database: {source}")]
    HistoryDb {
        path: String,
        #[source]
        source: sqlx::Error,
    },
}

/// One memory of an export, before it is checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedMemory {
    pub id: String,
    pub text: String,
    /// The unscoped user id; `None` when the export does not say (history.db).
    pub user_id: Option<String>,
    pub scope: MemoryScope,
    pub metadata: Option<Value>,
    pub category: Category,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub history: Vec<HistoryEntry>,
}

/// A memory object the export holds that cannot come in, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Where it was: `file:line` or `file#index`.
    pub at: String,
    pub reason: String,
}

/// Mem0's categories (its default set and PIKA's own names) as ours;
/// anything else is `other`.
pub fn category_of(categories: Option<&Value>) -> Category {
    let names = categories
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    for name in names {
        let name = name.trim().to_ascii_lowercase();
        if let Some(c) = Category::parse(&name) {
            return c;
        }
        let mapped = match name.as_str() {
            "user_preferences" | "preferences" | "food" | "music" | "hobbies" | "entertainment"
            | "fashion" => Some(Category::Preference),
            "family" | "relationships" | "friends" => Some(Category::Relationship),
            "personal_details" | "health" => Some(Category::Personal),
            "milestones" | "travel" | "experiences" => Some(Category::Experience),
            "professional_details" | "education" | "learning_progress" => Some(Category::Learning),
            "habits" | "routine" | "sports" => Some(Category::Habit),
            "emotions" | "feelings" => Some(Category::Emotion),
            _ => None,
        };
        if let Some(c) = mapped {
            return c;
        }
    }
    Category::Other
}

/// Mem0's timestamps: RFC 3339, or ISO 8601 without an offset (UTC).
pub fn time_of(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let s = v?.as_str()?.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    None
}

/// The memory objects of one export file's text, each checked, with the
/// ones that cannot come in. `name` labels positions in messages.
pub fn parse_export(name: &str, text: &str) -> Result<(Vec<ExportedMemory>, Vec<Rejected>), FormatError> {
    let mut objects: Vec<(String, Value)> = Vec::new();
    match serde_json::from_str::<Value>(text) {
        Ok(v) => collect(name, v, &mut objects),
        Err(whole) => {
            // JSON Lines: one memory or page per line.
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                match serde_json::from_str::<Value>(line) {
                    Ok(v) => collect(&format!("{name}:{}", i + 1), v, &mut objects),
                    Err(e) if i == 0 => {
                        return Err(FormatError::NotAnExport(
                            name.into(),
                            format!("{whole}; line 1: {e}"),
                        ));
                    }
                    Err(e) => {
                        objects.push((format!("{name}:{}", i + 1), json!({ "__error": e.to_string() })))
                    }
                }
            }
        }
    }
    let mut memories = Vec::new();
    let mut rejected = Vec::new();
    for (at, obj) in objects {
        match memory_of(&obj) {
            Ok(m) => memories.push(m),
            Err(reason) => rejected.push(Rejected { at, reason }),
        }
    }
    Ok((memories, rejected))
}

/// Flattens lists and pages into memory objects.
fn collect(at: &str, v: Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                collect(&format!("{at}#{i}"), item, out);
            }
        }
        Value::Object(mut obj)
            if obj.get("results").is_some_and(Value::is_array) && !obj.contains_key("memory") =>
        {
            if let Some(results) = obj.remove("results") {
                collect(at, results, out);
            }
        }
        other => out.push((at.to_string(), other)),
    }
}

fn opt_id(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => validate::check_id(s)
            .map(|_| Some(s.clone()))
            .map_err(|r| format!("{key} {r}")),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn memory_of(v: &Value) -> Result<ExportedMemory, String> {
    if let Some(e) = v.get("__error").and_then(Value::as_str) {
        return Err(format!("not JSON: {e}"));
    }
    let obj = v.as_object().ok_or("not a memory object")?;
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && id.chars().count() <= validate::MAX_ID_CHARS)
        .ok_or("id must be a string of 1..100 characters")?
        .to_string();
    let text = obj
        .get("memory")
        .and_then(Value::as_str)
        .ok_or("memory (the text) is required")?;
    let chars = text.trim().chars().count();
    if chars == 0 || chars > validate::MAX_MESSAGE_CHARS {
        return Err("memory must be 1..5000 characters".into());
    }
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => None,
        Some(m @ Value::Object(_)) if pika_common::mem0::metadata_fits(m) => Some(m.clone()),
        Some(Value::Object(_)) => return Err("metadata must be at most 16 KiB as JSON".into()),
        Some(_) => return Err("metadata must be an object".into()),
    };
    let created_at = time_of(obj.get("created_at")).unwrap_or_else(Utc::now);
    Ok(ExportedMemory {
        id,
        text: text.to_string(),
        user_id: opt_id(obj, "user_id")?,
        scope: MemoryScope {
            agent_id: opt_id(obj, "agent_id")?,
            run_id: opt_id(obj, "run_id")?,
            app_id: opt_id(obj, "app_id")?,
        },
        metadata,
        category: category_of(obj.get("categories")),
        created_at,
        updated_at: time_of(obj.get("updated_at")).unwrap_or(created_at),
        history: Vec::new(),
    })
}

/// One row of Mem0's `history` table.
#[derive(Debug, Clone, sqlx::FromRow)]
struct HistoryRow {
    memory_id: String,
    old_memory: Option<String>,
    new_memory: Option<String>,
    event: String,
    created_at: Option<String>,
    is_deleted: Option<i64>,
}

/// Every memory's history from a Mem0 `history.db`, by memory id, oldest
/// first (the database names no users).
pub async fn read_history_db(path: &str) -> Result<BTreeMap<String, Vec<HistoryEntry>>, FormatError> {
    let err = |source| FormatError::HistoryDb {
        path: path.to_string(),
        source,
    };
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .map_err(err)?;
    let rows: Vec<HistoryRow> = sqlx::query_as(
        "SELECT memory_id, old_memory, new_memory, event, CAST(created_at AS TEXT) AS created_at,
                CAST(is_deleted AS INTEGER) AS is_deleted
         FROM history ORDER BY created_at, rowid",
    )
    .fetch_all(&pool)
    .await
    .map_err(err)?;
    pool.close().await;
    let mut out: BTreeMap<String, Vec<HistoryEntry>> = BTreeMap::new();
    for r in rows {
        let event = match r.event.to_ascii_uppercase().as_str() {
            "ADD" => HistoryEvent::Add,
            "UPDATE" => HistoryEvent::Update,
            "DELETE" => HistoryEvent::Delete,
            _ => HistoryEvent::None,
        };
        let event = if r.is_deleted == Some(1) {
            HistoryEvent::Delete
        } else {
            event
        };
        out.entry(r.memory_id.clone()).or_default().push(HistoryEntry {
            fact_id: r.memory_id,
            event,
            old_content: r.old_memory,
            new_content: r.new_memory,
            related_fact_id: None,
            job_id: None,
            created_at: time_of(r.created_at.map(Value::String).as_ref()).unwrap_or_else(Utc::now),
        });
    }
    Ok(out)
}

/// The memories a history alone describes: each id's last state, unless it
/// ended deleted (or its id or text is outside our limits: 1..100 and
/// 1..5000 characters).
pub fn memories_from_history(history: BTreeMap<String, Vec<HistoryEntry>>) -> Vec<ExportedMemory> {
    history
        .into_iter()
        .filter_map(|(id, entries)| {
            let last = entries.last()?;
            if last.event == HistoryEvent::Delete {
                return None;
            }
            let text = last.new_content.clone().filter(|t| {
                let n = t.trim().chars().count();
                (1..=validate::MAX_MESSAGE_CHARS).contains(&n)
            })?;
            if id.is_empty() || id.chars().count() > validate::MAX_ID_CHARS {
                return None;
            }
            let created_at = entries.first().map(|e| e.created_at).unwrap_or_else(Utc::now);
            Some(ExportedMemory {
                id,
                text,
                user_id: None,
                scope: MemoryScope::default(),
                metadata: None,
                category: Category::Other,
                created_at,
                updated_at: last.created_at,
                history: entries,
            })
        })
        .collect()
}

/// One memory as an export line, in the shape `get_all` returns (so an
/// export comes back in with `import`).
pub fn export_line(f: &Fact) -> Value {
    let attrs: MemoryAttrs = f.attrs.clone().unwrap_or_default();
    json!({
        "id": f.fact_id,
        "memory": f.content,
        "user_id": split_scoped(&f.user_id).1,
        "agent_id": attrs.scope.agent_id,
        "run_id": attrs.scope.run_id,
        "app_id": attrs.scope.app_id,
        "metadata": attrs.metadata,
        "categories": [f.category.as_str()],
        "created_at": f.created_at.to_rfc3339(),
        "updated_at": f.updated_at.to_rfc3339(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_lists_and_json_lines_all_read_the_same_memories() {
        let m = |id: &str| json!({"id": id, "memory": format!("likes cats {id}"), "user_id": "kid1"});
        let page = json!({"count": 2, "next": null, "previous": null, "results": [m("a"), m("b")]});
        let list = json!([m("a"), m("b")]);
        let pages = json!([{"results": [m("a")]}, {"results": [m("b")]}]);
        let lines = format!("{}\n\n{}\n", m("a"), m("b"));
        for text in [page.to_string(), list.to_string(), pages.to_string(), lines] {
            let (ok, bad) = parse_export("f", &text).expect("an export");
            assert!(bad.is_empty(), "{bad:?}");
            let ids: Vec<&str> = ok.iter().map(|m| m.id.as_str()).collect();
            assert_eq!(ids, ["a", "b"]);
            assert_eq!(ok[0].user_id.as_deref(), Some("kid1"));
        }
        assert!(parse_export("f", "not json at all").is_err());
    }

    #[test]
    fn fields_map_and_bad_objects_are_rejected_with_a_reason() {
        let text = json!([
            {"id": "m1", "memory": "Loves dinosaurs", "user_id": "kid1", "agent_id": "pika",
             "metadata": {"source": "robot"}, "categories": ["hobbies"],
             "created_at": "2024-07-26T10:44:44.111466-07:00", "updated_at": "2024-07-27T00:00:00"},
            {"id": "m2", "user_id": "kid1"},
            {"id": "", "memory": "x"},
            {"id": "m3", "memory": "x", "agent_id": "has space"},
            {"id": "m4", "memory": "x".repeat(5001)},
        ])
        .to_string();
        let (ok, bad) = parse_export("f", &text).expect("an export");
        assert_eq!(ok.len(), 1);
        let m = &ok[0];
        assert_eq!(m.category, Category::Preference);
        assert_eq!(m.scope.agent_id.as_deref(), Some("pika"));
        assert_eq!(m.metadata, Some(json!({"source": "robot"})));
        assert_eq!(m.created_at.to_rfc3339(), "2024-07-26T17:44:44.111466+00:00");
        assert_eq!(m.updated_at.to_rfc3339(), "2024-07-27T00:00:00+00:00");
        let reasons: Vec<&str> = bad.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(bad.len(), 4, "{reasons:?}");
        assert!(reasons[0].contains("memory"), "{reasons:?}");
        assert!(bad[0].at.starts_with("f#1"), "{bad:?}");
    }

    #[test]
    fn a_history_alone_gives_each_memory_its_last_state_unless_deleted() {
        let at = |s: &str| time_of(Some(&json!(s))).expect("time");
        let e = |id: &str, ev: HistoryEvent, new: Option<&str>, t: &str| HistoryEntry {
            fact_id: id.into(),
            event: ev,
            old_content: None,
            new_content: new.map(str::to_string),
            related_fact_id: None,
            job_id: None,
            created_at: at(t),
        };
        let mut h = BTreeMap::new();
        h.insert(
            "a".to_string(),
            vec![
                e("a", HistoryEvent::Add, Some("likes cats"), "2024-01-01T00:00:00"),
                e(
                    "a",
                    HistoryEvent::Update,
                    Some("likes dogs"),
                    "2024-02-01T00:00:00",
                ),
            ],
        );
        h.insert(
            "b".to_string(),
            vec![
                e("b", HistoryEvent::Add, Some("x"), "2024-01-01T00:00:00"),
                e("b", HistoryEvent::Delete, None, "2024-01-02T00:00:00"),
            ],
        );
        let ms = memories_from_history(h);
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].text, "likes dogs");
        assert_eq!(ms[0].created_at, at("2024-01-01T00:00:00"));
        assert_eq!(ms[0].updated_at, at("2024-02-01T00:00:00"));
        assert_eq!(ms[0].history.len(), 2);
    }
}
