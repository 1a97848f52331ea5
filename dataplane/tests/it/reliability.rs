//! Nothing accepted is lost (issue 14): a job whose worker stopped renewing
//! its lease is queued again; transient failures are retried over the retry
//! horizon and a failed job can be re-driven; a graph outage completes jobs
//! and the repair loop writes their graph later; shutdown drains in-flight
//! jobs, or hands them back at its deadline; embedded commits are durable.

use crate::backends::{server_url, unique};
use crate::harness::{TestServer, have_model, test_config};
use crate::mock_openai::{ChatReply, Mock};
use pika_dataplane::config::{Config, Secret};
use pika_dataplane::ports::{JobStore, NewJob};
use pika_dataplane::store::SqliteMetaStore;
use pika_tests::fault_proxy::{FaultProxy, host_port, through};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The value of one metric line (`name{labels} value`) in `/metrics`.
async fn metric(s: &TestServer, series: &str) -> f64 {
    let text = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

fn use_mock_llm(c: &mut Config, base: &str) {
    c.llm.provider = "openai".into();
    c.llm.base_url = base.into();
    c.llm.model = "test-chat".into();
    c.llm.api_key = Secret::new("sk-test");
    c.embedding.provider = "openai".into();
    c.embedding.base_url = base.into();
    c.embedding.model = "test-embed".into();
    c.embedding.dimension = 8;
}

fn good_reply() -> String {
    json!({"facts": [{
        "content": "The child has a dog called Max.",
        "category": "relationship",
        "confidence": 0.95,
        "entities": ["dog", "Max"],
        "tags": ["dog", "pet"],
        "source_turns": [1],
        "polarity": "positive"
    }]})
    .to_string()
}

const TURNS: &[(&str, &str)] = &[
    ("assistant", "Do you have a pet?"),
    ("user", "Yes! I have a dog called Max."),
];

async fn accept(s: &TestServer, user: &str, conv: &str) -> String {
    let (status, body) = s
        .post(
            "/v1/extract_facts",
            &crate::harness::conversation(user, conv, TURNS),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["data"]["job_id"].as_str().expect("job id").to_string()
}

async fn wait_state(s: &TestServer, job_id: &str, state: &str, limit: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (_, body) = s.get(&format!("/v1/jobs/{job_id}")).await;
        if body["data"]["state"] == state {
            return body["data"].clone();
        }
        assert!(
            started.elapsed() < limit,
            "job not {state} after {limit:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_job_whose_worker_stopped_renewing_its_lease_is_queued_again_and_completed() {
    if !have_model() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.worker.lease_ms = 400;
    config.queue.sweep_after_ms = 300;
    let s = TestServer::start_with(config).await;
    // Another worker claimed this job and died without a trace: no message
    // left in any queue, only the row, `processing` under a lease nobody renews.
    let raw = SqliteMetaStore::connect(&format!("sqlite://{}", dir.path().join("pika.db").display()))
        .await
        .expect("store");
    let job_id = uuid::Uuid::now_v7().to_string();
    let request = pika_common::validate::extract(
        serde_json::from_value(crate::harness::conversation("kid", "c-lease", TURNS)).expect("raw"),
    )
    .expect("valid");
    raw.create_job(NewJob {
        job_id: job_id.clone(),
        idempotency_key: format!("lease-{job_id}"),
        request,
    })
    .await
    .expect("create");
    raw.claim_job(&job_id, false, Duration::from_millis(300))
        .await
        .expect("claim")
        .expect("claimable");
    let started = Instant::now();
    let job = s.wait_job(&job_id, Duration::from_secs(20)).await;
    println!(
        "lease expired: job completed {:?} after the dead claim",
        started.elapsed()
    );
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(
        job["attempts"], 2,
        "the dead worker's attempt and the one that completed: {job}"
    );
    assert!(metric(&s, "jobs_requeued_total{reason=\"lease_expired\"}").await >= 1.0);
    s.stop().await;
}

#[tokio::test]
async fn transient_failures_are_retried_over_the_horizon_then_the_failed_job_is_redriven() {
    let (mock, base) = Mock::start(ChatReply::Status(503)).await;
    let s = TestServer::start(|c| {
        use_mock_llm(c, &base);
        c.worker.max_attempts = 10_000;
        c.worker.retry_base_ms = 20;
        c.worker.retry_max_delay_ms = 150;
        c.worker.retry_horizon_ms = 1_500;
    })
    .await;
    let started = Instant::now();
    let job_id = accept(&s, "kid", "c1").await;
    let failed = s.wait_job(&job_id, Duration::from_secs(30)).await;
    let took = started.elapsed();
    println!(
        "LLM answering 503: failed after {took:?}, {} attempts, {} chat calls",
        failed["attempts"],
        mock.chat_calls()
    );
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        took >= Duration::from_millis(1_500),
        "gave up before the horizon: {took:?}"
    );
    assert!(
        failed["attempts"].as_u64().unwrap_or(0) > 3,
        "retried while within the horizon: {failed}"
    );

    // Listed for the admin, then re-driven once the model is back.
    let (status, listing) = s.get("/v1/admin/jobs?state=failed").await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    assert_eq!(listing["data"]["jobs"][0]["job_id"], job_id.as_str(), "{listing}");
    let (status, body) = s.get("/v1/admin/jobs?state=finished").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    mock.set_chat(ChatReply::Content(good_reply()));
    let (status, done) = s.post("/v1/admin/jobs/redrive", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["data"]["job_ids"], json!([job_id]), "{done}");
    assert_eq!(done["data"]["published"], 1, "{done}");
    let job = s.wait_job(&job_id, Duration::from_secs(30)).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["attempts"], 1, "a re-drive starts counting again: {job}");
    // Nothing failed is left: retrying a completed job is a 404.
    let (status, body) = s
        .post(&format!("/v1/admin/jobs/{job_id}/retry"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(metric(&s, "jobs_requeued_total{reason=\"redriven\"}").await >= 1.0);
    s.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_a_job_in_flight_and_turns_readiness_off_first() {
    let (mock, base) = Mock::start(ChatReply::Content(good_reply())).await;
    mock.set_delay(Duration::from_millis(1_500));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    use_mock_llm(&mut config, &base);
    config.server.shutdown_delay_ms = 600;
    let s = TestServer::start_with(config.clone()).await;
    let job_id = accept(&s, "kid", "c1").await;
    wait_state(&s, &job_id, "processing", Duration::from_secs(10)).await;
    s.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (ready, body) = s.send(s.http.get(s.url("/health/ready"))).await;
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "draining");
    // Still serving while the load balancer notices.
    let (status, job) = s.get(&format!("/v1/jobs/{job_id}")).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    let base_url = s.base.clone();
    s.stop().await;
    assert!(
        reqwest::get(format!("{base_url}/health/live")).await.is_err(),
        "stopped accepting"
    );
    let raw = SqliteMetaStore::connect(&format!("sqlite://{}", dir.path().join("pika.db").display()))
        .await
        .expect("store");
    let job = raw.get_job(&job_id).await.expect("get").expect("job");
    assert_eq!(
        job.state,
        pika_common::wire::JobState::Completed,
        "drained, not dropped"
    );
}

#[tokio::test]
async fn shutdown_hands_back_a_job_still_running_at_its_deadline() {
    let (mock, base) = Mock::start(ChatReply::Content(good_reply())).await;
    mock.set_delay(Duration::from_secs(5));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    use_mock_llm(&mut config, &base);
    config.worker.drain_timeout_ms = 300;
    let s = TestServer::start_with(config.clone()).await;
    let job_id = accept(&s, "kid", "c1").await;
    wait_state(&s, &job_id, "processing", Duration::from_secs(10)).await;
    let started = Instant::now();
    let key = s.key.clone();
    s.stop().await;
    let stopped_in = started.elapsed();
    assert!(
        stopped_in < Duration::from_secs(4),
        "waited for the job: {stopped_in:?}"
    );
    let raw = SqliteMetaStore::connect(&format!("sqlite://{}", dir.path().join("pika.db").display()))
        .await
        .expect("store");
    let job = raw.get_job(&job_id).await.expect("get").expect("job");
    assert_eq!(
        (job.state, job.attempts),
        (pika_common::wire::JobState::Queued, 0),
        "handed back, the attempt not counted"
    );
    drop(raw);
    // The next process takes it up.
    mock.set_delay(Duration::ZERO);
    let mut s = TestServer::start_with(config).await;
    s.key = key;
    let job = s.wait_job(&job_id, Duration::from_secs(30)).await;
    assert_eq!(job["state"], "completed", "{job}");
    s.stop().await;
}

#[tokio::test]
async fn a_graph_outage_completes_jobs_and_the_repair_loop_writes_their_graph_later() {
    let Some(falkor) = server_url("PIKA_TEST_FALKORDB_URL") else {
        return;
    };
    if !have_model() {
        return;
    }
    let proxy = FaultProxy::start(&host_port(&falkor)).await;
    let graph_name = unique("pika_repair");
    let via_proxy = through(&falkor, proxy.addr());
    let s = TestServer::start(|c| {
        c.storage.graph_url = Secret::new(via_proxy.clone());
        c.storage.graph_name = graph_name.clone();
        c.storage.graph_timeout_ms = 300;
        c.resilience.breaker_failures = 2;
        c.worker.graph_repair_every_ms = 200;
    })
    .await;
    proxy.cut();
    let turns = [
        ("assistant", "Bạn có thú cưng không?"),
        ("user", "Mình nuôi mèo tên Miu."),
        ("assistant", "Miu thích gì?"),
        ("user", "Miu thích ăn cá lắm."),
    ];
    let job = s.extract_and_wait("kid", "c1", &turns).await;
    assert_eq!(job["state"], "completed", "the graph is optional: {job}");
    assert!(job["result"]["added"].as_u64().unwrap_or(0) >= 1, "{job}");
    let backlog = metric(&s, "graph_repair_backlog").await;
    assert!(backlog >= 1.0, "graph writes queued for repair: {backlog}");
    println!("graph cut: the job completed, {backlog} graph repairs queued");
    let graph = FactNodes::new(&falkor, &graph_name).await;
    assert_eq!(
        graph.count().await,
        0,
        "nothing reached the graph while it was cut"
    );

    proxy.restore();
    let started = Instant::now();
    while metric(&s, "graph_repair_backlog").await > 0.0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "repairs still waiting"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("graph back: repairs written after {:?}", started.elapsed());
    assert!(metric(&s, "graph_repairs_total{result=\"repaired\"}").await >= 1.0);
    let nodes = graph.count().await;
    assert_eq!(
        nodes,
        job["result"]["added"].as_u64().unwrap_or(0),
        "every fact the job added is in the graph after the repair"
    );
    graph.drop_graph().await;
    s.stop().await;
}

/// The `:Fact` nodes of one FalkorDB graph, counted directly.
struct FactNodes {
    conn: redis::aio::MultiplexedConnection,
    name: String,
}

impl FactNodes {
    async fn new(url: &str, name: &str) -> FactNodes {
        let client = redis::Client::open(url.replacen("falkordb://", "redis://", 1)).expect("client");
        FactNodes {
            conn: client.get_multiplexed_async_connection().await.expect("conn"),
            name: name.to_string(),
        }
    }

    async fn count(&self) -> u64 {
        let mut conn = self.conn.clone();
        let reply: redis::Value = redis::cmd("GRAPH.QUERY")
            .arg(&self.name)
            .arg("MATCH (f:Fact) RETURN count(f)")
            .query_async(&mut conn)
            .await
            .unwrap_or(redis::Value::Nil);
        // [header, [[count]], stats]; a graph that does not exist yet has none.
        match reply {
            redis::Value::Array(parts) => match parts.get(1) {
                Some(redis::Value::Array(rows)) => match rows.first() {
                    Some(redis::Value::Array(cells)) => match cells.first() {
                        Some(redis::Value::Int(n)) => *n as u64,
                        _ => 0,
                    },
                    _ => 0,
                },
                _ => 0,
            },
            _ => 0,
        }
    }

    async fn drop_graph(&self) {
        let mut conn = self.conn.clone();
        let _: Result<(), _> = redis::cmd("DEL").arg(&self.name).query_async(&mut conn).await;
    }
}

#[tokio::test]
async fn embedded_commits_reach_the_disk_before_they_return() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let durable = SqliteMetaStore::connect(&url).await.expect("store");
    let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&durable.pool())
        .await
        .expect("pragma");
    assert_eq!(level, 2, "synchronous=FULL: every commit is fsynced");
    let relaxed = SqliteMetaStore::connect_with(&url, false).await.expect("store");
    let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&relaxed.pool())
        .await
        .expect("pragma");
    assert_eq!(level, 1, "storage.durable_commits = false: NORMAL");
}
