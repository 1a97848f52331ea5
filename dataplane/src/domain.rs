//! Domain types of the dataplane, free of HTTP and storage concerns.

use chrono::{DateTime, Utc};
use pika_common::wire::{Category, ExtractRequest, ExtractResult, JobState};
use serde::{Deserialize, Serialize};

/// Whether a fact is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FactStatus {
    Active,
    Superseded,
    Deleted,
}

impl FactStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FactStatus::Active => "active",
            FactStatus::Superseded => "superseded",
            FactStatus::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> FactStatus {
        match s {
            "superseded" => FactStatus::Superseded,
            "deleted" => FactStatus::Deleted,
            _ => FactStatus::Active,
        }
    }
}

/// Whether a statement affirms or negates its predicate ("has a cat" vs "no longer has a cat").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Polarity {
    #[default]
    Positive,
    Negative,
}

/// A stored fact about a child (DESIGN.md §4.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    pub fact_id: String,
    pub user_id: String,
    pub conversation_id: String,
    pub content: String,
    pub category: Category,
    pub confidence: f32,
    pub entities: Vec<String>,
    /// Bilingual concept tags ("thú cưng", "pet", "animal") used by keyword search.
    pub tags: Vec<String>,
    pub source_turns: Vec<u32>,
    pub language: String,
    pub status: FactStatus,
    pub polarity: Polarity,
    /// Coarse predicate ("own", "like", ...) used to spot contradictions.
    pub predicate: Option<String>,
    pub supersedes: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub accessed_count: u32,
    pub last_accessed_at: Option<DateTime<Utc>>,
}

/// A fact proposed by an extractor, before consolidation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub content: String,
    pub category: Category,
    pub confidence: f32,
    pub entities: Vec<String>,
    pub tags: Vec<String>,
    pub source_turns: Vec<u32>,
    pub language: String,
    #[serde(default)]
    pub polarity: Polarity,
    #[serde(default)]
    pub predicate: Option<String>,
}

/// Kind of change recorded in a fact's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HistoryEvent {
    Add,
    Update,
    Delete,
    /// A duplicate was seen again: nothing changed but confidence and recency.
    None,
}

impl HistoryEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryEvent::Add => "ADD",
            HistoryEvent::Update => "UPDATE",
            HistoryEvent::Delete => "DELETE",
            HistoryEvent::None => "NONE",
        }
    }

    pub fn parse(s: &str) -> HistoryEvent {
        match s {
            "ADD" => HistoryEvent::Add,
            "UPDATE" => HistoryEvent::Update,
            "DELETE" => HistoryEvent::Delete,
            _ => HistoryEvent::None,
        }
    }
}

/// One entry of a fact's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub fact_id: String,
    pub event: HistoryEvent,
    pub old_content: Option<String>,
    pub new_content: Option<String>,
    /// The fact this change replaced or was replaced by.
    pub related_fact_id: Option<String>,
    pub job_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// An extraction job row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub job_id: String,
    pub user_id: String,
    pub conversation_id: String,
    pub idempotency_key: String,
    pub request: ExtractRequest,
    pub state: JobState,
    pub attempts: u32,
    pub result: Option<ExtractResult>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Proof that this worker holds a job: completing or failing it needs the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub job_id: String,
    pub token: String,
}

/// Everything one extraction changes, committed atomically with the job's completion.
#[derive(Debug, Clone, Default)]
pub struct ExtractionPlan {
    pub new_facts: Vec<Fact>,
    /// `(old_fact_id, new_fact_id)`: the old one becomes superseded.
    pub superseded: Vec<(String, String)>,
    /// Existing facts seen again: refresh `updated_at`, raise confidence.
    pub refreshed: Vec<(String, f32)>,
    pub history: Vec<HistoryEntry>,
    pub result: ExtractResult,
}

/// Permission carried by an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Extract,
    Search,
    Admin,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Extract => "extract",
            Permission::Search => "search",
            Permission::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        match s.trim() {
            "extract" => Some(Permission::Extract),
            "search" => Some(Permission::Search),
            "admin" => Some(Permission::Admin),
            _ => None,
        }
    }
}

/// An API key as stored (never the secret itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub name: String,
    /// First characters of the key, safe to show (`pika_live_sk_AbC…`).
    pub prefix: String,
    pub permissions: Vec<Permission>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRecord {
    /// Usable now with this permission (admin implies all).
    pub fn allows(&self, p: Permission, now: DateTime<Utc>) -> bool {
        self.is_live(now) && (self.permissions.contains(&p) || self.permissions.contains(&Permission::Admin))
    }

    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

/// One audit-log line: who touched which user's data, how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub key_id: Option<String>,
    pub action: String,
    pub user_id: Option<String>,
    pub target: Option<String>,
    pub request_id: String,
}

/// What to do with a candidate that resembles existing facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A new fact.
    Add,
    /// The candidate replaces this existing fact.
    Update(String),
    /// The candidate says this existing fact no longer holds; store nothing new.
    Delete(String),
    /// The candidate repeats this existing fact.
    Keep(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn key(perms: Vec<Permission>, expires_at: Option<DateTime<Utc>>, revoked: bool) -> ApiKeyRecord {
        ApiKeyRecord {
            key_id: "k".into(),
            name: "n".into(),
            prefix: "p".into(),
            permissions: perms,
            created_at: Utc::now(),
            expires_at,
            revoked_at: revoked.then(Utc::now),
        }
    }

    #[test]
    fn keys_expire_and_revoke_and_admin_implies_all() {
        let now = Utc::now();
        assert!(key(vec![Permission::Search], None, false).allows(Permission::Search, now));
        assert!(!key(vec![Permission::Search], None, false).allows(Permission::Extract, now));
        assert!(key(vec![Permission::Admin], None, false).allows(Permission::Extract, now));
        assert!(
            !key(vec![Permission::Admin], Some(now - Duration::seconds(1)), false)
                .allows(Permission::Search, now)
        );
        assert!(
            key(vec![Permission::Search], Some(now + Duration::days(1)), false)
                .allows(Permission::Search, now)
        );
        assert!(!key(vec![Permission::Admin], None, true).allows(Permission::Search, now));
    }
}
