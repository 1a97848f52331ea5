//! The API and the extraction worker as two processes on real backends
//! (PostgreSQL metadata, RabbitMQ queue, Redis signals, FalkorDB graph, Milvus
//! vectors): the headline scenario passes unchanged, killing the worker mid-run
//! loses no job, and losing an optional dependency degrades, never fails.
//!
//! Over 400 lines on purpose: one two-process scenario and its fault steps,
//! which share the processes they start.

use crate::backends::{server_url, unique};
use crate::harness::{TestServer, have_model, model_dir};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `pika-dataplane ARGS` with the environment; returns it and the stdout lines up to `until`.
pub(crate) fn spawn(args: &[&str], env: &[(String, String)], until: &str) -> (Proc, Vec<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pika-dataplane"));
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut proc = Proc(cmd.spawn().expect("binary starts"));
    let stdout = proc.0.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        let done = line.starts_with(until);
        lines.push(line);
        if done {
            return (proc, lines);
        }
    }
    panic!("process exited before printing {until:?}: {lines:?}");
}

/// A private PostgreSQL schema, created and migrated, named in a URL that both processes use.
pub(crate) struct PrivateSchema {
    pub(crate) store: pika_dataplane::store::PostgresMetaStore,
    pub(crate) name: String,
    pub(crate) url: String,
}

impl PrivateSchema {
    pub(crate) async fn new(pg: &str, prefix: &str) -> PrivateSchema {
        let name = unique(prefix);
        let store = pika_dataplane::store::PostgresMetaStore::connect(pg, Some(&name), 2)
            .await
            .expect("postgres");
        let sep = if pg.contains('?') { '&' } else { '?' };
        let url = format!("{pg}{sep}options=-c%20search_path%3D{name}");
        PrivateSchema { store, name, url }
    }

    pub(crate) async fn drop_schema(self) {
        sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", self.name))
            .execute(&self.store.pool())
            .await
            .expect("drop schema");
    }
}

/// A client for the test's own queues (probing and cleanup).
pub(crate) async fn queue_client(amqp: &str, name: &str) -> pika_dataplane::queue::RabbitMqQueue {
    pika_dataplane::queue::RabbitMqQueue::connect(pika_dataplane::queue::RabbitMqOptions {
        url: amqp.to_string(),
        queue: name.to_string(),
        prefetch: 1,
        publish_timeout: std::time::Duration::from_secs(5),
        ca_file: Default::default(),
    })
    .await
    .expect("rabbitmq")
}

