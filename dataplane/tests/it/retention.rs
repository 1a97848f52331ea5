//! Retention (issue 12): a tenant's data older than its `retention_days`
//! expires in every store, another tenant's (with the default 2 years) stays
//! until its own period passes; each pass is audited. The sweep is run with a
//! clock moved forward, so the test needs no waiting.

use crate::harness::{TestServer, have_model, test_config};
use pika_dataplane::config::Config;
use pika_dataplane::service::retention::Retention;
use reqwest::StatusCode;
use serde_json::json;

async fn retention_scenario(config: Config) {
    let s = TestServer::start_with(config.clone()).await;
    let (status, body) = s.post("/v1/tenants", &json!({"tenant_id": "short"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = s
        .send(
            s.http
                .patch(s.url("/v1/tenants/short"))
                .bearer_auth(&s.key)
                .json(&json!({"retention_days": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = s
        .post(
            "/v1/keys",
            &json!({"tenant_id": "short", "name": "k", "permissions": ["admin"]}),
        )
        .await;
    let short = TestServer::remote(&s.base, body["data"]["api_key"].as_str().expect("key"));
    let turns = [
        ("assistant", "What do you like?"),
        ("user", "I like my blue bicycle."),
    ];
    short.extract_and_wait("kid", "c1", &turns).await;
    s.extract_and_wait("kid", "c1", &turns).await;

    let deps = pika_dataplane::resolve::build_deps(&config).await.expect("deps");
    let retention = Retention::new(deps, 2);
    let now = chrono::Utc::now();
    assert!(
        retention.sweep(now).await.expect("sweep").is_empty(),
        "nothing is old yet"
    );

    let report = retention
        .sweep(now + chrono::Duration::days(2))
        .await
        .expect("sweep");
    let expired = report.get("short").expect("the short tenant expired data");
    assert!(
        expired.items.len() >= 2,
        "a fact and an episode at least: {expired:?}"
    );
    assert!(expired.jobs >= 1, "{expired:?}");
    assert!(
        !report.contains_key("default"),
        "2 years have not passed: {report:?}"
    );
    let (_, body) = short.get("/v1/users/kid/facts?kind=all").await;
    assert_eq!(body["data"]["facts"], json!([]), "{body}");
    let export = short.export("kid").await;
    assert!(!format!("{export:?}").contains("bicycle"), "{export:?}");
    let (_, body) = s.get("/v1/users/kid/facts?kind=all").await;
    assert!(
        !body["data"]["facts"].as_array().expect("facts").is_empty(),
        "{body}"
    );

    let report = retention
        .sweep(now + chrono::Duration::days(731))
        .await
        .expect("sweep");
    let expired = report
        .get("default")
        .expect("the default tenant's 2 years passed");
    assert!(expired.items.len() >= 2 && expired.audit >= 1, "{expired:?}");
    let (_, body) = s.get("/v1/users/kid/facts?kind=all").await;
    assert_eq!(body["data"]["facts"], json!([]), "{body}");
    s.stop().await;
}

#[tokio::test]
async fn data_older_than_the_tenants_retention_expires_on_the_embedded_store() {
    if !have_model() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.retention.enabled = false;
    retention_scenario(config).await;
}

#[tokio::test]
async fn data_older_than_the_tenants_retention_expires_on_postgres() {
    let Some(pg) = crate::backends::server_url("PIKA_TEST_POSTGRES_URL") else {
        return;
    };
    if !have_model() {
        return;
    }
    let schema = crate::split::PrivateSchema::new(&pg, "pika_retention").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.retention.enabled = false;
    config.storage.meta_url = pika_dataplane::config::Secret::new(schema.url.clone());
    retention_scenario(config).await;
    schema.drop_schema().await;
}
