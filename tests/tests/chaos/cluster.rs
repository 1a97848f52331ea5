//! The system under test, as in production but on one machine: the API
//! (`pika-dataplane serve`, no in-process workers) and one worker
//! (`pika-dataplane worker`) as processes that can be killed with SIGKILL,
//! a sidecar in front of the API, on the machine's PostgreSQL, Redis and
//! RabbitMQ and the project's Milvus and FalkorDB. Everything is private to
//! the run: a PostgreSQL schema, Milvus collections, a graph, queue names.
//! The broker is reached through a fault proxy, so its network can be cut.

use pika_dataplane::config::Secret;
use pika_sidecar::config::SidecarConfig;
use pika_tests::fault_proxy::{FaultProxy, host_port, through};
use pika_tests::support::model_dir;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed with SIGKILL when dropped.
pub struct Proc(Child);

impl Proc {
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The workspace's binary `name`, built beside this test (`cargo test
/// --workspace` builds every package's binaries; `scripts/chaos.sh` builds
/// them first).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target profile dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --release -p pika-dataplane -p pika-sidecar`",
        path.display()
    );
    path
}

/// Starts `pika-dataplane ARGS`; returns once it printed a line starting
/// with `until`, with the lines up to it. Its stderr goes to `log`.
pub fn spawn(
    args: &[&str],
    env: &[(String, String)],
    until: &str,
    log: &std::path::Path,
) -> (Proc, Vec<String>) {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut cmd = Command::new(binary("pika-dataplane"));
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("pika-dataplane starts");
    let stdout = child.stdout.take().expect("stdout");
    let proc = Proc(child);
    let mut lines = Vec::new();
    let mut reader = BufReader::new(stdout);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => panic!(
                "pika-dataplane {args:?} exited before printing {until:?}: {lines:?} (see {})",
                log.display()
            ),
            Ok(_) => {}
        }
        let line = line.trim_end().to_string();
        let done = line.starts_with(until);
        lines.push(line);
        if done {
            // Keep draining stdout so the process never blocks on a full pipe.
            std::thread::spawn(move || for _ in reader.lines() {});
            return (proc, lines);
        }
    }
}

/// Where the backends are (the `PIKA_TEST_*` variables).
#[derive(Clone)]
pub struct Backends {
    pub postgres: String,
    pub redis: String,
    pub rabbitmq: String,
    pub milvus: String,
    pub falkordb: String,
}

