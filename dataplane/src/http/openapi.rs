//! The OpenAPI 3.1 document of the whole HTTP surface, native and Mem0
//! (served at `/openapi.json`, checked in as `docs/openapi.json`; a test
//! fails when the two differ). Response schemas come from the types the
//! handlers serialise (`pika_common::wire`, `views`, the Mem0 `wire`);
//! request bodies, which handlers read leniently and validate themselves,
//! are described by the `*Body` types below with the limits `validate`
//! enforces. Every operation also documents the error answers any route can
//! give (the envelope, or Mem0's `{"detail"}` on Mem0 paths), added in one
//! place ([`with_error_responses`]) so none is forgotten. Schemathesis runs
//! against this document in CI (`tests/tests/schema_fuzz.rs`).

use crate::http::mem0::schema as mem0;
use crate::http::views::{FactView, HistoryView};
use pika_common::wire::{
    Category, Envelope, ErrorEnvelope, ExtractAccepted, ExtractResult, JobView, Role, SearchResponse,
};
use serde::Serialize;
use utoipa::openapi::{RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

/// One conversation turn as sent.
#[derive(Serialize, ToSchema)]
pub struct MessageBody {
    pub role: Role,
    /// 1..5000 characters after trimming.
    #[schema(min_length = 1, max_length = 5000)]
    pub content: String,
}

/// `POST /v1/extract_facts`.
#[derive(Serialize, ToSchema)]
pub struct ExtractBody {
    /// 1..100 characters of `[A-Za-z0-9_.:@-]`.
    #[schema(pattern = "^[A-Za-z0-9_.:@-]{1,100}$")]
    pub user_id: String,
    #[schema(pattern = "^[A-Za-z0-9_.:@-]{1,100}$")]
    pub conversation_id: String,
    /// 2..100 turns.
    #[schema(min_items = 2, max_items = 100)]
    pub conversation: Vec<MessageBody>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// RFC 3339; relative dates in the conversation resolve against it.
    #[serde(default)]
    pub occurred_at: Option<String>,
    #[schema(max_length = 100)]
    #[serde(default)]
    pub user_name: Option<String>,
}

/// `POST /v1/search_facts`.
#[derive(Serialize, ToSchema)]
pub struct SearchBody {
    #[schema(pattern = "^[A-Za-z0-9_.:@-]{1,100}$")]
    pub user_id: String,
    #[schema(min_length = 1, max_length = 500)]
    pub query: String,
    #[schema(minimum = 1, maximum = 100, default = 20)]
    #[serde(default)]
    pub limit: Option<u32>,
    #[schema(minimum = 0.0, maximum = 1.0, default = 0.4)]
    #[serde(default)]
    pub score_threshold: Option<f32>,
    #[serde(default)]
    pub categories: Option<Vec<Category>>,
    #[schema(default = true)]
    #[serde(default)]
    pub include_related: Option<bool>,
}

/// `PUT /v1/users/{user_id}/consent`.
#[derive(Serialize, ToSchema)]
pub struct ConsentBody {
    /// `granted` or `withdrawn`.
    pub state: String,
    /// With `withdrawn`: erase the user now.
    #[serde(default)]
    pub erase: Option<bool>,
}

/// `POST /v1/tenants`.
#[derive(Serialize, ToSchema)]
pub struct TenantBody {
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,39}$")]
    pub tenant_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub require_consent: Option<bool>,
}

/// `PATCH /v1/tenants/{tenant_id}`.
#[derive(Serialize, ToSchema)]
pub struct TenantChangeBody {
    #[serde(default)]
    pub require_consent: Option<bool>,
    #[serde(default)]
    pub retention_days: Option<u32>,
}

