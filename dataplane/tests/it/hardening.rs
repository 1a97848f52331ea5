//! The hardened edge (issue 12): bounded validation of hostile bodies (with
//! the server's peak memory measured), load shedding before any work is
//! queued, and the bound on `?wait=true` holders.

use crate::harness::{TestServer, conversation, have_model, model_dir};
use reqwest::StatusCode;
use std::io::{Read, Write};
use std::time::Duration;

/// 500 000 bad `categories` items in one body just under 1 MiB.
fn hostile_search_body() -> String {
    let items = vec!["1"; 500_000].join(",");
    format!(r#"{{"user_id":"u","query":"q","categories":[{items}]}}"#)
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_hostile_body_gets_bounded_errors_and_bounded_memory() {
    if !have_model() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let env = vec![
        (
            "PIKA__STORAGE__DATA_DIR".to_string(),
            dir.path().display().to_string(),
        ),
        (
            "PIKA__EMBEDDING__MODEL_DIR".to_string(),
            model_dir().display().to_string(),
        ),
    ];
    let (proc, lines) = crate::split::spawn(
        &["serve", "--listen", "127.0.0.1:0", "--insecure-dev"],
        &env,
        "listening on ",
    );
    let base = lines
        .last()
        .and_then(|l| l.strip_prefix("listening on "))
        .expect("address")
        .to_string();
    let s = TestServer::remote(&base, "");
    let body = hostile_search_body();
    assert!(body.len() < 1024 * 1024, "{} bytes", body.len());
    let (status, _) = s
        .send(
            s.http
                .post(s.url("/v1/search_facts"))
                .header("content-type", "application/json")
                .body(r#"{"user_id":"u","query":"warm up"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let pid = proc.0.id();
    let before = peak_rss_kib(pid);
    for _ in 0..5 {
        let resp = s
            .http
            .post(s.url("/v1/search_facts"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let text = resp.text().await.expect("body");
        assert!(text.len() < 4096, "error answer of {} bytes", text.len());
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        let fields = v["error"]["details"]["fields"].as_array().map(Vec::len);
        assert_eq!(fields, Some(1), "{v}");
    }
    let after = peak_rss_kib(pid);
    println!(
        "hostile body ({} bytes, 500000 bad categories) x5: peak RSS {} KiB -> {} KiB (+{} KiB)",
        body.len(),
        before,
        after,
        after.saturating_sub(before)
    );
    // The body itself (1 MiB) and its JSON tree (~500k values) are the cost;
    // no per-item error entries on top.
    assert!(
        after.saturating_sub(before) < 96 * 1024,
        "peak grew by {} KiB",
        after - before
    );
}

/// Opens a request whose body never finishes arriving: it holds a slot.
fn stalled_request(base: &str) -> std::net::TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        conn,
        "POST /v1/search_facts HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"user_id\""
    )
    .expect("write");
    conn
}

#[tokio::test]
async fn requests_past_the_in_flight_limit_are_shed_with_retry_after() {
    if !have_model() {
        return;
    }
    let s = TestServer::start(|c| {
        c.server.max_in_flight = 2;
        c.auth.insecure_dev = true;
    })
    .await;
    let held: Vec<_> = (0..2).map(|_| stalled_request(&s.base)).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = s
        .http
        .post(s.url("/v1/search_facts"))
        .json(&serde_json::json!({"user_id": "u", "query": "q"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    let (status, _) = s.get("/health/live").await;
    assert_eq!(status, StatusCode::OK, "liveness is never shed");
    for mut conn in held {
        let _ = conn.shutdown(std::net::Shutdown::Both);
        let mut sink = Vec::new();
        let _ = conn.read_to_end(&mut sink);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = s
        .post(
            "/v1/search_facts",
            &serde_json::json!({"user_id": "u", "query": "q"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "slots come back: {body}");
    s.stop().await;
}

#[tokio::test]
async fn waiting_callers_past_their_bound_get_the_202_at_once() {
    if !have_model() {
        return;
    }
    let s = TestServer::start(|c| c.server.max_waiting_per_key = 0).await;
    let (status, body) = s
        .post(
            "/v1/extract_facts?wait=true",
            &conversation(
                "kid-wait",
                "c1",
                &[("assistant", "Hi"), ("user", "I like trains.")],
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(
        body["data"]["job_id"].is_string(),
        "the job is accepted all the same: {body}"
    );
    s.stop().await;
}
