//! HTTP wire types of the memory API (DESIGN.md §4.1, SDD 6.1/6.2/14.6).
//!
//! Requests are deserialised leniently (every field optional, unknown fields
//! ignored) and then checked by [`crate::validate`], so a client gets one error
//! naming every bad field instead of serde's first complaint.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Speaker of one conversation turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One validated conversation turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// Body of `POST /v1/extract_facts` as received.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawExtractRequest {
    pub user_id: Option<serde_json::Value>,
    pub conversation_id: Option<serde_json::Value>,
    pub conversation: Option<serde_json::Value>,
    pub metadata: Option<serde_json::Value>,
    pub occurred_at: Option<serde_json::Value>,
    pub user_name: Option<serde_json::Value>,
}

/// A validated extract request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractRequest {
    pub user_id: String,
    pub conversation_id: String,
    pub conversation: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// When the conversation happened (RFC 3339); relative dates in it
    /// ("hôm qua", "last weekend") resolve against this. Default: when the
    /// request was accepted. The offset is kept: "hôm qua" is a local day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<chrono::FixedOffset>>,
    /// The user's name as the caller knows it, so a query that names the
    /// user ("What does Na like?") is read as being about them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// Keep each of the user's messages as one memory, word for word, with
    /// no extraction (Mem0's `infer: false`, and imports).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub store_as_given: bool,
    /// Set by the Mem0 routes: the memories this request makes carry its
    /// `metadata` and these entity ids (Mem0's `agent_id`, `run_id`,
    /// `app_id`), are returned with them and can be filtered by them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<MemoryScope>,
}

/// The entity ids Mem0 scopes a memory by besides its user. PIKA keeps
/// them on the memory (never as a separate owner: the user is the owner).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemoryScope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
}

impl MemoryScope {
    pub fn is_empty(&self) -> bool {
        self.agent_id.is_none() && self.run_id.is_none() && self.app_id.is_none()
    }

    /// Whether a memory with `attrs` (see [`MemoryAttrs`]) is inside this
    /// filter: every id the filter names must be the memory's.
    pub fn admits(&self, attrs: Option<&MemoryAttrs>) -> bool {
        let want = [&self.agent_id, &self.run_id, &self.app_id];
        let have = attrs.map(|a| [&a.scope.agent_id, &a.scope.run_id, &a.scope.app_id]);
        want.iter().enumerate().all(|(i, w)| match w {
            None => true,
            Some(w) => have.is_some_and(|h| h[i].as_deref() == Some(w.as_str())),
        })
    }
}

/// What a memory made through the Mem0 routes carries besides its text:
/// the caller's metadata and scope. Stored sealed, as one JSON object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemoryAttrs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    #[serde(flatten)]
    pub scope: MemoryScope,
}

/// Body of `POST /v1/search_facts` as received.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawSearchRequest {
    pub user_id: Option<serde_json::Value>,
    pub query: Option<serde_json::Value>,
    pub limit: Option<serde_json::Value>,
    pub score_threshold: Option<serde_json::Value>,
    pub categories: Option<serde_json::Value>,
    pub include_related: Option<serde_json::Value>,
}

/// A validated search request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    pub user_id: String,
    pub query: String,
    pub limit: usize,
    pub score_threshold: f32,
    pub categories: Option<Vec<Category>>,
    pub include_related: bool,
    /// Only memories inside this Mem0 scope (set by the Mem0 routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<MemoryScope>,
}

/// Fact categories (DESIGN.md §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Preference,
    Experience,
    Habit,
    Emotion,
    Relationship,
    Learning,
    Personal,
    Other,
}

impl Category {
    pub const ALL: [Category; 8] = [
        Category::Preference,
        Category::Experience,
        Category::Habit,
        Category::Emotion,
        Category::Relationship,
        Category::Learning,
        Category::Personal,
        Category::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Preference => "preference",
            Category::Experience => "experience",
            Category::Habit => "habit",
            Category::Emotion => "emotion",
            Category::Relationship => "relationship",
            Category::Learning => "learning",
            Category::Personal => "personal",
            Category::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Lifecycle state of an extraction job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Processing,
    Completed,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Processing => "processing",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        match s {
            "queued" => Some(JobState::Queued),
            "processing" => Some(JobState::Processing),
            "completed" => Some(JobState::Completed),
            "failed" => Some(JobState::Failed),
            _ => None,
        }
    }
}

