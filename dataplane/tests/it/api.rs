//! The user-visible scenarios of the dataplane slice.

use crate::harness::{TestServer, assert_error, conversation, have_model};
use reqwest::StatusCode;
use serde_json::json;
use std::process::Command;

const CAT_TURNS: &[(&str, &str)] = &[
    ("assistant", "Chào cậu! Cậu có nuôi con vật nào không?"),
    (
        "user",
        "Mình nuôi mèo tên Miu. Mình thích chơi xích đu và leo cây.",
    ),
];

fn top3_contains(results: &[String], needle: &str) -> bool {
    results.iter().take(3).any(|r| r.contains(needle))
}

#[tokio::test]
async fn vietnamese_and_english_facts_are_found_and_stay_private() {
    if !have_model() {
        return;
    }
    let s = TestServer::start(|_| {}).await;
    pets_scenario(&s).await;
    s.stop().await;
}

/// The dataplane's headline scenario; also run unchanged against the
/// API + worker split on real backends (`split.rs`).
pub async fn pets_scenario(s: &TestServer) {
    let job = s.extract_and_wait("kid-vi", "conv-1", CAT_TURNS).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["result"]["added"], 2, "{job}");
    let job = s
        .extract_and_wait(
            "kid-en",
            "conv-2",
            &[
                ("assistant", "Do you have a pet?"),
                ("user", "Yes! I have a dog called Max."),
            ],
        )
        .await;
    assert_eq!(job["state"], "completed", "{job}");

    for q in ["con mèo của bé", "thú cưng của bé là gì"] {
        let r = s.search("kid-vi", q).await;
        assert!(top3_contains(&r, "mèo tên Miu"), "{q}: {r:?}");
    }
    let r = s.search("kid-en", "What pets does the child have?").await;
    assert!(top3_contains(&r, "dog called Max"), "{r:?}");

    // Isolation: the other child and a stranger see nothing of these facts.
    assert!(
        !s.search("kid-en", "con mèo của bé")
            .await
            .iter()
            .any(|c| c.contains("Miu"))
    );
    assert!(
        !s.search("kid-vi", "What pets does the child have?")
            .await
            .iter()
            .any(|c| c.contains("Max"))
    );
    assert!(s.search("stranger", "thú cưng của bé là gì").await.is_empty());

    // The result carries provenance.
    let (_, body) = s
        .post(
            "/v1/search_facts",
            &json!({"user_id": "kid-vi", "query": "con mèo của bé", "limit": 1}),
        )
        .await;
    let hit = &body["data"]["results"][0];
    assert_eq!(hit["conversation_id"], "conv-1");
    assert_eq!(hit["source_turns"], json!([1]));
    assert_eq!(hit["category"], "relationship");
    assert_eq!(body["data"]["results_count"], 1);
    assert_eq!(body["data"]["degraded"], false);
}