/// `POST /v1/keys`.
#[derive(Serialize, ToSchema)]
pub struct KeyBody {
    pub tenant_id: String,
    pub name: String,
    /// Of `extract`, `search`, `admin`, `operator` (default extract, search).
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    /// A device key's users (default: every user of the tenant).
    #[serde(default)]
    pub users: Option<Vec<String>>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// A user's memories, one page.
#[derive(Serialize, ToSchema)]
pub struct FactPageView {
    pub user_id: String,
    pub facts: Vec<FactView>,
    pub next_cursor: Option<String>,
}

/// A fact as it is now, and its history.
#[derive(Serialize, ToSchema)]
pub struct FactHistoryView {
    pub fact_id: String,
    pub fact: FactView,
    pub history: Vec<HistoryView>,
}

/// What deleting one fact removed.
#[derive(Serialize, ToSchema)]
pub struct FactDeletedView {
    pub fact_id: String,
    pub deleted: bool,
    pub removed: Vec<String>,
}

/// A user's erasure and its receipt (store by store).
#[derive(Serialize, ToSchema)]
pub struct UserDeletedView {
    pub user_id: String,
    pub facts_deleted: u64,
    #[schema(value_type = Object)]
    pub receipt: serde_json::Value,
}

/// A user's consent (none recorded: `null`; and, when setting it erased
/// them, the receipt).
#[derive(Serialize, ToSchema)]
pub struct ConsentView {
    pub user_id: String,
    #[schema(value_type = Option<Object>)]
    pub consent: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub receipt: Option<serde_json::Value>,
}

/// The envelope around an object described in docs/API.md (tenants, keys).
#[derive(Serialize, ToSchema)]
pub struct AnyEnvelope {
    /// `success`.
    pub status: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

macro_rules! op {
    ($name:ident, $($spec:tt)*) => {
        #[utoipa::path($($spec)*)]
        #[allow(dead_code)]
        fn $name() {}
    };
}

op!(extract_facts, post, path = "/v1/extract_facts", tag = "memory",
request_body = ExtractBody,
params(
    ("wait" = Option<bool>, Query, description = "Answer 200 with the finished result (bounded wait)"),
    ("timeout_ms" = Option<u64>, Query, description = "How long to wait with `wait=true`"),
    ("Idempotency-Key" = Option<String>, Header, description = "1..200 characters; the same key returns the same job"),
),
responses(
    (status = 202, description = "Accepted: a job", body = Envelope<ExtractAccepted>),
    (status = 200, description = "With `wait=true`: the finished result", body = Envelope<ExtractResult>),
));
op!(get_job, get, path = "/v1/jobs/{job_id}", tag = "memory",
    params(("job_id" = String, Path)),
    responses((status = 200, description = "The job", body = Envelope<JobView>)));
op!(search_facts, post, path = "/v1/search_facts", tag = "memory",
    request_body = SearchBody,
    responses((status = 200, description = "Ranked memories", body = Envelope<SearchResponse>)));
op!(list_facts, get, path = "/v1/users/{user_id}/facts", tag = "facts",
    params(
        ("user_id" = String, Path),
        ("cursor" = Option<String>, Query),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200),
        ("kind" = Option<String>, Query, description = "fact (default), episode or all"),
    ),
    responses((status = 200, description = "One page", body = Envelope<FactPageView>)));
op!(get_fact, get, path = "/v1/facts/{fact_id}", tag = "facts",
    params(("fact_id" = String, Path)),
    responses((status = 200, description = "The fact", body = Envelope<FactView>)));
op!(delete_fact, delete, path = "/v1/facts/{fact_id}", tag = "facts",
    params(("fact_id" = String, Path)),
    responses((status = 200, description = "Deleted everywhere", body = Envelope<FactDeletedView>)));
op!(fact_history, get, path = "/v1/facts/{fact_id}/history", tag = "facts",
    params(("fact_id" = String, Path)),
    responses((status = 200, description = "ADD/UPDATE/DELETE entries", body = Envelope<FactHistoryView>)));
op!(delete_user, delete, path = "/v1/users/{user_id}", tag = "users",
    params(("user_id" = String, Path)),
    responses((status = 200, description = "Erased from every store and cache", body = Envelope<UserDeletedView>)));
op!(
    export_user,
    get,
    path = "/v1/users/{user_id}/export",
    tag = "users",
    params(("user_id" = String, Path)),
    responses((
        status = 200,
        description = "NDJSON: a header line, records, an end line",
        content_type = "application/x-ndjson",
        body = String
    ))
);
op!(get_consent, get, path = "/v1/users/{user_id}/consent", tag = "users",
    params(("user_id" = String, Path)),
    responses((status = 200, description = "The consent state", body = Envelope<ConsentView>)));
op!(set_consent, put, path = "/v1/users/{user_id}/consent", tag = "users",
    params(("user_id" = String, Path)),
    request_body = ConsentBody,
    responses((status = 200, description = "The consent state", body = Envelope<ConsentView>)));
/// `POST /v1/admin/jobs/redrive`.
#[derive(Serialize, ToSchema)]
pub struct RedriveBody {
    /// Only these failed jobs (1..1000); absent: every failed job of the
    /// tenant, up to `limit`.
    #[schema(min_items = 1, max_items = 1000)]
    #[serde(default)]
    pub job_ids: Option<Vec<String>>,
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One page of the tenant's jobs, newest first.
#[derive(Serialize, ToSchema)]
pub struct JobPageView {
    pub jobs: Vec<JobView>,
    /// Pass as `before` for the next page; `null` on the last one.
    pub next_before: Option<String>,
}

/// What a re-drive queued again.
#[derive(Serialize, ToSchema)]
pub struct RedrivenView {
    pub job_ids: Vec<String>,
    /// How many were published at once (the rest: by the sweeper).
    pub published: u64,
}

op!(list_jobs, get, path = "/v1/admin/jobs", tag = "jobs",
    params(
        ("state" = Option<String>, Query, description = "queued, processing, completed or failed"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000),
        ("before" = Option<String>, Query, description = "A job id: older jobs only"),
    ),
    responses((status = 200, description = "The tenant's jobs, newest first", body = Envelope<JobPageView>)));
op!(redrive_jobs, post, path = "/v1/admin/jobs/redrive", tag = "jobs",
    request_body = RedriveBody,
    responses((status = 200, description = "Failed jobs queued again", body = Envelope<RedrivenView>)));
op!(retry_job, post, path = "/v1/admin/jobs/{job_id}/retry", tag = "jobs",
    params(("job_id" = String, Path)),
    responses((status = 200, description = "The failed job queued again", body = Envelope<RedrivenView>)));
op!(
    create_tenant,
    post,
    path = "/v1/tenants",
    tag = "operator",
    request_body = TenantBody,
    responses((status = 201, description = "The tenant", body = AnyEnvelope))
);
op!(
    list_tenants,
    get,
    path = "/v1/tenants",
    tag = "operator",
    responses((status = 200, description = "Every tenant", body = AnyEnvelope))
);
op!(
    change_tenant,
    patch,
    path = "/v1/tenants/{tenant_id}",
    tag = "operator",
    params(("tenant_id" = String, Path)),
    request_body = TenantChangeBody,
    responses((status = 200, description = "What changed", body = AnyEnvelope))
);
op!(
    create_key,
    post,
    path = "/v1/keys",
    tag = "operator",
    request_body = KeyBody,
    responses((
        status = 201,
        description = "The key, shown once",
        body = AnyEnvelope
    ))
);
op!(list_keys, get, path = "/v1/keys", tag = "operator",
    params(("tenant_id" = Option<String>, Query)),
    responses((status = 200, description = "Key records (never secrets)", body = AnyEnvelope)));
op!(
    revoke_key,
    delete,
    path = "/v1/keys/{key_id}",
    tag = "operator",
    params(("key_id" = String, Path)),
    responses((status = 200, description = "Revoked", body = AnyEnvelope))
);
op!(
    health,
    get,
    path = "/health",
    tag = "ops",
    security(()),
    responses(
        (status = 200, description = "Per-dependency status", body = Object),
        (
            status = 503,
            description = "The metadata store is down",
            body = Object
        ),
    )
);
op!(
    live,
    get,
    path = "/health/live",
    tag = "ops",
    security(()),
    responses((status = 200, description = "The process answers", body = Object))
);
op!(
    ready,
    get,
    path = "/health/ready",
    tag = "ops",
    security(()),
    responses(
        (status = 200, description = "Ready", body = Object),
        (status = 503, description = "Not ready", body = Object),
    )
);
op!(
    metrics,
    get,
    path = "/metrics",
    tag = "ops",
    security(()),
    responses((
        status = 200,
        description = "Prometheus text format",
        content_type = "text/plain",
        body = String
    ))
);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "PIKA Memory",
        description = "Long-term memory for conversational robots: the native API and the Mem0-compatible routes. Errors: the envelope of docs/API.md on native paths, Mem0's {\"detail\"} on Mem0 paths.",
    ),
    paths(
        extract_facts, get_job, search_facts, list_facts, get_fact, delete_fact, fact_history,
        delete_user, export_user, get_consent, set_consent,
        list_jobs, redrive_jobs, retry_job,
        create_tenant, list_tenants, change_tenant, create_key, list_keys, revoke_key,
        health, live, ready, metrics,
        mem0::ping, mem0::add_v3, mem0::add_v1, mem0::search_v3, mem0::search_v2, mem0::search_v1,
        mem0::list_v3, mem0::list_v2, mem0::list_v1, mem0::get_memory, mem0::update_memory,
        mem0::delete_memory, mem0::history, mem0::delete_all, mem0::batch_update, mem0::batch_delete,
        mem0::entities, mem0::delete_entity, mem0::feedback,
    ),
    components(schemas(ErrorEnvelope, mem0::Mem0Error)),
    modifiers(&Security),
)]
pub struct ApiDoc;