/// The environment shared by a test's API and worker processes: a private
/// PostgreSQL schema, a data dir and a queue of its own, workers out of process.
pub(crate) fn process_env(
    meta_url: &str,
    data_dir: &std::path::Path,
    amqp: &str,
    queue_name: &str,
) -> Vec<(String, String)> {
    [
        ("PIKA__STORAGE__META_URL", meta_url.to_string()),
        ("PIKA__STORAGE__DATA_DIR", data_dir.display().to_string()),
        ("PIKA__QUEUE__URL", amqp.to_string()),
        ("PIKA__QUEUE__NAME", queue_name.to_string()),
        ("PIKA__EMBEDDING__MODEL_DIR", model_dir().display().to_string()),
        ("PIKA__WORKER__IN_PROCESS", "false".to_string()),
        ("PIKA__WORKER__LISTEN", "127.0.0.1:0".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Deletes a test's queues (`NAME`, `NAME.retry`, `NAME.dead`).
pub(crate) async fn delete_test_queues(amqp: &str, name: &str) {
    queue_client(amqp, name)
        .await
        .delete_queues()
        .await
        .expect("cleanup");
}

/// Starts `serve` and returns it with a client holding the printed admin key.
pub(crate) fn start_api(env: &[(String, String)]) -> (Proc, TestServer) {
    let (api, lines) = spawn(&["serve", "--listen", "127.0.0.1:0"], env, "listening on ");
    let key = lines
        .iter()
        .find_map(|l| crate::harness::bootstrap_key_in(l))
        .expect("admin key");
    let base = lines
        .last()
        .and_then(|l| l.strip_prefix("listening on "))
        .expect("address")
        .to_string();
    (api, TestServer::remote(&base, &key))
}

#[tokio::test]
async fn api_and_worker_processes_on_real_backends() {
    let (Some(pg), Some(amqp), Some(redis), Some(falkor), Some(milvus)) = (
        server_url("PIKA_TEST_POSTGRES_URL"),
        server_url("PIKA_TEST_RABBITMQ_URL"),
        server_url("PIKA_TEST_REDIS_URL"),
        server_url("PIKA_TEST_FALKORDB_URL"),
        server_url("PIKA_TEST_MILVUS_URL"),
    ) else {
        return;
    };
    if !have_model() {
        return;
    }
    let schema = PrivateSchema::new(&pg, "pika_split").await;
    let collections = crate::milvus::PrivateCollections::new(&milvus);
    let data = tempfile::tempdir().expect("tempdir");
    let queue_name = unique("pika.split.jobs");
    let env: Vec<(String, String)> = process_env(&schema.url, data.path(), &amqp, &queue_name)
        .into_iter()
        .chain([
            ("PIKA__CACHE__REDIS_URL".to_string(), redis),
            ("PIKA__STORAGE__GRAPH_URL".to_string(), falkor),
            ("PIKA__STORAGE__GRAPH_NAME".to_string(), unique("pika_split")),
        ])
        .chain(collections.env())
        .collect();
    let (_api, s) = start_api(&env);
    let (_worker, _) = spawn(&["worker"], &env, "worker health on ");

    crate::api::pets_scenario(&s).await;
    let (_, health) = s.get("/health").await;
    let vectors = &health["checks"].as_array().expect("checks")[1];
    assert_eq!(vectors["name"], "vectors", "{health}");
    assert_eq!(vectors["status"], "up", "Milvus answers: {health}");

    // The API runs no worker: with the worker gone, jobs wait (not lost) and
    // complete once a new worker starts.
    drop(_worker);
    let (status, body) = s
        .post(
            "/v1/extract_facts",
            &crate::harness::conversation(
                "kid-late",
                "c-late",
                &[("assistant", "Hi"), ("user", "I love drawing dinosaurs.")],
            ),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    let job_id = body["data"]["job_id"].as_str().expect("job").to_string();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, job) = s.get(&format!("/v1/jobs/{job_id}")).await;
    assert_eq!(job["data"]["state"], "queued", "{job}");
    let (_worker2, _) = spawn(&["worker"], &env, "worker health on ");
    let job = s.wait_job(&job_id, std::time::Duration::from_secs(30)).await;
    assert_eq!(job["state"], "completed", "{job}");
    // The fact or the child's own words (its episode): one slot, the better one.
    let found = s.search("kid-late", "dinosaurs").await;
    assert!(
        found.first().is_some_and(|c| c.contains("drawing dinosaurs")),
        "{found:?}"
    );

    schema.drop_schema().await;
    collections.drop().await;
    delete_test_queues(&amqp, &queue_name).await;
}

#[tokio::test]
async fn search_answers_without_relations_when_the_graph_is_down() {
    if !have_model() {
        return;
    }
    // Start on a healthy FalkorDB graph, then break it under the running service.
    let Some(falkor) = server_url("PIKA_TEST_FALKORDB_URL") else {
        return;
    };
    let graph = unique("pika_down");
    let s = TestServer::start(|c| {
        c.storage.graph_url = pika_dataplane::config::Secret::new(falkor.clone());
        c.storage.graph_name = graph.clone();
        c.storage.graph_timeout_ms = 300;
    })
    .await;
    let job = s
        .extract_and_wait(
            "kid",
            "c1",
            &[
                ("assistant", "Pets?"),
                ("user", "I have a cat named Miu. I love my cat."),
            ],
        )
        .await;
    assert_eq!(job["state"], "completed", "{job}");
    let (_, body) = s
        .post(
            "/v1/search_facts",
            &serde_json::json!({"user_id": "kid", "query": "cat"}),
        )
        .await;
    assert_eq!(body["data"]["degraded"], false, "{body}");
    // Make every graph call fail: a key of the wrong type under the graph's name.
    let client = redis::Client::open(falkor.replacen("falkordb://", "redis://", 1)).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("conn");
    let _: () = redis::cmd("DEL")
        .arg(&graph)
        .query_async(&mut conn)
        .await
        .expect("del");
    let _: () = redis::cmd("SET")
        .arg(&graph)
        .arg("not a graph")
        .query_async(&mut conn)
        .await
        .expect("set");
    let (status, body) = s
        .post(
            "/v1/search_facts",
            &serde_json::json!({"user_id": "kid", "query": "cat"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body["data"]["degraded"], true, "{body}");
    assert!(body["data"]["results_count"].as_u64().unwrap_or(0) >= 1, "{body}");
    assert_eq!(body["data"]["results"][0]["related_facts"], serde_json::json!([]));
    let _: () = redis::cmd("DEL")
        .arg(&graph)
        .query_async(&mut conn)
        .await
        .expect("cleanup");
    s.stop().await;
}

#[tokio::test]
async fn message_for_a_missing_job_is_dead_lettered_once() {
    let Some(amqp) = server_url("PIKA_TEST_RABBITMQ_URL") else {
        return;
    };
    if !have_model() {
        return;
    }
    let name = unique("pika.poison.jobs");
    let s = TestServer::start(|c| {
        c.queue.url = pika_dataplane::config::Secret::new(amqp.clone());
        c.queue.name = name.clone();
    })
    .await;
    let probe = queue_client(&amqp, &name).await;
    use pika_dataplane::ports::JobQueue;
    probe
        .publish(&uuid::Uuid::now_v7().to_string())
        .await
        .expect("publish missing job");
    probe
        .publish("definitely not a job id")
        .await
        .expect("publish garbage");
    let started = std::time::Instant::now();
    while probe.dead_letter_depth().await.expect("depth") < 2 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "not dead-lettered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Never requeued: after a while, still exactly two dead letters and nothing waiting.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (dead, waiting) = (
        probe.dead_letter_depth().await.expect("depth"),
        probe.depth().await.expect("depth"),
    );
    println!("poison messages: dead-lettered {dead}, still queued {waiting}");
    assert_eq!((dead, waiting), (2, 0));
    s.stop().await;
    probe.delete_queues().await.expect("cleanup");
}

#[tokio::test]
async fn worker_killed_mid_job_completes_once_after_redelivery() {
    let (Some(pg), Some(amqp)) = (
        server_url("PIKA_TEST_POSTGRES_URL"),
        server_url("PIKA_TEST_RABBITMQ_URL"),
    ) else {
        return;
    };
    let reply = serde_json::json!({"facts": [{"content": "The child has a dog called Max.", "category": "relationship",
        "confidence": 0.9, "entities": ["dog", "Max"], "tags": ["dog", "pet"], "source_turns": [1], "polarity": "positive"}]})
    .to_string();
    let (mock, mock_base) =
        crate::mock_openai::Mock::start(crate::mock_openai::ChatReply::Content(reply)).await;
    mock.set_delay(std::time::Duration::from_secs(120));
    let schema = PrivateSchema::new(&pg, "pika_kill").await;
    let data = tempfile::tempdir().expect("tempdir");
    let queue_name = unique("pika.kill.jobs");
    let env: Vec<(String, String)> = vec![
        ("PIKA__STORAGE__META_URL".into(), schema.url.clone()),
        (
            "PIKA__STORAGE__DATA_DIR".into(),
            data.path().display().to_string(),
        ),
        ("PIKA__QUEUE__URL".into(), amqp.clone()),
        ("PIKA__QUEUE__NAME".into(), queue_name.clone()),
        ("PIKA__WORKER__IN_PROCESS".into(), "false".into()),
        ("PIKA__WORKER__LISTEN".into(), "127.0.0.1:0".into()),
        ("PIKA__WORKER__CONCURRENCY".into(), "1".into()),
        ("PIKA__LLM__PROVIDER".into(), "openai".into()),
        ("PIKA__LLM__BASE_URL".into(), mock_base.clone()),
        ("PIKA__EMBEDDING__PROVIDER".into(), "openai".into()),
        ("PIKA__EMBEDDING__BASE_URL".into(), mock_base),
        ("PIKA__EMBEDDING__MODEL".into(), "test-embed".into()),
        ("PIKA__EMBEDDING__DIMENSION".into(), "8".into()),
    ];
    let (_api, s) = start_api(&env);
    let (worker, _) = spawn(&["worker"], &env, "worker health on ");

    let turns = [
        ("assistant", "Do you have a pet?"),
        ("user", "Yes! I have a dog called Max."),
    ];
    let (_, accepted) = s
        .post(
            "/v1/extract_facts",
            &crate::harness::conversation("kid", "c1", &turns),
        )
        .await;
    let job_id = accepted["data"]["job_id"].as_str().expect("job").to_string();
    let started = std::time::Instant::now();
    while mock.chat_calls() == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "worker never reached the model"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(worker); // SIGKILL mid-extraction: the message is unacked, the job row says processing
    mock.set_delay(std::time::Duration::ZERO);
    let (_worker2, _) = spawn(&["worker"], &env, "worker health on ");
    let job = s.wait_job(&job_id, std::time::Duration::from_secs(30)).await;
    println!(
        "killed mid-job: state {}, attempts {}",
        job["state"], job["attempts"]
    );
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["attempts"], 2, "redelivered once: {job}");
    let (_, facts) = s.get("/v1/users/kid/facts").await;
    assert_eq!(
        facts["data"]["facts"].as_array().map(Vec::len),
        Some(1),
        "exactly one fact: {facts}"
    );

    schema.drop_schema().await;
    delete_test_queues(&amqp, &queue_name).await;
}

#[tokio::test]
async fn extract_and_search_keep_working_while_redis_is_down() {
    if !have_model() {
        return;
    }
    // A private Redis on a free port, so stopping it disturbs nothing else.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let mut redis_server = Proc(
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH"),
    );
    let url = format!("redis://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    while redis::Client::open(url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "redis did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let s = TestServer::start(|c| c.cache.redis_url = pika_dataplane::config::Secret::new(url.clone())).await;
    let turns = [("assistant", "Hi"), ("user", "I have a cat named Miu.")];
    assert_eq!(
        s.extract_and_wait("kid", "c1", &turns).await["state"],
        "completed"
    );
    let mut conn = redis::Client::open(url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let generation: u64 = redis::cmd("GET")
        .arg("pika:gen:kid")
        .query_async(&mut conn)
        .await
        .expect("get");
    // Bumped before and after the job's commit (see service::worker).
    assert_eq!(generation, 2, "the write was announced");

    let _ = redis_server.0.kill();
    let _ = redis_server.0.wait();
    let turns = [("assistant", "Hi"), ("user", "I love drawing dinosaurs.")];
    let job = s.extract_and_wait("kid", "c2", &turns).await;
    assert_eq!(job["state"], "completed", "{job}");
    let results = s.search("kid", "dinosaurs").await;
    println!(
        "redis down: extract {}, search returned {} results",
        job["state"],
        results.len()
    );
    assert!(
        results.first().is_some_and(|c| c.contains("drawing dinosaurs")),
        "{results:?}"
    );
    s.stop().await;
}
