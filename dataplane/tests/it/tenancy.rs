//! Tenants and scoped keys through HTTP (issue 12): a key never reaches
//! another tenant's data (another tenant's user is simply not found), a
//! device key reaches only its listed users (403 for any other, whether that
//! user exists or not), and only an operator key manages tenants and keys.
//! Run on the embedded store and on PostgreSQL.

use crate::harness::{TestServer, assert_error, conversation, have_model};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A client of the same server presenting `key`.
fn as_key(s: &TestServer, key: &str) -> TestServer {
    TestServer::remote(&s.base, key)
}

async fn new_key(op: &TestServer, tenant: &str, perms: &[&str], users: Option<&[&str]>) -> String {
    let (status, body) = op
        .post(
            "/v1/keys",
            &json!({"tenant_id": tenant, "name": format!("{tenant} key"), "permissions": perms, "users": users}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["key"]["tenant_id"], tenant, "{body}");
    body["data"]["api_key"].as_str().expect("secret").to_string()
}

fn result_texts(body: &Value) -> Vec<String> {
    body["data"]["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|x| x["content"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn search(s: &TestServer, user: &str, query: &str) -> (StatusCode, Value) {
    s.post(
        "/v1/search_facts",
        &json!({"user_id": user, "query": query, "score_threshold": 0.0}),
    )
    .await
}

/// The whole scenario against one running server (`op`: the bootstrap key,
/// operator of all tenants and admin of the default one).
pub async fn scoped_keys_scenario(op: &TestServer) {
    // Tenants: operator only; ids checked; no duplicates.
    for t in ["fleet-a", "fleet-b"] {
        let (status, body) = op.post("/v1/tenants", &json!({"tenant_id": t})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = op.post("/v1/tenants", &json!({"tenant_id": "fleet-a"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = op.post("/v1/tenants", &json!({"tenant_id": "Fleet/A"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = op
        .post("/v1/keys", &json!({"tenant_id": "nope", "name": "x"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let a = as_key(op, &new_key(op, "fleet-a", &["admin"], None).await);
    let b = as_key(op, &new_key(op, "fleet-b", &["admin"], None).await);
    let device = as_key(
        op,
        &new_key(op, "fleet-a", &["extract", "search"], Some(&["kid1"])).await,
    );
    // A tenant admin is no operator.
    let (status, body) = a.post("/v1/tenants", &json!({"tenant_id": "fleet-c"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error(&body, "FORBIDDEN");
    let (status, _) = a.get("/v1/keys").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Fleet A's kid1 and kid2 say something only they said.
    let job = a
        .extract_and_wait(
            "kid1",
            "c1",
            &[
                ("assistant", "Do you have a pet?"),
                ("user", "I have a pet dragon named Zorblax."),
            ],
        )
        .await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["user_id"], "kid1", "clients see their own user ids: {job}");
    let job_id = job["job_id"].as_str().expect("job id").to_string();
    let (status, body) = search(&a, "kid1", "dragon Zorblax").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let texts = result_texts(&body);
    assert!(texts.iter().any(|t| t.contains("Zorblax")), "{body}");
    let fact_id = body["data"]["results"][0]["fact_id"]
        .as_str()
        .expect("fact id")
        .to_string();
    a.extract_and_wait(
        "kid2",
        "c2",
        &[
            ("assistant", "What do you like?"),
            ("user", "I like the purple kite called Quibble."),
        ],
    )
    .await;
    let (_, body) = search(&a, "kid2", "purple kite Quibble").await;
    let kid2_fact = body["data"]["results"][0]["fact_id"]
        .as_str()
        .expect("kid2 fact")
        .to_string();

    // Fleet B (and the default tenant) asking for the same user id reach a
    // different, empty user; fact and job ids of A are simply not found.
    for other in [&b, op] {
        let (status, body) = search(other, "kid1", "dragon Zorblax").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(result_texts(&body).is_empty(), "leak through search: {body}");
        let (status, body) = other.get("/v1/users/kid1/facts?kind=all").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["facts"], json!([]), "leak through listing: {body}");
        let (status, body) = other.get("/v1/users/kid1/export").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            !body.to_string().contains("Zorblax"),
            "leak through export: {body}"
        );
        for path in [
            format!("/v1/facts/{fact_id}"),
            format!("/v1/facts/{fact_id}/history"),
            format!("/v1/jobs/{job_id}"),
            format!("/v1/jobs/{job_id}/status"),
        ] {
            let (status, body) = other.get(&path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
            assert!(!body.to_string().contains("Zorblax"), "{path}: {body}");
        }
        let (status, body) = other.delete(&format!("/v1/facts/{fact_id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, body) = other.delete("/v1/users/kid1").await;
        assert_eq!(status, StatusCode::OK, "erasing one's own (empty) kid1: {body}");
    }
    // B writing kid1 writes B's kid1.
    b.extract_and_wait(
        "kid1",
        "c1",
        &[("assistant", "Hi"), ("user", "I have a goldfish named Bubbles.")],
    )
    .await;
    let (_, body) = search(&a, "kid1", "goldfish Bubbles").await;
    assert!(
        !result_texts(&body).iter().any(|t| t.contains("Bubbles")),
        "B's write reached A: {body}"
    );
    let (_, body) = search(&b, "kid1", "dragon Zorblax goldfish").await;
    let texts = result_texts(&body);
    assert!(texts.iter().all(|t| !t.contains("Zorblax")), "{body}");
    assert!(texts.iter().any(|t| t.contains("Bubbles")), "{body}");
    // A's kid1 survived B's and the default tenant's erasure of "kid1".
    let (status, body) = a.get(&format!("/v1/facts/{fact_id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The device key: kid1 only, in every endpoint it may use.
    let (status, body) = search(&device, "kid1", "dragon Zorblax").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        result_texts(&body).iter().any(|t| t.contains("Zorblax")),
        "{body}"
    );
    let (status, _) = device.get(&format!("/v1/facts/{fact_id}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = device.get(&format!("/v1/jobs/{job_id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for user in ["kid2", "kid-never-seen"] {
        let (status, body) = search(&device, user, "kite").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{user}: {body}");
        assert_error(&body, "FORBIDDEN");
        let (status, body) = device.get(&format!("/v1/users/{user}/facts")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{user}: {body}");
        let (status, body) = device
            .post(
                "/v1/extract_facts",
                &conversation(user, "c9", &[("assistant", "Hi"), ("user", "I like kites.")]),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{user}: {body}");
    }
    let (status, body) = device.get(&format!("/v1/facts/{kid2_fact}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = device.delete("/v1/users/kid1").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no admin permission");

    // Keys are listed per tenant, never with secrets or hashes; revocation works.
    let (status, body) = op.get("/v1/keys?tenant_id=fleet-a").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let keys = body["data"]["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "{body}");
    assert!(!body.to_string().contains(&device.key), "a secret listed: {body}");
    let device_id = keys
        .iter()
        .find(|k| k["users"] == json!(["kid1"]))
        .and_then(|k| k["key_id"].as_str())
        .expect("device key listed")
        .to_string();
    let (status, body) = op.delete(&format!("/v1/keys/{device_id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, _) = search(&device, "kid1", "dragon").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "revoked within the key cache TTL"
    );
    let (status, body) = op.get("/v1/tenants").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["data"]["tenants"].as_array().map(Vec::len),
        Some(3),
        "{body}"
    );
}

#[tokio::test]
async fn keys_reach_only_their_tenant_and_users_on_the_embedded_store() {
    if !have_model() {
        return;
    }
    let s = TestServer::start(|_| {}).await;
    scoped_keys_scenario(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn keys_reach_only_their_tenant_and_users_on_postgres() {
    let Some(pg) = crate::backends::server_url("PIKA_TEST_POSTGRES_URL") else {
        return;
    };
    if !have_model() {
        return;
    }
    let schema = crate::split::PrivateSchema::new(&pg, "pika_tenancy").await;
    let url = schema.url.clone();
    let s = TestServer::start(move |c| c.storage.meta_url = pika_dataplane::config::Secret::new(url)).await;
    scoped_keys_scenario(&s).await;
    s.stop().await;
    schema.drop_schema().await;
}

/// Consent: a tenant may require it; withdrawal refuses extraction (409 with
/// its own code) and can erase the user at once, and the refusal outlives
/// the erasure.
pub async fn consent_scenario(op: &TestServer) {
    let (status, body) = op
        .post(
            "/v1/tenants",
            &json!({"tenant_id": "school", "require_consent": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let admin = as_key(op, &new_key(op, "school", &["admin"], None).await);
    let talk = |user: &str| {
        conversation(
            user,
            "c1",
            &[("assistant", "Hi"), ("user", "I love the red kite.")],
        )
    };

    let (status, body) = admin.post("/v1/extract_facts", &talk("kid1")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body, "CONSENT_REQUIRED");
    let (status, body) = admin.get("/v1/users/kid1/consent").await;
    assert_eq!(
        (status, &body["data"]["consent"]),
        (StatusCode::OK, &Value::Null),
        "{body}"
    );

    let (status, body) = admin
        .send(
            admin
                .http
                .put(admin.url("/v1/users/kid1/consent"))
                .bearer_auth(&admin.key)
                .json(&json!({"state": "granted"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["consent"]["state"], "granted", "{body}");
    let job = admin
        .extract_and_wait(
            "kid1",
            "c1",
            &[("assistant", "Hi"), ("user", "I love the red kite.")],
        )
        .await;
    assert_eq!(job["state"], "completed", "{job}");

    // Withdrawn, with erasure: the memories go, and extraction stays refused.
    let (status, body) = admin
        .send(
            admin
                .http
                .put(admin.url("/v1/users/kid1/consent"))
                .bearer_auth(&admin.key)
                .json(&json!({"state": "withdrawn", "erase": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"]["receipt"]["receipt_id"].is_string(), "{body}");
    let (_, body) = admin.get("/v1/users/kid1/facts?kind=all").await;
    assert_eq!(body["data"]["facts"], json!([]), "{body}");
    let (status, body) = admin.post("/v1/extract_facts", &talk("kid1")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body, "CONSENT_WITHDRAWN");
    let (_, body) = admin.get("/v1/users/kid1/consent").await;
    assert_eq!(body["data"]["consent"]["state"], "withdrawn", "{body}");

    // The requirement can be lifted by an operator; withdrawal still refuses.
    let (status, body) = op
        .send(
            op.http
                .patch(op.url("/v1/tenants/school"))
                .bearer_auth(&op.key)
                .json(&json!({"require_consent": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = admin.post("/v1/extract_facts", &talk("kid2")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = admin.post("/v1/extract_facts", &talk("kid1")).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn consent_gates_extraction_on_the_embedded_store() {
    if !have_model() {
        return;
    }
    let s = TestServer::start(|_| {}).await;
    consent_scenario(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn consent_gates_extraction_on_postgres() {
    let Some(pg) = crate::backends::server_url("PIKA_TEST_POSTGRES_URL") else {
        return;
    };
    if !have_model() {
        return;
    }
    let schema = crate::split::PrivateSchema::new(&pg, "pika_consent").await;
    let url = schema.url.clone();
    let s = TestServer::start(move |c| c.storage.meta_url = pika_dataplane::config::Secret::new(url)).await;
    consent_scenario(&s).await;
    s.stop().await;
    schema.drop_schema().await;
}
