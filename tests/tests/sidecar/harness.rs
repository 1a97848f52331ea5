//! A dataplane (embedded storage, in-process worker, signals on real Redis)
//! with one or more sidecars in front of it.

use pika_common::cache_policy::CachePolicySpec;
use pika_dataplane::app;
use pika_dataplane::config::{Config, Secret};
use pika_sidecar::config::SidecarConfig;
use pika_tests::support::{have_model, model_dir, server_url};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The L1 sealing key of test stacks (test data only).
const L1_SEAL_KEY: &str = "FWlRkgUu6YFvPaD20i9ivGRAhBazC5K+fngrkIJjsZI=";

pub struct Stack {
    pub config: Config,
    pub dataplane: String,
    pub key: String,
    pub redis_url: String,
    pub http: reqwest::Client,
    running: Option<app::Running>,
    _dir: tempfile::TempDir,
}

/// One answer: status, `X-Cache`, `X-Cache-Match`, body.
pub struct Answer {
    pub status: StatusCode,
    pub x_cache: String,
    pub semantic: bool,
    pub body: Value,
}

impl Answer {
    pub fn facts(&self) -> Vec<String> {
        self.body["data"]["results"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["content"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What a test may change before a sidecar starts.
pub struct SidecarSetup {
    pub config: SidecarConfig,
    pub policy: CachePolicySpec,
}

/// A unique user id for one test.
pub fn user(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

impl Stack {
    /// None (test skipped) without Redis or the model outside CI.
    pub async fn start() -> Option<Stack> {
        Stack::start_with(|_| {}).await
    }

    /// Like [`Stack::start`], with the dataplane's configuration adjusted
    /// (real backends, for instance).
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Option<Stack> {
        let redis_url = server_url("PIKA_TEST_REDIS_URL")?;
        if !have_model() {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".into();
        config.storage.data_dir = dir.path().to_path_buf();
        config.embedding.model_dir = model_dir();
        config.cache.redis_url = Secret::new(redis_url.clone());
        // Revocation tests wait for the dataplane's grant cache too.
        config.auth.key_cache_ttl_ms = 50;
        tweak(&mut config);
        let running = app::start(config.clone()).await.expect("dataplane starts");
        Some(Stack {
            dataplane: format!("http://{}", running.addr),
            key: running.bootstrap_admin_key.clone().expect("admin key"),
            redis_url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            config,
            running: Some(running),
            _dir: dir,
        })
    }

    /// Stops the dataplane (draining it); sidecars keep running.
    pub async fn stop_dataplane(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    /// A sidecar in front of this dataplane; `redis_url` may go through a fault proxy.
    pub async fn sidecar(
        &self,
        redis_url: &str,
        tweak: impl FnOnce(&mut SidecarSetup),
    ) -> pika_sidecar::Running {
        let mut config = SidecarConfig {
            listen: "127.0.0.1:0".into(),
            upstream: self.dataplane.clone(),
            embedding: self.config.embedding.clone(),
            ..Default::default()
        };
        config.redis.url = Secret::new(redis_url);
        // One L1 sealing key for every sidecar of the stack, as the operator
        // renders it, so they share L1.
        config.redis.seal_key = Secret::new(L1_SEAL_KEY);
        let mut setup = SidecarSetup {
            config,
            policy: CachePolicySpec::default(),
        };
        tweak(&mut setup);
        let running = pika_sidecar::start(setup.config, setup.policy)
            .await
            .expect("sidecar starts");
        // Wait for the invalidation subscription (fresh caches need it).
        let started = Instant::now();
        while !running.state.subscribed() && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        running
    }

    pub async fn search_with_key(&self, base: &str, key: Option<&str>, body: Value) -> Answer {
        let mut req = self.http.post(format!("{base}/v1/search_facts")).json(&body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.expect("search sent");
        let status = resp.status();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let x_cache = header("x-cache");
        let semantic = header("x-cache-match") == "semantic";
        let body = resp.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            x_cache,
            semantic,
            body,
        }
    }

    pub async fn search(&self, base: &str, user: &str, query: &str) -> Answer {
        self.search_with_key(
            base,
            Some(&self.key),
            json!({"user_id": user, "query": query, "limit": 50}),
        )
        .await
    }

    /// Submits one child's sentence; returns the job id.
    pub async fn extract(&self, base: &str, user: &str, text: &str) -> String {
        let resp = self
            .http
            .post(format!("{base}/v1/extract_facts"))
            .bearer_auth(&self.key)
            .json(&json!({
                "user_id": user,
                "conversation_id": uuid::Uuid::new_v4().to_string(),
                "conversation": [
                    {"role": "user", "content": text},
                    {"role": "assistant", "content": "Ồ, hay quá!"}
                ]
            }))
            .send()
            .await
            .expect("extract sent");
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "extract accepted");
        let v: Value = resp.json().await.expect("json");
        v["data"]["job_id"].as_str().expect("job id").to_string()
    }

    /// Polls `base` until the job completes; returns the job's data.
    pub async fn wait_completed(&self, base: &str, job: &str) -> Value {
        let started = Instant::now();
        loop {
            let v: Value = self
                .http
                .get(format!("{base}/v1/jobs/{job}"))
                .bearer_auth(&self.key)
                .send()
                .await
                .expect("status sent")
                .json()
                .await
                .expect("json");
            match v["data"]["state"].as_str() {
                Some("completed") => return v["data"].clone(),
                Some("failed") => panic!("job failed: {v}"),
                _ if started.elapsed() > Duration::from_secs(30) => panic!("job not done: {v}"),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}
