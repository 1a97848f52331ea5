//! One test per validation rule (SDD 6.2): each bad request gets 400 and the
//! envelope naming the field; boundaries are accepted; oversized bodies 413;
//! random bodies never crash the server.
//!
//! Over 400 lines on purpose: one test per SDD 6.2 rule, a table of cases.

use crate::harness::{assert_error, have_model, test_config};
use proptest::prelude::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::OnceLock;

/// One server for all validation tests, on its own runtime so it outlives each test's runtime.
struct Shared {
    base: String,
    key: String,
}

fn shared() -> Option<&'static Shared> {
    static SERVER: OnceLock<Option<Shared>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            if !have_model() {
                return None;
            }
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().expect("runtime");
                rt.block_on(async move {
                    let dir = Box::leak(Box::new(tempfile::tempdir().expect("tempdir")));
                    let running = pika_dataplane::app::start(test_config(dir.path()))
                        .await
                        .expect("start");
                    let _ = tx.send(Shared {
                        base: format!("http://{}", running.addr),
                        key: running.bootstrap_admin_key.clone().unwrap_or_default(),
                    });
                    running.wait().await;
                });
            });
            Some(rx.recv().expect("server started"))
        })
        .as_ref()
}

async fn post_raw(path: &str, body: Vec<u8>, content_type: &str) -> Option<(StatusCode, Value)> {
    let s = shared()?;
    let resp = reqwest::Client::new()
        .post(format!("{}{}", s.base, path))
        .bearer_auth(&s.key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("sent");
    let status = resp.status();
    let text = resp.text().await.expect("text");
    Some((
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text })),
    ))
}

async fn post(path: &str, body: Value) -> Option<(StatusCode, Value)> {
    post_raw(path, serde_json::to_vec(&body).expect("json"), "application/json").await
}

fn good_extract() -> Value {
    json!({
        "user_id": "kid-1",
        "conversation_id": "conv-1",
        "conversation": [
            {"role": "assistant", "content": "What did you do today?"},
            {"role": "user", "content": "I went to the zoo."}
        ]
    })
}

fn good_search() -> Value {
    json!({"user_id": "kid-1", "query": "zoo"})
}

/// Asserts 400 with a field error for `field` (prefix match, e.g. `conversation[1].role`).
async fn expect_field_error(path: &str, body: Value, field: &str) {
    let Some((status, resp)) = post(path, body).await else {
        return;
    };
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert_error(&resp, "VALIDATION_ERROR");
    let fields: Vec<&str> = resp["error"]["details"]["fields"]
        .as_array()
        .expect("field list")
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert!(fields.contains(&field), "expected {field} in {fields:?}");
}

fn with(mut base: Value, pointer: &str, value: Value) -> Value {
    *base.pointer_mut(pointer).expect("pointer exists") = value;
    base
}

fn adding(mut base: Value, key: &str, value: Value) -> Value {
    base.as_object_mut()
        .expect("object")
        .insert(key.to_string(), value);
    base
}

fn without(mut base: Value, key: &str) -> Value {
    base.as_object_mut().expect("object").remove(key);
    base
}

macro_rules! rule {
    ($name:ident, $path:expr, $body:expr, $field:expr) => {
        #[tokio::test]
        async fn $name() {
            expect_field_error($path, $body, $field).await;
        }
    };
}

const EX: &str = "/v1/extract_facts";
const SE: &str = "/v1/search_facts";

