//! Memory that remembers (issue 10), through HTTP: episodes answer where no
//! fact was extracted, relative dates resolve in both languages, the user's
//! name is read as the user, the newest state ranks first, and an LLM's
//! DELETE decision retires a fact without storing a new one.

use crate::harness::{TestServer, have_model};
use crate::mock_openai::{ChatReply, Mock};
use serde_json::{Value, json};

/// Searches with threshold 0 and returns the results array.
async fn results(s: &TestServer, user: &str, query: &str, limit: usize) -> Vec<Value> {
    let (status, body) = s
        .post(
            "/v1/search_facts",
            &json!({"user_id": user, "query": query, "limit": limit, "score_threshold": 0.0}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    body["data"]["results"].as_array().cloned().unwrap_or_default()
}

async fn extract_at(s: &TestServer, user: &str, conv: &str, at: &str, turns: &[(&str, &str)]) -> Value {
    let mut body = crate::harness::conversation(user, conv, turns);
    body["occurred_at"] = json!(at);
    let (status, reply) = s.post("/v1/extract_facts", &body).await;
    assert_eq!(status.as_u16(), 202, "{reply}");
    let job = reply["data"]["job_id"].as_str().expect("job id").to_string();
    let done = s.wait_job(&job, std::time::Duration::from_secs(60)).await;
    assert_eq!(done["state"], "completed", "{done}");
    done
}

#[tokio::test]
async fn an_answer_to_the_robots_question_is_found_as_an_episode() {
    if !have_model() {
        return;
    }
    let s = TestServer::start(|_| {}).await;
    let job = extract_at(
        &s,
        "kid-ep",
        "c1",
        "2026-09-13T18:30:00+07:00",
        &[
            ("assistant", "Bin có nuôi con vật nào không?"),
            ("user", "Có, tên nó là Mướp á"),
            ("assistant", "Mướp mấy tuổi rồi?"),
            ("user", "hai tuổi"),
        ],
    )
    .await;
    assert_eq!(job["result"]["episodes"], 2, "{job}");
    let r = results(&s, "kid-ep", "thú cưng của bé tên gì", 3).await;
    let hit = r
        .iter()
        .find(|h| h["content"] == "Có, tên nó là Mướp á")
        .unwrap_or_else(|| panic!("episode not in top 3: {r:?}"));
    assert_eq!(hit["kind"], "episode");
    assert_eq!(hit["context"], "Bin có nuôi con vật nào không?");
    assert_eq!(hit["conversation_id"], "c1");
    assert_eq!(hit["source_turns"], json!([0, 1]));
    s.stop().await;
}

#[tokio::test]
async fn relative_dates_resolve_in_vietnamese_and_english() {
    if !have_model() {
        return;
    }
    let s = TestServer::start(|_| {}).await;
    // Sunday 13 September 2026, evening in Vietnam.
    extract_at(
        &s,
        "kid-date",
        "c1",
        "2026-09-13T18:30:00+07:00",
        &[
            ("assistant", "Cuối tuần của con thế nào?"),
            ("user", "Hôm qua con đi sở thú với ba, con thấy con voi to lắm"),
            ("assistant", "And what else?"),
            ("user", "Two days ago I lost my first tooth!"),
        ],
    )
    .await;
    for (query, needle, day) in [
        ("Bé đi sở thú khi nào?", "sở thú", "2026-09-12"),
        ("When did the child lose a tooth?", "tooth", "2026-09-11"),
    ] {
        let r = results(&s, "kid-date", query, 3).await;
        let hit = r
            .iter()
            .find(|h| h["content"].as_str().is_some_and(|c| c.contains(needle)))
            .unwrap_or_else(|| panic!("{query}: {r:?}"));
        let at = hit["occurred_at"].as_str().expect("occurred_at");
        assert!(at.starts_with(day), "{query}: occurred_at {at}, want {day}");
    }
    s.stop().await;
}

#[tokio::test]
async fn the_users_name_in_a_query_means_the_user() {
    if !have_model() {
        return;
    }
    let s = TestServer::start(|_| {}).await;
    // The robot greets the child by name in a turn about football; the
    // child's fear is stated elsewhere. Read literally, "Na" matches the
    // greeting; read as the user, the query is about the fear.
    extract_at(
        &s,
        "kid-name",
        "c1",
        "2026-09-13T18:30:00+07:00",
        &[
            ("assistant", "Hi Na! Na, do you play football with Na's friends?"),
            ("user", "no"),
            ("assistant", "What makes you nervous at night?"),
            ("user", "My name is Na and I'm scared of the dark"),
        ],
    )
    .await;
    let r = results(&s, "kid-name", "What is Na scared of?", 1).await;
    assert!(
        r[0]["content"].as_str().is_some_and(|c| c.contains("dark")),
        "{r:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_newest_state_ranks_first_and_the_old_one_stays() {
    if !have_model() {
        return;
    }
    let s = TestServer::start(|_| {}).await;
    extract_at(
        &s,
        "kid-new",
        "c1",
        "2026-09-01T18:00:00+07:00",
        &[
            ("assistant", "Con thích màu gì nhất?"),
            ("user", "Con thích màu hồng nhất"),
        ],
    )
    .await;
    extract_at(
        &s,
        "kid-new",
        "c2",
        "2026-09-20T18:00:00+07:00",
        &[
            ("assistant", "Con còn thích màu hồng không?"),
            ("user", "Giờ con thích màu xanh dương nhất rồi"),
        ],
    )
    .await;
    let r = results(&s, "kid-new", "Bé thích màu gì nhất?", 5).await;
    assert!(
        r[0]["content"].as_str().is_some_and(|c| c.contains("xanh")),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|h| h["content"].as_str().is_some_and(|c| c.contains("hồng"))),
        "the old state is kept: {r:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_delete_decision_retires_the_fact_and_stores_nothing_new() {
    let reply = |facts: Value| ChatReply::Content(facts.to_string());
    let first = json!({"facts": [{
        "content": "The child has a dog called Max.",
        "category": "relationship", "confidence": 0.95, "entities": ["dog", "Max"],
        "tags": ["dog", "pet"], "source_turns": [1], "polarity": "positive"
    }]});
    let (mock, base) = Mock::start(reply(first)).await;
    let s = TestServer::start(|c| {
        c.llm.provider = "openai".into();
        c.llm.base_url = base.clone();
        c.llm.model = "test-chat".into();
        c.llm.api_key = pika_dataplane::config::Secret::new("sk-test");
        c.embedding.provider = "openai".into();
        c.embedding.base_url = base.clone();
        c.embedding.model = "test-embed".into();
        c.embedding.dimension = 8;
    })
    .await;
    let job = s
        .extract_and_wait(
            "kid-del",
            "c1",
            &[
                ("assistant", "Do you have a pet?"),
                ("user", "Yes, a dog called Max."),
            ],
        )
        .await;
    let dog = job["result"]["fact_ids"][0]
        .as_str()
        .expect("fact id")
        .to_string();

    // The extraction finds a negated fact; the decision step says it retires the old one.
    let extract_name = {
        let r = mock.last_request().expect("chat request");
        r["response_format"]["json_schema"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    mock.set_chat(ChatReply::BySchema(vec![
        (
            extract_name,
            json!({"facts": [{
                "content": "The child does not have a dog anymore.",
                "category": "relationship", "confidence": 0.9, "entities": ["dog"],
                "tags": ["dog", "pet"], "source_turns": [1], "polarity": "negative"
            }]})
            .to_string(),
        ),
        (
            "decision".into(),
            json!({"decision": "DELETE", "fact_id": dog}).to_string(),
        ),
    ]));
    let job = s
        .extract_and_wait(
            "kid-del",
            "c2",
            &[
                ("assistant", "How is Max?"),
                ("user", "We gave Max to my uncle, no dog now."),
            ],
        )
        .await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["result"]["deleted"], 1, "{job}");
    assert_eq!(job["result"]["added"], 0, "{job}");
    assert_eq!(job["result"]["updated"], 0, "{job}");

    let (_, fact) = s.get(&format!("/v1/facts/{dog}")).await;
    assert_eq!(fact["data"]["status"], "superseded", "{fact}");
    let (_, history) = s.get(&format!("/v1/facts/{dog}/history")).await;
    let events: Vec<&str> = history["data"]["history"]
        .as_array()
        .or_else(|| history["data"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|h| h["event"].as_str())
        .collect();
    assert!(events.contains(&"DELETE"), "{history}");
    // No fact says the dog is still there or was replaced.
    let r = results(&s, "kid-del", "dog", 10).await;
    assert!(
        r.iter()
            .all(|h| h["kind"] == "episode" || h["fact_id"] != dog.as_str()),
        "{r:?}"
    );
    s.stop().await;
}
