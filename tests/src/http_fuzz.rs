//! A randomized run over an HTTP surface (issue 12), shared by the
//! dataplane's and the sidecar's tests: random methods, known routes with
//! random path segments and unknown paths, random headers (none, a valid
//! key, a made-up key; any content type; odd request ids) and random bodies
//! (arbitrary JSON, the right shapes with wrong values, raw bytes). A server
//! must answer every one without a 5xx other than 503 (load shedding).
//! Cases come from proptest's deterministic runner, so every run sends the
//! same requests and a failure names a reproducible case.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct Case {
    method: &'static str,
    path: String,
    auth: u8,
    content_type: Option<String>,
    request_id: Option<String>,
    body: Body,
}

#[derive(Debug, Clone)]
pub enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m: BTreeMap<String, Value>| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The request shapes the API knows, with random values in them.
fn shaped_json() -> impl Strategy<Value = Value> {
    let field = any_json().boxed();
    (field.clone(), field.clone(), field.clone(), field, 0usize..5).prop_map(
        |(a, b, c, d, which)| match which {
            0 => json!({"user_id": a, "conversation_id": b, "conversation": [{"role": c, "content": d}]}),
            1 => json!({"user_id": a, "query": b, "limit": c, "categories": d}),
            2 => json!({"tenant_id": a, "name": b, "permissions": c, "users": d}),
            3 => json!({"state": a, "erase": b, "require_consent": c, "retention_days": d}),
            _ => json!({"messages": a, "user_id": b, "filters": c, "top_k": d, "async_mode": false}),
        },
    )
}

fn case() -> impl Strategy<Value = Case> {
    // Mostly the methods the routes take, so most cases reach a handler.
    let method = prop_oneof![
        4 => Just("POST"),
        4 => Just("GET"),
        1 => Just("PUT"),
        1 => Just("PATCH"),
        1 => Just("DELETE"),
        1 => prop::sample::select(vec!["HEAD", "OPTIONS", "TRACE"]),
    ];
    let route = prop::sample::select(vec![
        "/v1/extract_facts",
        "/v1/search_facts",
        "/extract_facts",
        "/search_facts",
        "/v1/jobs/{}",
        "/v1/jobs/{}/status",
        "/v1/facts/{}",
        "/v1/facts/{}/history",
        "/v1/users/{}/facts",
        "/v1/users/{}/export",
        "/v1/users/{}",
        "/v1/users/{}/consent",
        "/v1/tenants",
        "/v1/tenants/{}",
        "/v1/keys",
        "/v1/keys/{}",
        "/v1/audit/cache_hits",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/v1/ping/",
        "/v3/memories/add/",
        "/v3/memories/search/",
        "/v2/memories/search/",
        "/v3/memories/",
        "/v2/memories/",
        "/v1/memories/",
        "/v1/memories/{}/",
        "/v1/memories/{}/history/",
        "/{}",
        "/v1/{}/{}",
    ]);
    let segment = "[A-Za-z0-9_.~%-]{0,48}";
    let path = (route, segment, segment, "(\\?[a-z_]{1,8}=[A-Za-z0-9%]{0,12})?").prop_map(|(r, a, b, q)| {
        let p = r.replacen("{}", &a, 1).replacen("{}", &b, 1);
        format!("{p}{q}")
    });
    let content_type = prop::option::of(prop::sample::select(vec![
        "application/json".to_string(),
        "application/json; charset=utf-8".to_string(),
        "text/plain".to_string(),
        "application/x-www-form-urlencoded".to_string(),
        "multipart/form-data; boundary=x".to_string(),
        "\u{7f}bogus".to_string(),
    ]));
    let request_id = prop::option::of("[ -~]{0,200}");
    let body = prop_oneof![
        Just(Body::None),
        any_json().prop_map(Body::Json),
        shaped_json().prop_map(Body::Json),
        prop::collection::vec(any::<u8>(), 0..512).prop_map(Body::Bytes),
    ];
    // Mostly the valid admin key, so most cases get past authentication.
    let auth = prop_oneof![7 => Just(1u8), 2 => Just(0u8), 1 => Just(2u8)];
    (method, path, auth, content_type, request_id, body).prop_map(
        |(method, path, auth, content_type, request_id, body)| Case {
            method,
            path,
            auth,
            content_type,
            request_id,
            body,
        },
    )
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Requests sent (cases whose path is not a valid URL are skipped).
    pub sent: usize,
    pub statuses: BTreeMap<u16, usize>,
    /// Every 5xx other than 503, with its case and body.
    pub failures: Vec<String>,
}

/// Sends `cases` random requests to `base`, `key` being a valid key.
pub async fn run(http: &reqwest::Client, base: &str, key: &str, cases: usize) -> Report {
    let strategy = case();
    // A fixed seed: every run sends the same cases, so a failure reproduces.
    let mut runner = TestRunner::deterministic();
    let mut report = Report::default();
    for _ in 0..cases {
        let c = strategy.new_tree(&mut runner).expect("case").current();
        let Ok(url) = reqwest::Url::parse(&format!("{base}{}", c.path)) else {
            continue;
        };
        let method = reqwest::Method::from_bytes(c.method.as_bytes()).expect("method");
        let mut req = http.request(method, url);
        req = match c.auth {
            0 => req,
            1 => req.bearer_auth(key),
            _ => req.bearer_auth("pika_live_sk_notarealkeyatall0000000000"),
        };
        if let Some(ct) = &c.content_type
            && let Ok(v) = reqwest::header::HeaderValue::from_str(ct)
        {
            req = req.header(reqwest::header::CONTENT_TYPE, v);
        }
        if let Some(id) = &c.request_id
            && let Ok(v) = reqwest::header::HeaderValue::from_str(id)
        {
            req = req.header("x-request-id", v);
        }
        req = match &c.body {
            Body::None => req,
            Body::Json(v) => req.body(v.to_string()),
            Body::Bytes(b) => req.body(b.clone()),
        };
        let resp = req.send().await.expect("the server answers");
        let status = resp.status().as_u16();
        report.sent += 1;
        *report.statuses.entry(status).or_default() += 1;
        if status >= 500 && status != 503 {
            let body = resp.text().await.unwrap_or_default();
            report.failures.push(format!("{status} for {c:?}: {body}"));
        }
    }
    report
}