rule!(
    extract_user_id_required,
    EX,
    without(good_extract(), "user_id"),
    "user_id"
);
rule!(
    extract_user_id_not_empty,
    EX,
    with(good_extract(), "/user_id", json!("")),
    "user_id"
);
rule!(
    extract_user_id_max_100,
    EX,
    with(good_extract(), "/user_id", json!("u".repeat(101))),
    "user_id"
);
rule!(
    extract_user_id_charset,
    EX,
    with(good_extract(), "/user_id", json!("kid 1; DROP")),
    "user_id"
);
rule!(
    extract_user_id_string,
    EX,
    with(good_extract(), "/user_id", json!(42)),
    "user_id"
);
rule!(
    extract_conversation_id_required,
    EX,
    without(good_extract(), "conversation_id"),
    "conversation_id"
);
rule!(
    extract_conversation_id_max_100,
    EX,
    with(good_extract(), "/conversation_id", json!("c".repeat(101))),
    "conversation_id"
);
rule!(
    extract_conversation_id_charset,
    EX,
    with(good_extract(), "/conversation_id", json!("c/1")),
    "conversation_id"
);
rule!(
    extract_conversation_required,
    EX,
    without(good_extract(), "conversation"),
    "conversation"
);
rule!(
    extract_conversation_is_array,
    EX,
    with(good_extract(), "/conversation", json!("hello")),
    "conversation"
);
rule!(
    extract_conversation_min_2,
    EX,
    with(
        good_extract(),
        "/conversation",
        json!([{"role": "user", "content": "hi"}])
    ),
    "conversation"
);
rule!(
    extract_conversation_max_100,
    EX,
    with(
        good_extract(),
        "/conversation",
        json!(vec![json!({"role": "user", "content": "hi"}); 101])
    ),
    "conversation"
);
rule!(
    extract_message_is_object,
    EX,
    with(good_extract(), "/conversation/1", json!("hi")),
    "conversation[1]"
);
rule!(
    extract_role_required,
    EX,
    with(good_extract(), "/conversation/1", json!({"content": "hi"})),
    "conversation[1].role"
);
rule!(
    extract_role_user_or_assistant,
    EX,
    with(good_extract(), "/conversation/1/role", json!("system")),
    "conversation[1].role"
);
rule!(
    extract_content_required,
    EX,
    with(good_extract(), "/conversation/1", json!({"role": "user"})),
    "conversation[1].content"
);
rule!(
    extract_content_not_blank,
    EX,
    with(good_extract(), "/conversation/1/content", json!("   \n ")),
    "conversation[1].content"
);
rule!(
    extract_content_max_5000,
    EX,
    with(good_extract(), "/conversation/1/content", json!("a".repeat(5001))),
    "conversation[1].content"
);
rule!(
    extract_content_is_string,
    EX,
    with(good_extract(), "/conversation/1/content", json!(["a"])),
    "conversation[1].content"
);
rule!(
    extract_metadata_is_object,
    EX,
    adding(good_extract(), "metadata", json!(3)),
    "metadata"
);
rule!(
    search_user_id_required,
    SE,
    without(good_search(), "user_id"),
    "user_id"
);
rule!(
    search_user_id_charset,
    SE,
    with(good_search(), "/user_id", json!("ki d")),
    "user_id"
);
rule!(
    search_query_required,
    SE,
    without(good_search(), "query"),
    "query"
);
rule!(
    search_query_not_blank,
    SE,
    with(good_search(), "/query", json!("  ")),
    "query"
);
rule!(
    search_query_max_500,
    SE,
    with(good_search(), "/query", json!("q".repeat(501))),
    "query"
);
rule!(
    search_limit_min_1,
    SE,
    json!({"user_id": "k", "query": "q", "limit": 0}),
    "limit"
);
rule!(
    search_limit_max_100,
    SE,
    json!({"user_id": "k", "query": "q", "limit": 101}),
    "limit"
);
rule!(
    search_limit_integer,
    SE,
    json!({"user_id": "k", "query": "q", "limit": 2.5}),
    "limit"
);
rule!(
    search_threshold_min_0,
    SE,
    json!({"user_id": "k", "query": "q", "score_threshold": -0.1}),
    "score_threshold"
);
rule!(
    search_threshold_max_1,
    SE,
    json!({"user_id": "k", "query": "q", "score_threshold": 1.01}),
    "score_threshold"
);
rule!(
    search_categories_known,
    SE,
    json!({"user_id": "k", "query": "q", "categories": ["pets"]}),
    "categories[0]"
);
rule!(
    search_include_related_bool,
    SE,
    json!({"user_id": "k", "query": "q", "include_related": "yes"}),
    "include_related"
);