#[tokio::test]
async fn repeated_conversation_adds_nothing_and_changes_keep_history() {
    if !have_model() {
        return;
    }
    let s = TestServer::start(|_| {}).await;
    let first = s.extract_and_wait("kid", "conv-a", CAT_TURNS).await;
    let again = s.extract_and_wait("kid", "conv-b", CAT_TURNS).await;
    assert_eq!(again["result"]["added"], 0, "{again}");
    assert_eq!(again["result"]["unchanged"], 2, "{again}");
    assert_eq!(again["result"]["fact_ids"], first["result"]["fact_ids"]);
    let (_, list) = s.get("/v1/users/kid/facts").await;
    assert_eq!(list["data"]["facts"].as_array().map(Vec::len), Some(2), "{list}");

    let change = s
        .extract_and_wait(
            "kid",
            "conv-c",
            &[
                ("assistant", "Miu khoẻ không?"),
                ("user", "Mình không nuôi mèo nữa, mình nuôi chó"),
            ],
        )
        .await;
    assert_eq!(change["result"]["updated"], 1, "{change}");
    assert_eq!(change["result"]["added"], 1, "{change}");

    let old_cat = first["result"]["fact_ids"][0].as_str().expect("id");
    let (status, old) = s.get(&format!("/v1/facts/{old_cat}/history")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(old["data"]["fact"]["status"], "superseded", "{old}");
    let history = old["data"]["history"].as_array().expect("history");
    let events: Vec<&str> = history.iter().filter_map(|h| h["event"].as_str()).collect();
    assert_eq!(events, vec!["ADD", "UPDATE"], "{old}");
    assert_eq!(history[1]["old_content"], "Bé nuôi mèo tên Miu.");
    assert_eq!(history[1]["new_content"], "Bé không nuôi mèo nữa.");

    let (_, list) = s.get("/v1/users/kid/facts").await;
    let contents: Vec<&str> = list["data"]["facts"]
        .as_array()
        .expect("facts")
        .iter()
        .filter_map(|f| f["content"].as_str())
        .collect();
    assert!(contents.contains(&"Bé không nuôi mèo nữa."), "{contents:?}");
    assert!(contents.contains(&"Bé nuôi chó."), "{contents:?}");
    assert!(!contents.contains(&"Bé nuôi mèo tên Miu."), "{contents:?}");
    s.stop().await;
}

#[tokio::test]
async fn idempotent_accept_wait_and_fact_lifecycle() {
    if !have_model() {
        return;
    }
    let s = TestServer::start(|_| {}).await;
    let body = conversation("kid-i", "conv-i", CAT_TURNS);
    let (st1, a) = s.post("/v1/extract_facts", &body).await;
    let (st2, b) = s.post("/v1/extract_facts", &body).await;
    assert_eq!((st1, st2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(a["status"], "accepted");
    assert_eq!(a["data"]["job_id"], b["data"]["job_id"], "same content, same job");
    assert_eq!(
        a["data"]["status_url"],
        format!("/v1/jobs/{}", a["data"]["job_id"].as_str().unwrap_or(""))
    );

    let keyed = |k: &str| {
        s.http
            .post(s.url("/v1/extract_facts"))
            .bearer_auth(&s.key)
            .header("Idempotency-Key", k)
            .json(&body)
    };
    let (_, c) = s.send(keyed("client-key-1")).await;
    let (_, d) = s.send(keyed("client-key-1")).await;
    assert_eq!(c["data"]["job_id"], d["data"]["job_id"]);
    assert_ne!(c["data"]["job_id"], a["data"]["job_id"]);

    // ?wait=true answers with the SDD's synchronous shape; the unversioned alias works.
    let (status, w) = s
        .post(
            "/extract_facts?wait=true",
            &conversation(
                "kid-w",
                "conv-w",
                &[("assistant", "Hi"), ("user", "I love drawing cats every day.")],
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{w}");
    assert_eq!(w["status"], "success");
    assert_eq!(w["data"]["facts_count"], 1, "{w}");
    let fact_id = w["data"]["fact_ids"][0].as_str().expect("fact id").to_string();
    assert!(w["data"]["processing_time_ms"].is_u64());

    let (status, f) = s.get(&format!("/v1/facts/{fact_id}")).await;
    assert_eq!(status, StatusCode::OK, "{f}");
    assert_eq!(f["data"]["content"], "The child loves drawing cats every day.");
    let (status, _) = s
        .post("/search_facts", &json!({"user_id": "kid-w", "query": "drawing"}))
        .await;
    assert_eq!(status, StatusCode::OK);

    // The export is complete and streamed as NDJSON: a header, the fact and
    // the episode (the child's turn) it came from with their history, the
    // graph (mentions, entities), the conversation, the audit of the
    // child's data, and an end line whose counts match.
    let lines = s.export("kid-w").await;
    let of = |t: &str| lines.iter().filter(|l| l["type"] == t).collect::<Vec<_>>();
    assert_eq!(lines[0]["type"], "export", "{lines:?}");
    assert_eq!(lines[0]["user_id"], "kid-w");
    let kinds: Vec<&str> = of("item")
        .iter()
        .filter_map(|l| l["item"]["kind"].as_str())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "fact").count(), 1, "{lines:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "episode").count(), 1, "{lines:?}");
    assert!(!of("history").is_empty(), "{lines:?}");
    assert!(!of("mention").is_empty() && !of("entity").is_empty(), "{lines:?}");
    assert_eq!(
        of("conversation")[0]["conversation"]["request"]["conversation"][1]["content"],
        "I love drawing cats every day."
    );
    let actions: Vec<&str> = of("audit")
        .iter()
        .filter_map(|l| l["entry"]["action"].as_str())
        .collect();
    assert!(actions.contains(&"export_user"), "{actions:?}");
    let end = lines.last().expect("lines");
    assert_eq!(end["type"], "end", "{lines:?}");
    for (kind, count) in [
        ("item", "items"),
        ("history", "history"),
        ("audit", "audit"),
        ("conversation", "conversations"),
    ] {
        assert_eq!(end["counts"][count], of(kind).len(), "{kind}: {end}");
    }

    let (status, _) = s.delete(&format!("/v1/facts/{fact_id}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, gone) = s.get(&format!("/v1/facts/{fact_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&gone, "NOT_FOUND");
    assert!(s.search("kid-w", "drawing cats").await.is_empty());

    let (status, del) = s.delete("/v1/users/kid-i").await;
    assert_eq!(status, StatusCode::OK, "{del}");
    assert!(s.search("kid-i", "con mèo").await.is_empty());
    let (_, list) = s.get("/v1/users/kid-i/facts").await;
    assert_eq!(list["data"]["facts"], json!([]));
    s.stop().await;
}

fn cli(data_dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pika-dataplane"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("cli runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn api_keys_gate_every_data_endpoint() {
    if !have_model() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TestServer::start_with(crate::harness::test_config(dir.path())).await;
    assert!(
        s.key.starts_with("pika_live_sk_"),
        "bootstrap admin key printed once"
    );
    let search_body = json!({"user_id": "kid", "query": "cat"});

    let (status, body) = s
        .send(s.http.post(s.url("/v1/search_facts")).json(&search_body))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "UNAUTHORIZED");
    let (status, _) = s
        .send(
            s.http
                .post(s.url("/v1/search_facts"))
                .bearer_auth("pika_live_sk_wrong")
                .json(&search_body),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A search-only key made with the CLI against the same data dir.
    let out = cli(
        dir.path(),
        &["keys", "create", "--name", "robot", "--permissions", "search"],
    );
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("api key: "))
        .expect("key printed")
        .trim()
        .to_string();
    let key_id = out
        .lines()
        .find_map(|l| l.strip_prefix("key id:  "))
        .expect("id printed")
        .trim()
        .to_string();
    let (status, _) = s
        .send(
            s.http
                .post(s.url("/v1/search_facts"))
                .header("X-API-Key", &key)
                .json(&search_body),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s
        .send(
            s.http
                .post(s.url("/v1/extract_facts"))
                .bearer_auth(&key)
                .json(&conversation(
                    "kid",
                    "c",
                    &[("user", "hi there"), ("assistant", "hello")],
                )),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "FORBIDDEN");
    let (status, _) = s
        .send(s.http.delete(s.url("/v1/users/kid")).bearer_auth(&key))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let listing = cli(dir.path(), &["keys", "list"]);
    assert!(
        listing.contains("robot") && listing.contains("active"),
        "{listing}"
    );
    assert!(!listing.contains(&key), "secrets never listed");
    cli(dir.path(), &["keys", "revoke", &key_id]);
    // The server trusts a grant for auth.key_cache_ttl_ms (200 ms here).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, _) = s
        .send(
            s.http
                .post(s.url("/v1/search_facts"))
                .bearer_auth(&key)
                .json(&search_body),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked keys are refused");

    // Health and metrics are open; every response carries a request id, echoed when sent.
    let resp = s
        .http
        .get(s.url("/health"))
        .header("X-Request-Id", "trace-123")
        .send()
        .await
        .expect("health");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-request-id"], "trace-123");
    let health: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(health["status"], "healthy", "{health}");
    let (status, _) = s.send(s.http.get(s.url("/health/ready"))).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("http_requests_total{endpoint=\"/v1/search_facts\",method=\"POST\",status=\"401\"}"),
        "{metrics}"
    );
    s.stop().await;
}