/// The API keys: `Authorization: Bearer <key>` (or Mem0's `Token <key>`,
/// or `X-API-Key`).
struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        api.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("api_key", Vec::<String>::new()),
        ]);
    }
}

fn error_response(description: &str, mem0_path: bool) -> Response {
    let schema = if mem0_path { "Mem0Error" } else { "ErrorEnvelope" };
    let content = utoipa::openapi::content::ContentBuilder::new()
        .schema(Some(utoipa::openapi::Ref::from_schema_name(schema)))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
        .build()
}

/// Adds the answers any route can give (bad input, no key, no permission,
/// not found, too large, shed, dependency down, internal) to every
/// operation that does not name them itself, as references to one shared
/// response each (`Error400`, `Mem0Error400`, ...).
pub fn with_error_responses(mut api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    const ERRORS: &[(&str, &str)] = &[
        ("400", "Invalid input: every bad field is named"),
        ("401", "Missing or invalid API key"),
        ("403", "The key lacks the permission, or does not cover the user"),
        ("404", "Not found (also: another tenant's data)"),
        ("405", "Method not allowed"),
        ("409", "Conflict"),
        ("413", "Body larger than 1 MiB"),
        ("415", "Not JSON"),
        ("429", "Rate limited or shed (see Retry-After)"),
        ("500", "Internal error"),
        ("503", "A required dependency is down"),
    ];
    let components = api.components.get_or_insert_with(Default::default);
    for (code, what) in ERRORS {
        for (prefix, mem0_path) in [("Error", false), ("Mem0Error", true)] {
            components.responses.insert(
                format!("{prefix}{code}"),
                RefOr::T(error_response(what, mem0_path)),
            );
        }
    }
    for (path, item) in api.paths.paths.iter_mut() {
        let prefix = if pika_common::http::mem0::is_mem0_path(path) {
            "Mem0Error"
        } else {
            "Error"
        };
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            for (code, _) in ERRORS {
                op.responses
                    .responses
                    .entry((*code).to_string())
                    .or_insert_with(|| {
                        RefOr::Ref(utoipa::openapi::Ref::new(format!(
                            "#/components/responses/{prefix}{code}"
                        )))
                    });
            }
        }
    }
    api
}

