//! Domain types of the dataplane, free of HTTP and storage concerns.

use chrono::{DateTime, Utc};
use pika_common::wire::{Category, ExtractRequest, ExtractResult, JobState};
use serde::{Deserialize, Serialize};

/// Whether a fact is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

    /// Parses stored text losslessly: unknown text is an error, never `Active`.
    pub fn parse(s: &str) -> Option<FactStatus> {
        match s {
            "active" => Some(FactStatus::Active),
            "superseded" => Some(FactStatus::Superseded),
            "deleted" => Some(FactStatus::Deleted),
            _ => None,
        }
    }
}

/// What a memory item is: a fact extracted about the user, or an episode (a
/// turn the user spoke, kept as said, with the turn it answers). Both are
/// searched side by side; an episode answers questions no extractor foresaw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemoryKind {
    #[default]
    Fact,
    Episode,
}

impl MemoryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryKind::Fact => "fact",
            MemoryKind::Episode => "episode",
        }
    }

    /// Parses stored text losslessly.
    pub fn parse(s: &str) -> Option<MemoryKind> {
        match s {
            "fact" => Some(MemoryKind::Fact),
            "episode" => Some(MemoryKind::Episode),
            _ => None,
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

impl Polarity {
    pub fn as_str(self) -> &'static str {
        match self {
            Polarity::Positive => "positive",
            Polarity::Negative => "negative",
        }
    }

    /// `None` for anything but the two names (stored values parse losslessly).
    pub fn parse(s: &str) -> Option<Polarity> {
        match s {
            "positive" => Some(Polarity::Positive),
            "negative" => Some(Polarity::Negative),
            _ => None,
        }
    }
}

/// A stored memory item about a child (DESIGN.md §4.2): a fact, or an
/// episode (`kind`), with the same identity, scoping and lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    pub fact_id: String,
    pub user_id: String,
    pub conversation_id: String,
    #[serde(default)]
    pub kind: MemoryKind,
    pub content: String,
    /// For an episode: the turn it answers (the other speaker's words), kept
    /// beside the user's own so the pair is searched together.
    #[serde(default)]
    pub context: Option<String>,
    /// When what it says happened: a date the text names ("hôm qua",
    /// "last weekend") resolved against the conversation's time, or the
    /// conversation's time itself.
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
    /// When it was said (the conversation's time); newest state ranks first by it.
    #[serde(default)]
    pub said_at: Option<DateTime<Utc>>,
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
    /// Metadata and Mem0 scope of a memory made through the Mem0 routes or
    /// an import (`None` for native extractions). Sealed at rest.
    #[serde(default)]
    pub attrs: Option<pika_common::wire::MemoryAttrs>,
}

impl Fact {
    /// The text embedded for vector search: an episode with the turn it answers.
    pub fn embedding_text(&self) -> String {
        match (&self.kind, &self.context) {
            (MemoryKind::Episode, Some(ctx)) if !ctx.is_empty() => format!("{ctx}\n{}", self.content),
            _ => self.content.clone(),
        }
    }

    /// For an episode, a hash of its words and the turn it answers: the same
    /// exchange sent again is recognised and not stored twice.
    pub fn dedup_key(&self) -> Option<String> {
        use sha2::{Digest, Sha256};
        (self.kind == MemoryKind::Episode).then(|| {
            let mut h = Sha256::new();
            h.update(self.content.as_bytes());
            h.update([0u8]);
            h.update(self.context.as_deref().unwrap_or_default().as_bytes());
            hex::encode(h.finalize())
        })
    }

    /// The user's own turns (an episode's first turn may be the one it answers).
    pub fn own_turns(&self) -> Vec<u32> {
        match (self.kind, &self.context) {
            (MemoryKind::Episode, Some(_)) => self.source_turns.iter().skip(1).copied().collect(),
            _ => self.source_turns.clone(),
        }
    }

    /// Terms of the ranked keyword index: content, the answered turn, tags and entities.
    pub fn index_terms(&self) -> Vec<String> {
        let mut text = self.content.clone();
        if let Some(ctx) = &self.context {
            text.push(' ');
            text.push_str(ctx);
        }
        for t in self.tags.iter().chain(&self.entities) {
            text.push(' ');
            text.push_str(t);
        }
        pika_common::text::index_terms(&text)
    }
}

/// A fact proposed by an extractor, before consolidation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub content: String,
    /// A date the statement refers to, resolved by the extractor.
    #[serde(default)]
    pub occurred_at: Option<DateTime<Utc>>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

    /// Parses stored text losslessly.
    pub fn parse(s: &str) -> Option<HistoryEvent> {
        match s {
            "ADD" => Some(HistoryEvent::Add),
            "UPDATE" => Some(HistoryEvent::Update),
            "DELETE" => Some(HistoryEvent::Delete),
            "NONE" => Some(HistoryEvent::None),
            _ => None,
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
    /// Transient failures are retried until this plus the retry horizon
    /// (`created_at`, or the last re-drive).
    pub retry_since: DateTime<Utc>,
}

/// A job as listed for operators (`jobs list`, the admin endpoint): no
/// conversation, which stays sealed in the store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSummary {
    pub job_id: String,
    /// The scoped user key.
    pub user_id: String,
    pub conversation_id: String,
    pub state: JobState,
    pub attempts: u32,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which jobs a listing or a re-drive covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub state: Option<JobState>,
    /// Only this tenant's jobs (`None`: every tenant).
    pub tenant_id: Option<String>,
    /// Only these jobs.
    pub job_ids: Option<Vec<String>>,
    /// Jobs whose id sorts before this (newest first: a cursor).
    pub before: Option<String>,
    pub limit: usize,
}

