//! Mem0's own clients against PIKA (DESIGN.md §13): the official `mem0ai`
//! Python clients (2.2.1 runs `tests/mem0/client_v2.py`; 1.0.11 and
//! 0.1.118 run `client_v1.py`) and the npm client 3.3.1
//! (`client_npm.js`), each exercising every method it has that PIKA
//! serves, asserting on results, against a real embedded dataplane,
//! directly and through a sidecar. The clients come from
//! `scripts/mem0-clients.sh` (`PIKA_TEST_MEM0_PY_<version>`: each
//! virtualenv's python; `PIKA_TEST_MEM0_NPM_3_3_1`: the node_modules folder
//! holding the npm package); without them the test skips, except in CI.

use pika_dataplane::app;
use pika_dataplane::config::{Config, Secret};
use pika_sidecar::config::SidecarConfig;
use pika_tests::support::{have_model, model_dir, server_url};
use std::path::Path;
use std::process::Command;

/// One client: the program that runs its script, and the environment it needs.
#[derive(Clone)]
struct Client {
    program: String,
    script: &'static str,
    env: Vec<(&'static str, String)>,
}

fn run_client(client: &Client, url: &str, key: &str) -> String {
    let out = Command::new(&client.program)
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("mem0")
                .join(client.script),
        )
        .envs(client.env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("PIKA_URL", url)
        .env("PIKA_KEY", key)
        // The clients report usage to Mem0's analytics unless told not to
        // (both read "false").
        .env("MEM0_TELEMETRY", "false")
        // The scripts may erase every user of the tenant: this server is theirs.
        .env("PIKA_MEM0_RESET", "1")
        .output()
        .expect("the client runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} against {url} failed ({}):\n{stdout}\n{stderr}",
        client.script,
        out.status
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mem0_python_clients_work_directly_and_through_the_sidecar() {
    let mut clients = Vec::new();
    for (var, script) in [
        ("PIKA_TEST_MEM0_PY_2_2_1", "client_v2.py"),
        ("PIKA_TEST_MEM0_PY_1_0_11", "client_v1.py"),
        ("PIKA_TEST_MEM0_PY_0_1_118", "client_v1.py"),
    ] {
        let Some(python) = server_url(var) else {
            return;
        };
        clients.push(Client {
            program: python,
            script,
            env: Vec::new(),
        });
    }
    let Some(node_modules) = server_url("PIKA_TEST_MEM0_NPM_3_3_1") else {
        return;
    };
    clients.push(Client {
        program: "node".into(),
        script: "client_npm.js",
        env: vec![("NODE_PATH", node_modules)],
    });
    let Some(redis) = server_url("PIKA_TEST_REDIS_URL") else {
        return;
    };
    if !have_model() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.storage.data_dir = dir.path().to_path_buf();
    config.embedding.model_dir = model_dir();
    config.cache.redis_url = Secret::new(redis.clone());
    let running = app::start(config.clone()).await.expect("dataplane starts");
    let key = running.bootstrap_admin_key.clone().expect("admin key");
    let direct = format!("http://{}", running.addr);
    let mut sidecar_config = SidecarConfig {
        listen: "127.0.0.1:0".into(),
        upstream: direct.clone(),
        embedding: config.embedding.clone(),
        ..Default::default()
    };
    sidecar_config.redis.url = Secret::new(redis);
    let sidecar = pika_sidecar::start(sidecar_config, Default::default())
        .await
        .expect("sidecar starts");
    let via_sidecar = format!("http://{}", sidecar.addr);

    for client in clients {
        for url in [direct.clone(), via_sidecar.clone()] {
            let (client, key, via) = (client.clone(), key.clone(), url.clone());
            let out = tokio::task::spawn_blocking(move || run_client(&client, &url, &key))
                .await
                .expect("client task");
            println!("{} (via {via})", out.trim());
            assert!(out.contains("checks passed"), "{out}");
        }
    }
    sidecar.stop().await;
    running.shutdown().await;
}