/// The document as served and checked in.
pub fn document() -> utoipa::openapi::OpenApi {
    with_error_responses(ApiDoc::openapi())
}

/// The document as pretty JSON with a final newline (`docs/openapi.json`).
pub fn document_json() -> String {
    let mut text = document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` is the document the code generates; rewrite it
    /// with `PIKA_UPDATE_OPENAPI=1 cargo test --release --workspace --lib openapi`
    /// (or `pika-dataplane openapi > docs/openapi.json`).
    #[test]
    fn the_checked_in_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let now = document_json();
        if std::env::var_os("PIKA_UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &now).expect("write docs/openapi.json");
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == now,
            "docs/openapi.json is stale: run PIKA_UPDATE_OPENAPI=1 cargo test --release --workspace --lib openapi"
        );
    }

    #[test]
    fn every_operation_documents_the_error_answers_and_mem0_paths_use_detail() {
        let api = document();
        let search = api.paths.paths.get("/v1/search_facts").expect("native search");
        let post = search.post.as_ref().expect("post");
        assert!(post.responses.responses.contains_key("401"));
        assert!(post.responses.responses.contains_key("200"));
        let json = document_json();
        assert!(
            json.contains("\"/v3/memories/search/\""),
            "Mem0 routes are documented"
        );
        assert!(json.contains("\"openapi\": \"3.1"), "OpenAPI 3.1");
        let mem0 = api
            .paths
            .paths
            .get("/v1/memories/{memory_id}/")
            .expect("mem0 memory");
        let get = mem0.get.as_ref().expect("get");
        let not_found = serde_json::to_string(&get.responses.responses["404"]).expect("json");
        assert!(not_found.contains("Mem0Error404"), "{not_found}");
    }
}
