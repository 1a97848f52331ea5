//! API response types: what a client sees of the domain. Kept apart from
//! the domain types so that internal fields (the extractor's polarity,
//! predicate and concept tags, the dedup key) never become part of the
//! contract by accident, and a domain change is a visible API change here.

use crate::domain::{Fact, FactStatus, HistoryEntry, HistoryEvent, Job, MemoryKind};
use crate::service::export::ExportRecord;
use chrono::{DateTime, Utc};
use pika_common::wire::{Category, JobState, JobView};
use serde::Serialize;
use serde_json::json;

/// One fact or episode (`GET /v1/facts/{id}`, listings, export).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FactView {
    pub fact_id: String,
    pub user_id: String,
    pub conversation_id: String,
    pub kind: MemoryKind,
    pub content: String,
    pub context: Option<String>,
    pub category: Category,
    pub confidence: f32,
    pub entities: Vec<String>,
    pub source_turns: Vec<u32>,
    pub language: String,
    pub status: FactStatus,
    pub supersedes: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub said_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub accessed_count: u32,
    pub last_accessed_at: Option<DateTime<Utc>>,
    /// Metadata and Mem0 scope of a memory made through the Mem0 routes or an import.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attrs: Option<pika_common::wire::MemoryAttrs>,
}

impl From<Fact> for FactView {
    fn from(f: Fact) -> Self {
        FactView {
            fact_id: f.fact_id,
            user_id: user_of(&f.user_id),
            conversation_id: f.conversation_id,
            kind: f.kind,
            content: f.content,
            context: f.context,
            category: f.category,
            confidence: f.confidence,
            entities: f.entities,
            source_turns: f.source_turns,
            language: f.language,
            status: f.status,
            supersedes: f.supersedes,
            occurred_at: f.occurred_at,
            said_at: f.said_at,
            created_at: f.created_at,
            updated_at: f.updated_at,
            accessed_count: f.accessed_count,
            last_accessed_at: f.last_accessed_at,
            attrs: f.attrs,
        }
    }
}

pub fn facts(items: Vec<Fact>) -> Vec<FactView> {
    items.into_iter().map(FactView::from).collect()
}

/// One ADD/UPDATE/DELETE entry of a fact's history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryView {
    pub fact_id: String,
    pub event: HistoryEvent,
    pub old_content: Option<String>,
    pub new_content: Option<String>,
    pub related_fact_id: Option<String>,
    pub job_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<HistoryEntry> for HistoryView {
    fn from(h: HistoryEntry) -> Self {
        HistoryView {
            fact_id: h.fact_id,
            event: h.event,
            old_content: h.old_content,
            new_content: h.new_content,
            related_fact_id: h.related_fact_id,
            job_id: h.job_id,
            created_at: h.created_at,
        }
    }
}

/// The user id a client sent: the scoped key without its tenant (clients
/// name users within their own tenant only).
fn user_of(scoped: &str) -> String {
    pika_common::tenancy::split_scoped(scoped).1.to_string()
}

pub fn history(items: Vec<HistoryEntry>) -> Vec<HistoryView> {
    items.into_iter().map(HistoryView::from).collect()
}

pub fn job(job: Job) -> JobView {
    JobView {
        job_id: job.job_id,
        user_id: user_of(&job.user_id),
        conversation_id: job.conversation_id,
        state: job.state,
        attempts: job.attempts,
        result: job.result,
        error: job.error,
        created_at: job.created_at,
        updated_at: job.updated_at,
    }
}

/// A job as the admin listing shows it: the job view without a result.
pub fn job_summary(job: crate::domain::JobSummary) -> JobView {
    JobView {
        job_id: job.job_id,
        user_id: user_of(&job.user_id),
        conversation_id: job.conversation_id,
        state: job.state,
        attempts: job.attempts,
        result: None,
        error: job.error,
        created_at: job.created_at,
        updated_at: job.updated_at,
    }
}

/// A conversation as the export lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationView {
    pub job_id: String,
    pub request: pika_common::wire::ExtractRequest,
    pub state: JobState,
    pub created_at: DateTime<Utc>,
}

/// One NDJSON line of `GET /v1/users/{id}/export` (see `service::export`).
pub fn export_line(record: ExportRecord) -> Vec<u8> {
    let value = match record {
        ExportRecord::Item(f) => json!({"type": "item", "item": FactView::from(f)}),
        ExportRecord::History(h) => json!({"type": "history", "entry": HistoryView::from(h)}),
        ExportRecord::Mention { fact_id, entity } => {
            json!({"type": "mention", "fact_id": fact_id, "entity": entity})
        }
        ExportRecord::Supersedes { fact_id, supersedes } => {
            json!({"type": "supersedes", "fact_id": fact_id, "supersedes": supersedes})
        }
        ExportRecord::Entity { name, items } => json!({"type": "entity", "name": name, "items": items}),
        ExportRecord::Conversation(j) => json!({"type": "conversation", "conversation": ConversationView {
            job_id: j.job_id,
            request: pika_common::wire::ExtractRequest {
                user_id: user_of(&j.request.user_id),
                ..j.request
            },
            state: j.state,
            created_at: j.created_at,
        }}),
        ExportRecord::Audit(a) => json!({"type": "audit", "entry": {
            "id": a.id,
            "at": a.at,
            "key_id": a.entry.key_id,
            "action": a.entry.action,
            "target": a.entry.target,
            "request_id": a.entry.request_id,
        }}),
        ExportRecord::End(counts) => json!({"type": "end", "counts": counts}),
        ExportRecord::Failed(_) => json!({"type": "error", "error": {
            "code": "EXPORT_INTERRUPTED",
            "message": "a store failed during the export; what came before is valid, but incomplete: retry",
        }}),
    };
    let mut line = serde_json::to_vec(&value).unwrap_or_default();
    line.push(b'\n');
    line
}

/// The first NDJSON line of an export.
pub fn export_header(user_id: &str) -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({
        "type": "export",
        "format": "pika-export/1",
        "user_id": user_id,
        "generated_at": Utc::now(),
    }))
    .unwrap_or_default();
    line.push(b'\n');
    line
}
