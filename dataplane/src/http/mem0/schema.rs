//! The Mem0 routes in the OpenAPI document (`crate::http::openapi`): the
//! bodies Mem0's clients send, as the handlers accept them (read leniently,
//! validated in `wire`), and the answers, with the same field names as the
//! `json!` the handlers write. Schemathesis checks the answers against
//! these in CI, so a handler that drifts from its schema fails there.

use super::wire::MemoryView;
use serde::Serialize;
use utoipa::ToSchema;

/// Mem0's error body (with our code and trace id beside `detail`).
#[derive(Serialize, ToSchema)]
pub struct Mem0Error {
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `GET /v1/ping/`.
#[derive(Serialize, ToSchema)]
pub struct Ping {
    pub status: String,
    pub message: String,
    pub user_email: Option<String>,
    /// The key's tenant.
    pub org_id: String,
    /// The key's tenant.
    pub project_id: String,
}

/// Whose memories: the user (required, here or in `filters`) and the
/// agent, run and app within it.
#[derive(Serialize, ToSchema)]
pub struct EntityIds {
    #[schema(pattern = "^[A-Za-z0-9_.:@-]{1,100}$")]
    #[serde(default)]
    pub user_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_.:@-]{1,100}$")]
    #[serde(default)]
    pub agent_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_.:@-]{1,100}$")]
    #[serde(default)]
    pub run_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_.:@-]{1,100}$")]
    #[serde(default)]
    pub app_id: Option<String>,
}

/// `filters`: entity ids, alone or in an `AND` list (nothing else).
#[derive(Serialize, ToSchema)]
pub struct Filters {
    #[serde(flatten)]
    pub ids: EntityIds,
    #[serde(rename = "AND")]
    #[serde(default)]
    pub and: Option<Vec<EntityIds>>,
}

/// One message of an add.
#[derive(Serialize, ToSchema)]
pub struct Mem0Message {
    /// `user`, `assistant` or `system` (system messages are dropped).
    pub role: String,
    #[schema(min_length = 1, max_length = 5000)]
    pub content: String,
}

/// `POST /v3/memories/add/` and `POST /v1/memories/`.
#[derive(Serialize, ToSchema)]
pub struct AddBody {
    /// A string, one message, or 1..100 messages.
    #[schema(value_type = Vec<Mem0Message>)]
    pub messages: serde_json::Value,
    #[serde(flatten)]
    pub ids: EntityIds,
    #[serde(default)]
    pub filters: Option<Filters>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// `false`: each user message is kept word for word.
    #[serde(default)]
    pub infer: Option<bool>,
    /// Unix seconds: when the conversation happened.
    #[serde(default)]
    pub timestamp: Option<i64>,
    /// Answer PENDING at once (default true on v3, false on v1).
    #[serde(default)]
    pub async_mode: Option<bool>,
}

/// One memory an add made or changed.
#[derive(Serialize, ToSchema)]
pub struct AddEvent {
    pub id: String,
    pub memory: String,
    /// `ADD` or `UPDATE`.
    pub event: String,
}

/// An add's answer: PENDING with the job as `event_id`, or the results.
#[derive(Serialize, ToSchema)]
pub struct AddAnswer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<AddEvent>>,
}

/// `POST /v3|v2|v1/memories/search/`.
#[derive(Serialize, ToSchema)]
pub struct Mem0SearchBody {
    #[schema(min_length = 1, max_length = 500)]
    pub query: String,
    #[serde(flatten)]
    pub ids: EntityIds,
    #[serde(default)]
    pub filters: Option<Filters>,
    /// 1..1000 (served up to 100), default 10.
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default)]
    pub top_k: Option<u32>,
    #[schema(minimum = 0.0, maximum = 1.0)]
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default)]
    pub categories: Option<Vec<pika_common::wire::Category>>,
}

/// v3's search answer.
#[derive(Serialize, ToSchema)]
pub struct Results {
    pub results: Vec<MemoryView>,
}

