//! An accepted job survives `kill -9` of the server and completes exactly once
//! after restart (real process, real SQLite file).

use crate::mock_openai::{ChatReply, Mock};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc {
    child: Child,
    base: String,
}

fn spawn(data_dir: &std::path::Path, mock_base: &str) -> (Proc, Option<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pika-dataplane"))
        .args(["--data-dir"])
        .arg(data_dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("PIKA__LLM__PROVIDER", "openai")
        .env("PIKA__LLM__BASE_URL", mock_base)
        .env("PIKA__EMBEDDING__PROVIDER", "openai")
        .env("PIKA__EMBEDDING__BASE_URL", mock_base)
        .env("PIKA__EMBEDDING__MODEL", "test-embed")
        .env("PIKA__EMBEDDING__DIMENSION", "8")
        .env("PIKA__WORKER__CONCURRENCY", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut key = None;
    let mut base = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if let Some(k) = crate::harness::bootstrap_key_in(&line) {
            key = Some(k);
        }
        if let Some(b) = line.strip_prefix("listening on ") {
            base = Some(b.trim().to_string());
            break;
        }
    }
    (
        Proc {
            child,
            base: base.expect("listening line"),
        },
        key,
    )
}

async fn get(http: &reqwest::Client, key: &str, url: String) -> Value {
    http.get(url)
        .bearer_auth(key)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn job_accepted_before_kill_completes_once_after_restart() {
    let reply = json!({"facts": [{"content": "The child has a dog called Max.", "category": "relationship",
        "confidence": 0.9, "entities": ["dog", "Max"], "tags": ["dog", "pet"], "source_turns": [1], "polarity": "positive"}]})
    .to_string();
    let (mock, mock_base) = Mock::start(ChatReply::Content(reply)).await;
    // The model hangs: the first job is mid-extraction when the server dies.
    mock.set_delay(Duration::from_secs(120));
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut first, key) = spawn(dir.path(), &mock_base);
    let key = key.expect("admin key on first start");
    let http = reqwest::Client::new();

    let mut job_ids = Vec::new();
    for conv in ["c1", "c2"] {
        let body = crate::harness::conversation(
            "kid",
            conv,
            &[
                ("assistant", "Do you have a pet?"),
                ("user", "Yes! I have a dog called Max."),
            ],
        );
        let resp: Value = http
            .post(format!("{}/v1/extract_facts", first.base))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("json");
        job_ids.push(resp["data"]["job_id"].as_str().expect("job id").to_string());
    }
    let started = Instant::now();
    while mock.chat_calls() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "worker never called the model"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let job = get(&http, &key, format!("{}/v1/jobs/{}", first.base, job_ids[0])).await;
    assert_eq!(job["data"]["state"], "processing", "{job}");
    let job = get(&http, &key, format!("{}/v1/jobs/{}", first.base, job_ids[1])).await;
    assert_eq!(job["data"]["state"], "queued", "{job}");

    first.child.kill().expect("kill -9");
    let _ = first.child.wait();
    mock.set_delay(Duration::ZERO);

    let (mut second, new_key) = spawn(dir.path(), &mock_base);
    assert!(new_key.is_none(), "no second bootstrap key when keys exist");
    let started = Instant::now();
    for id in &job_ids {
        loop {
            let job = get(&http, &key, format!("{}/v1/jobs/{id}", second.base)).await;
            let state = job["data"]["state"].as_str().unwrap_or("").to_string();
            if state == "completed" {
                break;
            }
            assert_ne!(state, "failed", "{job}");
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "job {id} still {state}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let first_job = get(&http, &key, format!("{}/v1/jobs/{}", second.base, job_ids[0])).await;
    assert_eq!(
        first_job["data"]["attempts"], 2,
        "interrupted once, completed once: {first_job}"
    );
    assert_eq!(first_job["data"]["result"]["added"], 1);
    let second_job = get(&http, &key, format!("{}/v1/jobs/{}", second.base, job_ids[1])).await;
    assert_eq!(
        second_job["data"]["result"]["unchanged"], 1,
        "the repeat is a duplicate: {second_job}"
    );
    let facts = get(&http, &key, format!("{}/v1/users/kid/facts", second.base)).await;
    assert_eq!(
        facts["data"]["facts"].as_array().map(Vec::len),
        Some(1),
        "exactly one fact: {facts}"
    );
    let history = get(
        &http,
        &key,
        format!(
            "{}/v1/facts/{}/history",
            second.base,
            facts["data"]["facts"][0]["fact_id"].as_str().unwrap_or("")
        ),
    )
    .await;
    assert_eq!(
        history["data"]["history"].as_array().map(Vec::len),
        Some(1),
        "one ADD: {history}"
    );

    let _ = second.child.kill();
    let _ = second.child.wait();
}
