//! Starting servers and talking to them.

use pika_dataplane::app;
use pika_dataplane::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub use pika_tests::support::{have_model, model_dir};

/// The bootstrap admin key a `serve` process wrote, from the stdout line that
/// names its file (the key itself is printed only on a terminal).
pub fn bootstrap_key_in(line: &str) -> Option<String> {
    let path = line
        .strip_prefix("admin api key written to ")?
        .strip_suffix(" (shown once)")?;
    let key = std::fs::read_to_string(path).expect("bootstrap key file");
    Some(key.trim().to_string())
}

/// A configuration for a test server: free port, private data dir, local model.
pub fn test_config(data_dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.storage.data_dir = data_dir.to_path_buf();
    c.embedding.model_dir = model_dir();
    c.worker.retry_base_ms = 20;
    // Revocation through the CLI (another process) shows within this.
    c.auth.key_cache_ttl_ms = 200;
    c
}

/// A running in-process server and a client with its admin key.
pub struct TestServer {
    pub base: String,
    pub key: String,
    pub http: reqwest::Client,
    running: Option<app::Running>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server with the default test configuration, adjusted by `tweak`.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let mut s = TestServer::start_with(config).await;
        s._dir = Some(dir);
        s
    }

    pub async fn start_with(config: Config) -> TestServer {
        let running = app::start(config).await.expect("server starts");
        TestServer::from_running(running)
    }

    fn from_running(running: app::Running) -> TestServer {
        let key = running.bootstrap_admin_key.clone().unwrap_or_default();
        TestServer {
            base: format!("http://{}", running.addr),
            key,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            running: Some(running),
            _dir: None,
        }
    }

    /// A client for a server running elsewhere (another process).
    pub fn remote(base: &str, key: &str) -> TestServer {
        TestServer {
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            running: None,
            _dir: None,
        }
    }

    /// Starts a graceful shutdown without waiting for it (see `stop`).
    pub fn begin_shutdown(&self) {
        if let Some(r) = &self.running {
            let _ = r.shutdown_handle().send(true);
        }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POST JSON with the admin key; returns status and body (JSON or `{"raw": text}`).
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.http.post(self.url(path)).bearer_auth(&self.key).json(body))
            .await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(self.url(path)).bearer_auth(&self.key))
            .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.delete(self.url(path)).bearer_auth(&self.key))
            .await
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
        (status, body)
    }

    /// Extracts and waits until the job is final; returns the job view.
    pub async fn extract_and_wait(&self, user: &str, conv_id: &str, turns: &[(&str, &str)]) -> Value {
        let (status, body) = self
            .post("/v1/extract_facts", &conversation(user, conv_id, turns))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let job_id = body["data"]["job_id"].as_str().expect("job id").to_string();
        self.wait_job(&job_id, Duration::from_secs(60)).await
    }

    pub async fn wait_job(&self, job_id: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let (status, body) = self.get(&format!("/v1/jobs/{job_id}")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let state = body["data"]["state"].as_str().unwrap_or("").to_string();
            if state == "completed" || state == "failed" {
                return body["data"].clone();
            }
            assert!(
                started.elapsed() < limit,
                "job {job_id} still {state} after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The user's export, one JSON value per NDJSON line (asserts 200 and the content type).
    pub async fn export(&self, user: &str) -> Vec<Value> {
        let resp = self
            .http
            .get(self.url(&format!("/v1/users/{user}/export")))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("export sent");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/x-ndjson")
        );
        let text = resp.text().await.expect("export body");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("each export line is JSON"))
            .collect()
    }

    /// Search results' contents, best first.
    pub async fn search(&self, user: &str, query: &str) -> Vec<String> {
        let (status, body) = self
            .post("/v1/search_facts", &json!({"user_id": user, "query": query}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"]["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["content"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

/// An extract body from `(role, content)` pairs.
pub fn conversation(user: &str, conv_id: &str, turns: &[(&str, &str)]) -> Value {
    json!({
        "user_id": user,
        "conversation_id": conv_id,
        "conversation": turns.iter().map(|(r, c)| json!({"role": r, "content": c})).collect::<Vec<_>>(),
    })
}

/// Asserts the error envelope and its code.
pub fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["error"]["trace_id"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
}