/// `POST /v3/memories/` and `POST /v2/memories/` bodies.
#[derive(Serialize, ToSchema)]
pub struct ListBody {
    #[serde(flatten)]
    pub ids: EntityIds,
    #[serde(default)]
    pub filters: Option<Filters>,
}

/// A page of memories (`page` from 1, `page_size` 1..200).
#[derive(Serialize, ToSchema)]
pub struct Page {
    pub count: u64,
    pub next: Option<String>,
    pub previous: Option<String>,
    pub results: Vec<MemoryView>,
}

/// `POST /v2/memories/`: bare, or paged when `page`/`page_size` are given.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Only described: the handler writes one or the other.
pub enum ListV2Answer {
    Bare(Vec<MemoryView>),
    Paged(Page),
}

/// `PUT /v1/memories/{id}/`: new text and/or metadata.
#[derive(Serialize, ToSchema)]
pub struct UpdateBody {
    #[schema(min_length = 1, max_length = 5000)]
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// One entry of a batch.
#[derive(Serialize, ToSchema)]
pub struct BatchEntry {
    pub memory_id: String,
    #[schema(min_length = 1, max_length = 5000)]
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// `PUT|DELETE /v1/batch/`: 1..1000 entries.
#[derive(Serialize, ToSchema)]
pub struct BatchBody {
    #[schema(min_items = 1, max_items = 1000)]
    pub memories: Vec<BatchEntry>,
}

/// `{"message": ...}`.
#[derive(Serialize, ToSchema)]
pub struct Mem0Done {
    pub message: String,
}

/// One history row.
#[derive(Serialize, ToSchema)]
pub struct HistoryRow {
    pub id: String,
    pub memory_id: String,
    pub old_memory: Option<String>,
    pub new_memory: Option<String>,
    /// `ADD`, `UPDATE`, `DELETE` or `NONE`.
    pub event: String,
    pub input: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// One user holding memories.
#[derive(Serialize, ToSchema)]
pub struct Entity {
    pub id: String,
    pub name: String,
    /// Always `user`.
    #[serde(rename = "type")]
    pub kind: String,
    pub total_memories: u64,
    pub owner: Option<String>,
    pub organization: String,
    pub metadata: Option<serde_json::Value>,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /v1/entities/`.
#[derive(Serialize, ToSchema)]
pub struct Entities {
    pub count: u64,
    pub next: Option<String>,
    pub previous: Option<String>,
    pub results: Vec<Entity>,
}

/// `POST /v1/feedback/`.
#[derive(Serialize, ToSchema)]
pub struct FeedbackBody {
    pub memory_id: String,
    /// `POSITIVE`, `NEGATIVE`, `VERY_NEGATIVE` or null.
    #[serde(default)]
    pub feedback: Option<String>,
    #[schema(max_length = 1000)]
    #[serde(default)]
    pub feedback_reason: Option<String>,
}

/// The recorded feedback.
#[derive(Serialize, ToSchema)]
pub struct FeedbackAnswer {
    pub id: String,
    pub memory_id: String,
    pub feedback: Option<String>,
    pub feedback_reason: Option<String>,
}

macro_rules! op {
    ($name:ident, $($spec:tt)*) => {
        #[utoipa::path($($spec)*)]
        #[allow(dead_code)]
        pub fn $name() {}
    };
}

op!(
    ping,
    get,
    path = "/v1/ping/",
    tag = "mem0",
    responses((
        status = 200,
        description = "The clients' constructor check",
        body = Ping
    ))
);
op!(
    add_v3,
    post,
    path = "/v3/memories/add/",
    tag = "mem0",
    request_body = AddBody,
    responses((
        status = 200,
        description = "PENDING (default) or the results",
        body = AddAnswer
    ))
);
op!(
    add_v1,
    post,
    path = "/v1/memories/",
    tag = "mem0",
    request_body = AddBody,
    responses((
        status = 200,
        description = "The results (default) or PENDING",
        body = AddAnswer
    ))
);
op!(
    search_v3,
    post,
    path = "/v3/memories/search/",
    tag = "mem0",
    request_body = Mem0SearchBody,
    responses((status = 200, description = "Ranked memories", body = Results))
);
op!(search_v2, post, path = "/v2/memories/search/", tag = "mem0", request_body = Mem0SearchBody,
    responses((status = 200, description = "Ranked memories", body = Vec<MemoryView>)));
op!(search_v1, post, path = "/v1/memories/search/", tag = "mem0", request_body = Mem0SearchBody,
    responses((status = 200, description = "Ranked memories", body = Vec<MemoryView>)));
op!(list_v3, post, path = "/v3/memories/", tag = "mem0", request_body = ListBody,
    params(
        ("page" = Option<u32>, Query, minimum = 1),
        ("page_size" = Option<u32>, Query, minimum = 1, maximum = 200),
    ),
    responses((status = 200, description = "One page", body = Page)));
op!(list_v2, post, path = "/v2/memories/", tag = "mem0", request_body = ListBody,
    params(
        ("page" = Option<u32>, Query, minimum = 1),
        ("page_size" = Option<u32>, Query, minimum = 1, maximum = 200),
    ),
    responses((status = 200, description = "Every memory, or one page", body = ListV2Answer)));
op!(list_v1, get, path = "/v1/memories/", tag = "mem0",
    params(
        ("user_id" = String, Query),
        ("agent_id" = Option<String>, Query),
        ("run_id" = Option<String>, Query),
        ("app_id" = Option<String>, Query),
    ),
    responses((status = 200, description = "Every memory", body = Vec<MemoryView>)));
op!(
    get_memory,
    get,
    path = "/v1/memories/{memory_id}/",
    tag = "mem0",
    params(("memory_id" = String, Path)),
    responses((status = 200, description = "The memory", body = MemoryView))
);
op!(
    update_memory,
    put,
    path = "/v1/memories/{memory_id}/",
    tag = "mem0",
    params(("memory_id" = String, Path)),
    request_body = UpdateBody,
    responses((
        status = 200,
        description = "The memory as it is now",
        body = MemoryView
    ))
);
op!(
    delete_memory,
    delete,
    path = "/v1/memories/{memory_id}/",
    tag = "mem0",
    params(("memory_id" = String, Path)),
    responses((status = 200, description = "Deleted", body = Mem0Done))
);
op!(history, get, path = "/v1/memories/{memory_id}/history/", tag = "mem0",
    params(("memory_id" = String, Path)),
    responses((status = 200, description = "Its history, oldest first", body = Vec<HistoryRow>)));
op!(delete_all, delete, path = "/v1/memories/", tag = "mem0",
    params(
        ("user_id" = String, Query),
        ("agent_id" = Option<String>, Query),
        ("run_id" = Option<String>, Query),
        ("app_id" = Option<String>, Query),
    ),
    responses((status = 200, description = "The user's erasure, or the scope's memories deleted", body = Mem0Done)));
op!(
    batch_update,
    put,
    path = "/v1/batch/",
    tag = "mem0",
    request_body = BatchBody,
    responses((status = 200, description = "All updated", body = Mem0Done))
);
op!(
    batch_delete,
    delete,
    path = "/v1/batch/",
    tag = "mem0",
    request_body = BatchBody,
    responses((status = 200, description = "All deleted", body = Mem0Done))
);
op!(
    entities,
    get,
    path = "/v1/entities/",
    tag = "mem0",
    responses((
        status = 200,
        description = "Users holding memories",
        body = Entities
    ))
);
op!(
    delete_entity,
    delete,
    path = "/v2/entities/{entity_type}/{name}/",
    tag = "mem0",
    params(
        ("entity_type" = String, Path, description = "Only `user`"),
        ("name" = String, Path)
    ),
    responses((status = 200, description = "The user's erasure", body = Mem0Done))
);
op!(
    feedback,
    post,
    path = "/v1/feedback/",
    tag = "mem0",
    request_body = FeedbackBody,
    responses((
        status = 200,
        description = "Recorded in the audit log",
        body = FeedbackAnswer
    ))
);
