//! The OpenAI-compatible extractor and embedder against a local server that
//! speaks the wire format: good replies become facts; malformed, partial or
//! failing replies fail (or retry) the job with a clear error and store nothing.

use crate::harness::TestServer;
use crate::mock_openai::{ChatReply, Mock};
use pika_dataplane::config::Config;
use serde_json::json;

fn use_mock(c: &mut Config, base: &str) {
    c.llm.provider = "openai".into();
    c.llm.base_url = base.into();
    c.llm.model = "test-chat".into();
    c.llm.api_key = pika_dataplane::config::Secret::new("sk-test");
    c.embedding.provider = "openai".into();
    c.embedding.base_url = base.into();
    c.embedding.model = "test-embed".into();
    c.embedding.dimension = 8;
    c.worker.max_attempts = 3;
}

fn good_reply() -> String {
    json!({"facts": [{
        "content": "The child has a dog called Max.",
        "category": "relationship",
        "confidence": 0.95,
        "entities": ["dog", "Max"],
        "tags": ["dog", "pet", "chó", "thú cưng"],
        "source_turns": [1],
        "polarity": "positive"
    }]})
    .to_string()
}

const TURNS: &[(&str, &str)] = &[
    ("assistant", "Do you have a pet?"),
    ("user", "Yes! I have a dog called Max."),
];

#[tokio::test]
async fn llm_reply_becomes_facts_and_embeddings_come_from_the_endpoint() {
    let (mock, base) = Mock::start(ChatReply::Content(good_reply())).await;
    let s = TestServer::start(|c| use_mock(c, &base)).await;
    let job = s.extract_and_wait("kid", "c1", TURNS).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["result"]["added"], 1);
    let request = mock.last_request().expect("chat request");
    assert_eq!(request["model"], "test-chat");
    assert_eq!(request["response_format"]["type"], "json_schema", "{request}");
    assert!(
        request["messages"][1]["content"]
            .as_str()
            .unwrap_or("")
            .contains("I have a dog called Max")
    );
    assert!(mock.embedding_calls() >= 1);

    let (_, body) = s
        .post(
            "/v1/search_facts",
            &json!({"user_id": "kid", "query": "Which pet? dog", "score_threshold": 0.0}),
        )
        .await;
    // The fact and the episode it came from share a turn: one slot, either of them.
    assert!(
        body["data"]["results"][0]["content"]
            .as_str()
            .is_some_and(|c| c.contains("dog called Max")),
        "{body}"
    );
    let (_, list) = s.get("/v1/users/kid/facts").await;
    assert_eq!(
        list["data"]["facts"][0]["content"], "The child has a dog called Max.",
        "the LLM's fact is stored: {list}"
    );
    assert_eq!(
        mock.embedding_calls(),
        2,
        "one batch for extraction, one for the query"
    );

    // The same again is a duplicate: no second fact.
    let again = s.extract_and_wait("kid", "c2", TURNS).await;
    assert_eq!(again["result"]["unchanged"], 1, "{again}");
    s.stop().await;
}

async fn expect_failure(reply: ChatReply, error_part: &str) {
    let (mock, base) = Mock::start(reply).await;
    let s = TestServer::start(|c| use_mock(c, &base)).await;
    let job = s.extract_and_wait("kid", "c1", TURNS).await;
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap_or("");
    assert!(
        error.contains(error_part),
        "error {error:?} should mention {error_part:?}"
    );
    assert_eq!(job["attempts"], 3, "{job}");
    assert_eq!(mock.chat_calls(), 3, "retried up to max_attempts, then stopped");
    let (_, list) = s.get("/v1/users/kid/facts").await;
    assert_eq!(
        list["data"]["facts"],
        json!([]),
        "nothing stored from a bad reply"
    );
    s.stop().await;
}

#[tokio::test]
async fn malformed_content_fails_the_job_clearly() {
    expect_failure(
        ChatReply::Content("Sure! Here are the facts: the child has a dog".into()),
        "not the requested JSON",
    )
    .await;
}

#[tokio::test]
async fn partial_fact_fails_the_job_clearly() {
    let partial =
        json!({"facts": [{"content": "The child has a dog", "category": "relationship"}]}).to_string();
    expect_failure(ChatReply::Content(partial), "not the requested JSON").await;
}

#[tokio::test]
async fn invented_source_turn_fails_the_job_clearly() {
    let invented = good_reply().replace("[1]", "[0]");
    expect_failure(ChatReply::Content(invented), "not a user turn").await;
}

#[tokio::test]
async fn non_json_http_body_fails_the_job_clearly() {
    expect_failure(
        ChatReply::Garbage("<html>bad gateway</html>".into()),
        "not a chat completion",
    )
    .await;
}

#[tokio::test]
async fn transient_server_error_is_retried_then_succeeds() {
    let (mock, base) = Mock::start(ChatReply::Status(503)).await;
    let s = TestServer::start(|c| {
        use_mock(c, &base);
        c.worker.retry_base_ms = 300;
    })
    .await;
    let (_, accepted) = s
        .post(
            "/v1/extract_facts",
            &crate::harness::conversation("kid", "c1", TURNS),
        )
        .await;
    let job_id = accepted["data"]["job_id"].as_str().expect("job").to_string();
    while mock.chat_calls() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    mock.set_chat(ChatReply::Content(good_reply()));
    let job = s.wait_job(&job_id, std::time::Duration::from_secs(30)).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    s.stop().await;
}

#[tokio::test]
async fn changing_the_embedding_model_requires_reindex() {
    if !crate::harness::have_model() {
        return;
    }
    let (_mock, base) = Mock::start(ChatReply::Content(good_reply())).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut remote = crate::harness::test_config(dir.path());
    use_mock(&mut remote, &base);
    let s = TestServer::start_with(remote).await;
    let job = s.extract_and_wait("kid", "c1", TURNS).await;
    assert_eq!(job["state"], "completed", "{job}");
    let key = s.key.clone();
    s.stop().await;

    let local = crate::harness::test_config(dir.path());
    let err = pika_dataplane::app::start(local.clone())
        .await
        .err()
        .expect("start refuses a model mismatch");
    assert!(err.to_string().contains("reindex"), "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pika-dataplane"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("reindex")
        .env("PIKA__EMBEDDING__MODEL_DIR", crate::harness::model_dir())
        .output()
        .expect("cli");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("reindexed 2 memory items (facts and episodes) with all-MiniLM-L6-v2 (384 dims)"),
        "{stdout}"
    );

    let mut s = TestServer::start_with(local).await;
    s.key = key;
    let found = s.search("kid", "What pets does the child have?").await;
    // The fact or the child's own words (its episode), whichever ranks first.
    assert!(
        found.first().is_some_and(|c| c.contains("dog called Max")),
        "{found:?}"
    );
    s.stop().await;
}