pub struct Cluster {
    pub run: String,
    pub env: Vec<(String, String)>,
    api: Option<Proc>,
    worker: Option<Proc>,
    /// The API's fixed address (it comes back on the same one after a kill).
    pub api_base: String,
    pub sidecar_base: String,
    pub key: String,
    pub broker: FaultProxy,
    pub http: reqwest::Client,
    pub log: PathBuf,
    sidecar: Option<pika_sidecar::Running>,
    schema: String,
    backends: Backends,
    _data: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Cluster {
    pub async fn start(backends: &Backends, run: &str) -> Cluster {
        let data = tempfile::tempdir().expect("tempdir");
        let schema = format!("chaos_{run}");
        // The schema is created (and migrated) by the API on first start.
        let sep = if backends.postgres.contains('?') { '&' } else { '?' };
        let meta_url = format!("{}{sep}options=-c%20search_path%3D{schema}", backends.postgres);
        create_schema(&backends.postgres, &schema).await;
        let broker = FaultProxy::start(&host_port(&backends.rabbitmq)).await;
        let api_port = free_port();
        let key_file = data.path().join("admin.key");
        let env: Vec<(String, String)> = [
            ("PIKA__SERVER__LISTEN", format!("127.0.0.1:{api_port}")),
            ("PIKA__STORAGE__META_URL", meta_url),
            ("PIKA__STORAGE__DATA_DIR", data.path().display().to_string()),
            ("PIKA__STORAGE__GRAPH_URL", backends.falkordb.clone()),
            ("PIKA__STORAGE__GRAPH_NAME", format!("chaos_{run}")),
            ("PIKA__VECTOR__URL", backends.milvus.clone()),
            ("PIKA__VECTOR__COLLECTION_PREFIX", format!("chaos_{run}")),
            ("PIKA__VECTOR__NUM_PARTITIONS", "4".into()),
            ("PIKA__QUEUE__URL", through(&backends.rabbitmq, broker.addr())),
            ("PIKA__QUEUE__NAME", format!("chaos.{run}")),
            ("PIKA__QUEUE__SWEEP_AFTER_MS", "5000".into()),
            ("PIKA__CACHE__REDIS_URL", backends.redis.clone()),
            ("PIKA__EMBEDDING__MODEL_DIR", model_dir().display().to_string()),
            ("PIKA__WORKER__IN_PROCESS", "false".into()),
            ("PIKA__WORKER__LISTEN", "127.0.0.1:0".into()),
            // As the operator deploys a worker (MemoryService default): a job
            // mostly waits on Milvus's time tick, so 8 in flight.
            ("PIKA__WORKER__CONCURRENCY", "8".into()),
            ("PIKA__WORKER__LEASE_MS", "10000".into()),
            // Recovery is measured in seconds: retry often, within the default horizon.
            ("PIKA__WORKER__RETRY_MAX_DELAY_MS", "5000".into()),
            ("PIKA__WORKER__GRAPH_REPAIR_EVERY_MS", "1000".into()),
            ("PIKA__AUTH__BOOTSTRAP_KEY_FILE", key_file.display().to_string()),
            ("PIKA__RESILIENCE__BREAKER_OPEN_MIN_MS", "1000".into()),
            ("PIKA__RESILIENCE__BREAKER_OPEN_MAX_MS", "4000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let log = data.path().join("processes.log");
        let mut cluster = Cluster {
            run: run.to_string(),
            env,
            api: None,
            worker: None,
            api_base: format!("http://127.0.0.1:{api_port}"),
            sidecar_base: String::new(),
            key: String::new(),
            broker,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            log,
            sidecar: None,
            schema,
            backends: backends.clone(),
            _data: data,
        };
        cluster.start_api();
        cluster.key = std::fs::read_to_string(&key_file)
            .expect("bootstrap admin key")
            .trim()
            .to_string();
        cluster.start_worker();
        cluster.start_sidecar().await;
        cluster
    }

    pub fn start_api(&mut self) {
        let (p, _) = spawn(&["serve"], &self.env, "listening on ", &self.log);
        self.api = Some(p);
    }

    pub fn kill_api(&mut self) {
        if let Some(mut p) = self.api.take() {
            p.kill9();
        }
    }

    pub fn start_worker(&mut self) {
        let (p, _) = spawn(&["worker"], &self.env, "worker health on ", &self.log);
        self.worker = Some(p);
    }

    pub fn kill_worker(&mut self) {
        if let Some(mut p) = self.worker.take() {
            p.kill9();
        }
    }

    async fn start_sidecar(&mut self) {
        let mut config = SidecarConfig {
            listen: "127.0.0.1:0".into(),
            upstream: self.api_base.clone(),
            ..Default::default()
        };
        config.embedding.model_dir = model_dir();
        config.redis.url = Secret::new(self.backends.redis.clone());
        let running = pika_sidecar::start(config, Default::default())
            .await
            .expect("sidecar starts");
        self.sidecar_base = format!("http://{}", running.addr);
        self.sidecar = Some(running);
    }

    /// Removes what the run stored (schema, collections, graph, queues).
    pub async fn clean_up(mut self) {
        self.kill_worker();
        self.kill_api();
        if let Some(s) = self.sidecar.take() {
            s.stop().await;
        }
        drop_schema(&self.backends.postgres, &self.schema).await;
        let queue = pika_dataplane::queue::RabbitMqQueue::connect(pika_dataplane::queue::RabbitMqOptions {
            url: self.backends.rabbitmq.clone(),
            queue: format!("chaos.{}", self.run),
            prefetch: 1,
            publish_timeout: Duration::from_secs(5),
            ca_file: Default::default(),
        })
        .await;
        if let Ok(q) = queue {
            let _ = q.delete_queues().await;
        }
        drop_graph(&self.backends.falkordb, &format!("chaos_{}", self.run)).await;
        drop_collections(&self.backends.milvus, &format!("chaos_{}", self.run)).await;
    }
}

async fn pg_pool(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("postgres")
}

async fn create_schema(url: &str, schema: &str) {
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .execute(&pg_pool(url).await)
        .await
        .expect("create schema");
}

async fn drop_schema(url: &str, schema: &str) {
    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&pg_pool(url).await)
        .await;
}

async fn drop_graph(url: &str, graph: &str) {
    if let Ok(client) = redis::Client::open(url.replacen("falkordb://", "redis://", 1))
        && let Ok(mut conn) = client.get_multiplexed_async_connection().await
    {
        let _: Result<(), _> = redis::cmd("DEL").arg(graph).query_async(&mut conn).await;
    }
}

async fn drop_collections(url: &str, prefix: &str) {
    use pika_dataplane::store::{IndexSpec, MilvusIndex, MilvusOptions};
    let _ = MilvusIndex::drop_prefix(MilvusOptions {
        url: url.to_string(),
        token: String::new(),
        ca_file: Default::default(),
        collection_prefix: prefix.to_string(),
        num_partitions: 1,
        index: IndexSpec::Flat,
        timeout: Duration::from_secs(10),
        visible_timeout: Duration::from_secs(1),
    })
    .await;
}