/// `202` body of an accepted extract.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExtractAccepted {
    pub job_id: String,
    pub status_url: String,
    pub state: JobState,
}

/// What a finished extraction produced (also the SDD's synchronous 200 shape).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExtractResult {
    pub facts_count: usize,
    pub fact_ids: Vec<String>,
    pub processing_time_ms: u64,
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Existing facts the conversation said no longer hold.
    #[serde(default)]
    pub deleted: usize,
    /// Episodes kept (the user's turns, searchable beside facts).
    #[serde(default)]
    pub episodes: usize,
}

/// `GET /v1/jobs/{id}` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    pub job_id: String,
    pub user_id: String,
    pub conversation_id: String,
    pub state: JobState,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<ExtractResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a search result is: an extracted fact or an episode (a turn the user spoke).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum HitKind {
    #[default]
    Fact,
    Episode,
}

/// One ranked search result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHit {
    pub fact_id: String,
    /// `fact` or `episode` (added field; older clients ignore it).
    #[serde(default)]
    pub kind: HitKind,
    pub content: String,
    /// For an episode: the turn it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// When what it says happened (resolved from relative dates, else the conversation's time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    pub category: Category,
    pub score: f32,
    pub similarity: f32,
    pub created_at: DateTime<Utc>,
    pub related_facts: Vec<String>,
    pub conversation_id: String,
    pub source_turns: Vec<u32>,
    /// Metadata and Mem0 scope of a memory made through the Mem0 routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<MemoryAttrs>,
}

/// `POST /v1/search_facts` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchResponse {
    pub query: String,
    pub results_count: usize,
    pub results: Vec<SearchHit>,
    pub processing_time_ms: f64,
    pub degraded: bool,
    /// Which retrieval path answered: `vector+keyword`, `keyword` (degraded), ...
    pub source: String,
}

/// Machine-readable error codes of the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationError,
    InvalidJson,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    /// The user withdrew consent: nothing more is extracted.
    ConsentWithdrawn,
    /// The tenant requires consent before extraction, and none is recorded.
    ConsentRequired,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    ExtractionFailed,
    InternalError,
}

impl ErrorCode {
    /// HTTP status for the code; the one place this mapping lives.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::ValidationError | ErrorCode::InvalidJson => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict | ErrorCode::ConsentWithdrawn | ErrorCode::ConsentRequired => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::ServiceUnavailable => 503,
            ErrorCode::ExtractionFailed | ErrorCode::InternalError => 500,
        }
    }
}

/// The `error` object of the envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default)]
    pub details: serde_json::Value,
    pub trace_id: String,
}

/// `{"status":"error","error":{...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorEnvelope {
    pub status: String,
    pub error: ErrorBody,
}

/// `{"status":"success"|"accepted","data":...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Envelope<T> {
    pub status: String,
    pub data: T,
}

impl<T> Envelope<T> {
    pub fn success(data: T) -> Self {
        Envelope {
            status: "success".into(),
            data,
        }
    }

    pub fn accepted(data: T) -> Self {
        Envelope {
            status: "accepted".into(),
            data,
        }
    }
}

/// The most answers one `POST /v1/audit/cache_hits` may record.
pub const MAX_CACHE_HITS_PER_BATCH: usize = 1000;

/// One search the sidecar answered from its cache: data access the dataplane
/// never saw, recorded in its audit log under the caller's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheHit {
    pub user_id: String,
    /// The request id of the search that was answered.
    pub request_id: String,
    /// `L0` or `L1`.
    pub layer: String,
}

/// Body of `POST /v1/audit/cache_hits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheHitBatch {
    pub hits: Vec<CacheHit>,
}