#[tokio::test]
async fn boundaries_are_accepted() {
    let big = with(good_extract(), "/conversation/1/content", json!("a".repeat(5000)));
    let big = with(big, "/user_id", json!("u".repeat(100)));
    let Some((status, body)) = post(EX, big).await else {
        return;
    };
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let hundred = with(
        good_extract(),
        "/conversation",
        json!(vec![json!({"role": "user", "content": "hi"}); 100]),
    );
    let Some((status, body)) = post(EX, hundred).await else {
        return;
    };
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let q = json!({"user_id": "k", "query": "q".repeat(500), "limit": 100, "score_threshold": 1.0});
    let Some((status, body)) = post(SE, q).await else {
        return;
    };
    assert_eq!(status, StatusCode::OK, "{body}");
    // Text is stored as given: SQL-looking words survive.
    let sql = with(
        good_extract(),
        "/conversation/1/content",
        json!("I want to DROP my bag; SELECT * FROM toys"),
    );
    let Some((status, _)) = post(EX, sql).await else {
        return;
    };
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn malformed_json_is_400() {
    let Some((status, body)) = post_raw(EX, b"{\"user_id\": ".to_vec(), "application/json").await else {
        return;
    };
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "INVALID_JSON");
    let Some((status, body)) = post_raw(SE, b"[1,2,3]".to_vec(), "application/json").await else {
        return;
    };
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "INVALID_JSON");
    let Some((status, body)) = post_raw(SE, b"{}".to_vec(), "text/plain").await else {
        return;
    };
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "INVALID_JSON");
}

#[tokio::test]
async fn body_over_1_mib_is_413() {
    let mut body = serde_json::to_vec(&good_extract()).expect("json");
    body.truncate(body.len() - 1);
    body.extend_from_slice(b", \"metadata\": {\"pad\": \"");
    body.extend(std::iter::repeat_n(b'x', 1024 * 1024));
    body.extend_from_slice(b"\"}}");
    let Some((status, resp)) = post_raw(EX, body, "application/json").await else {
        return;
    };
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{resp}");
    assert_error(&resp, "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn unknown_job_and_route_are_404() {
    let Some(s) = shared() else { return };
    let client = reqwest::Client::new();
    for path in [
        "/v1/jobs/01234567-0000-7000-8000-000000000000",
        "/v1/jobs/nope/status",
        "/v1/nothing-here",
    ] {
        let resp = client
            .get(format!("{}{path}", s.base))
            .bearer_auth(&s.key)
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = resp.json().await.expect("json");
        assert_error(&body, "NOT_FOUND");
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        Just(json!("user")),
        Just(json!("assistant")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::hash_map(
                prop_oneof![
                    Just("user_id".to_string()),
                    Just("conversation".to_string()),
                    Just("role".to_string()),
                    Just("content".to_string()),
                    Just("query".to_string()),
                    Just("limit".to_string()),
                    "[a-z_]{1,12}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    /// Random JSON and random bytes never produce a 5xx or kill the server.
    #[test]
    fn random_bodies_never_crash(body in arb_json(), bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async {
            for path in [EX, SE, "/extract_facts"] {
                if let Some((status, resp)) = post(path, body.clone()).await {
                    prop_assert!(status.is_client_error() || status.is_success(), "{path} {body} -> {status} {resp}");
                }
                if let Some((status, resp)) = post_raw(path, bytes.clone(), "application/json").await {
                    prop_assert!(status.is_client_error(), "{path} bytes -> {status} {resp}");
                }
            }
            Ok(())
        })?;
    }
}