/// A graph write the graph missed (it was down): replayed by the repair loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphRepair {
    pub id: i64,
    /// The scoped user key.
    pub user_id: String,
    pub op: RepairOp,
    pub fact_ids: Vec<String>,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
}

/// What a graph repair does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairOp {
    /// Writes the facts' nodes and entities (read back from the metadata store).
    Upsert,
    /// Removes the facts' nodes.
    Delete,
}

impl RepairOp {
    pub fn as_str(self) -> &'static str {
        match self {
            RepairOp::Upsert => "upsert",
            RepairOp::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<RepairOp> {
        match s {
            "upsert" => Some(RepairOp::Upsert),
            "delete" => Some(RepairOp::Delete),
            _ => None,
        }
    }
}

/// Proof that this worker holds a job: completing or failing it needs the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub job_id: String,
    pub token: String,
}

/// What the keyword index and episode dedup store for one item, when they
/// are not computed from its (sealed) text: see `vault::SealedMeta`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexKeys {
    pub terms: Vec<String>,
    pub dedup_key: Option<String>,
}

/// Everything one extraction changes, committed atomically with the job's completion.
#[derive(Debug, Clone, Default)]
pub struct ExtractionPlan {
    /// The scoped user the job is for.
    pub user_id: String,
    pub new_facts: Vec<Fact>,
    /// `(old_fact_id, new_fact_id)`: the old one becomes superseded.
    pub superseded: Vec<(String, String)>,
    /// Existing facts seen again: refresh `updated_at`, raise confidence.
    pub refreshed: Vec<(String, f32)>,
    /// Existing facts an extractor said no longer hold (`Decision::Delete`):
    /// they leave search and keep their history; nothing new is stored.
    pub retired: Vec<String>,
    pub history: Vec<HistoryEntry>,
    /// Names the user was called by in this job (request or conversation).
    pub user_names: Vec<String>,
    pub result: ExtractResult,
    /// Index terms and dedup keys by fact id, set when the text is sealed;
    /// otherwise they come from the text ([`ExtractionPlan::index_terms_of`]).
    pub index: std::collections::HashMap<String, IndexKeys>,
    /// Facts whose graph write failed (the graph is optional): the commit
    /// queues a graph repair for them in the same transaction.
    pub graph_pending: Vec<String>,
}

impl ExtractionPlan {
    /// The keyword-index terms to store for `f`.
    pub fn index_terms_of(&self, f: &Fact) -> Vec<String> {
        match self.index.get(&f.fact_id) {
            Some(k) => k.terms.clone(),
            None => f.index_terms(),
        }
    }

    /// The episode dedup key to store for `f`.
    pub fn dedup_key_of(&self, f: &Fact) -> Option<String> {
        match self.index.get(&f.fact_id) {
            Some(k) => k.dedup_key.clone(),
            None => f.dedup_key(),
        }
    }
}

pub use pika_common::keys::{KeyGrant, Permission};

/// An API key as stored (never the secret itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub key_id: String,
    /// The tenant whose data the key reaches.
    pub tenant_id: String,
    /// A device key's users; `None`: every user of the tenant.
    pub users: Option<Vec<String>>,
    pub name: String,
    /// First characters of the key, safe to show (`pika_live_sk_AbC…`).
    pub prefix: String,
    pub permissions: Vec<Permission>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRecord {
    /// What this key may do, as introspection answers it.
    pub fn grant(&self) -> KeyGrant {
        KeyGrant {
            key_id: self.key_id.clone(),
            tenant_id: self.tenant_id.clone(),
            users: self.users.clone(),
            permissions: self.permissions.clone(),
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        }
    }

    /// Usable now with this permission (admin implies all).
    pub fn allows(&self, p: Permission, now: DateTime<Utc>) -> bool {
        self.grant().allows(p, now)
    }

    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.grant().is_live(now)
    }
}

/// An organisation or robot fleet: owns users, keys and their data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub tenant_id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Extraction is refused for a user without granted consent.
    #[serde(default)]
    pub require_consent: bool,
    /// Memories, conversations, jobs, history and audit rows older than this
    /// expire (SDD 9.5: 2 years).
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
}

/// SDD 9.5: two years.
pub const DEFAULT_RETENTION_DAYS: u32 = 730;

fn default_retention_days() -> u32 {
    DEFAULT_RETENTION_DAYS
}

/// A user's consent to having memories kept (Decree 13/2023: a child's data
/// needs it, and its withdrawal ends processing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentState {
    Granted,
    Withdrawn,
}

impl ConsentState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentState::Granted => "granted",
            ConsentState::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "granted" => Some(ConsentState::Granted),
            "withdrawn" => Some(ConsentState::Withdrawn),
            _ => None,
        }
    }
}

/// The recorded consent of one user: who set it, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consent {
    pub state: ConsentState,
    /// The key id that set it (`None` without auth).
    pub set_by: Option<String>,
    pub set_at: DateTime<Utc>,
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
            tenant_id: "default".into(),
            users: None,
            name: "n".into(),
            prefix: "p".into(),
            permissions: perms,
            created_at: Utc::now(),
            expires_at,
            revoked_at: revoked.then(Utc::now),
        }
    }

    #[test]
    fn a_record_answers_with_its_grant() {
        let now = Utc::now();
        let record = key(vec![Permission::Search], Some(now + Duration::days(1)), false);
        let grant = record.grant();
        assert_eq!(grant.key_id, "k");
        assert_eq!(grant.permissions, vec![Permission::Search]);
        assert!(record.allows(Permission::Search, now));
        assert!(!key(vec![Permission::Admin], None, true).is_live(now));
    }
}
