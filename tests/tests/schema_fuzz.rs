//! Schemathesis, a schema-driven fuzzer, against a real embedded dataplane
//! through its own `/openapi.json` (issue 13): every documented operation
//! (native and Mem0), positive and negative cases, checking that nothing
//! answers 5xx and that every answer matches the schema of its status code.
//! The fuzzer comes from `scripts/schemathesis.sh`
//! (`PIKA_TEST_SCHEMATHESIS`); without it the test skips, except in CI.
//! `PIKA_SCHEMA_FUZZ_EXAMPLES` sets the cases per operation (default 30).

use pika_dataplane::app;
use pika_dataplane::config::Config;
use pika_tests::support::{have_model, model_dir, server_url};
use serde_json::{Value, json};
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let Some(st) = server_url("PIKA_TEST_SCHEMATHESIS") else {
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
    let running = app::start(config).await.expect("dataplane starts");
    let key = running.bootstrap_admin_key.clone().expect("admin key");
    let base = format!("http://{}", running.addr);
    // Some memories, so reads have something to find.
    let http = reqwest::Client::new();
    for text in ["I have a cat named Miu", "Mình thích ăn phở"] {
        let resp = http
            .post(format!("{base}/v3/memories/add/"))
            .header("Authorization", format!("Token {key}"))
            .json(&json!({"messages": text, "user_id": "kid-1", "infer": false, "async_mode": false}))
            .send()
            .await
            .expect("seed");
        assert!(resp.status().is_success(), "seed: {}", resp.status());
    }
    let examples = std::env::var("PIKA_SCHEMA_FUZZ_EXAMPLES").unwrap_or_else(|_| "30".into());
    let report = dir.path().join("report.json");
    let (st, base_c, key_c, report_c) = (st.clone(), base.clone(), key.clone(), report.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&st)
            .args(["run", &format!("{base_c}/openapi.json"), "--url", &base_c])
            .args(["--header", &format!("Authorization: Bearer {key_c}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
            ])
            .args(["--max-examples", &examples, "--seed", "13", "--workers", "2"])
            .args(["--phases", "examples,coverage,fuzzing", "--no-shrink"])
            .args(["--report", "json", "--report-json-path"])
            .arg(&report_c)
            .env("NO_COLOR", "1")
            .output()
            .expect("schemathesis runs")
    })
    .await
    .expect("fuzz task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tail: String = stdout
        .lines()
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    println!("{tail}");
    running.shutdown().await;
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Ok(text) = std::fs::read_to_string(&report)
        && let Ok(v) = serde_json::from_str::<Value>(&text)
    {
        println!("schemathesis report summary: {}", v.get("summary").unwrap_or(&v));
    }
}
