//! Mem0 searches through the sidecar are cached like native ones (issue 13):
//! a repeat is an L0 hit in the route's own shape, an agent filter and the
//! v3 (wrapped) and v2 (bare) routes never share an answer, and a Mem0
//! update reaches the cache at once (the dataplane bumps the user's
//! generation; the sidecar drops that user's entries).

use crate::harness::{Stack, user};
use serde_json::{Value, json};

struct Hit {
    x_cache: String,
    body: Value,
}

async fn mem0_post(s: &Stack, base: &str, path: &str, body: Value) -> Hit {
    let resp = s
        .http
        .post(format!("{base}{path}"))
        .header("Authorization", format!("Token {}", s.key))
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    let x_cache = resp
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Hit {
        x_cache,
        body: resp.json().await.expect("json"),
    }
}

fn memories(v: &Value) -> Vec<String> {
    let list = v.get("results").unwrap_or(v);
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["memory"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem0_searches_are_cached_per_shape_and_scope_and_an_update_reaches_the_cache() {
    let Some(stack) = Stack::start().await else {
        return;
    };
    let sidecar = stack.sidecar(&stack.redis_url, |_| {}).await;
    let base = format!("http://{}", sidecar.addr);
    let kid = user("mem0c");
    let add = |text: &str, agent: Option<&str>| {
        let mut body = json!({"messages": text, "user_id": kid, "infer": false, "async_mode": false});
        if let Some(a) = agent {
            body["agent_id"] = json!(a);
        }
        body
    };
    let added = mem0_post(
        &stack,
        &base,
        "/v3/memories/add/",
        add("I have a cat named Miu", None),
    )
    .await;
    let cat_id = added.body["results"][0]["id"].as_str().expect("id").to_string();
    mem0_post(
        &stack,
        &base,
        "/v3/memories/add/",
        add("My robot toy is called Bolt", Some("pika")),
    )
    .await;

    let search = json!({"query": "my cat", "filters": {"user_id": kid}, "top_k": 5});
    let first = mem0_post(&stack, &base, "/v3/memories/search/", search.clone()).await;
    assert_eq!(first.x_cache, "MISS");
    assert!(
        memories(&first.body).iter().any(|m| m.contains("Miu")),
        "{}",
        first.body
    );
    // The add's job bumps the user's generation once more just after it
    // answers (both sides of its commit): an answer cached before that
    // bump is dropped, so repeat until the cache holds a settled answer.
    let mut again = mem0_post(&stack, &base, "/v3/memories/search/", search.clone()).await;
    for _ in 0..50 {
        if again.x_cache == "L0-HIT" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        again = mem0_post(&stack, &base, "/v3/memories/search/", search.clone()).await;
    }
    assert_eq!(
        again.x_cache, "L0-HIT",
        "a repeated Mem0 search is served from cache"
    );
    assert_eq!(again.body, first.body, "the same answer, in v3's wrapped shape");
    assert!(again.body.get("results").is_some());

    // The bare v2 route answers a list: never v3's cached object.
    let bare = mem0_post(&stack, &base, "/v2/memories/search/", search.clone()).await;
    assert_eq!(bare.x_cache, "MISS", "another shape is another entry");
    assert!(bare.body.is_array(), "{}", bare.body);

    // An agent filter narrows the answer, so it is its own entry.
    let scoped = json!({"query": "my cat", "filters": {"AND": [{"user_id": kid}, {"agent_id": "pika"}]}});
    let in_agent = mem0_post(&stack, &base, "/v3/memories/search/", scoped).await;
    assert_ne!(in_agent.x_cache, "L0-HIT");
    assert!(
        memories(&in_agent.body).iter().all(|m| !m.contains("Miu")),
        "{}",
        in_agent.body
    );

    // A narrowing delete_all cannot read is refused, never widened into
    // the user's erasure.
    for query in [
        format!("user_id={kid}&filters=%7B%27agent_id%27%3A+%27pika%27%7D"),
        format!("user_id={kid}&actor_id=bot"),
        format!("user_id={kid}&agent_id="),
    ] {
        let resp = stack
            .http
            .delete(format!("{base}/v1/memories/?{query}"))
            .header("Authorization", format!("Token {}", stack.key))
            .send()
            .await
            .expect("delete_all");
        assert_eq!(resp.status(), reqwest::StatusCode::BAD_REQUEST, "{query}");
        let body: Value = resp.json().await.expect("json");
        assert!(body["detail"].is_string(), "{body}");
    }
    let still = mem0_post(&stack, &base, "/v3/memories/search/", search.clone()).await;
    assert!(
        memories(&still.body).iter().any(|m| m.contains("Miu")),
        "nothing was deleted: {}",
        still.body
    );

    // An update through the sidecar: the next search sees the new text.
    let resp = stack
        .http
        .put(format!("{base}/v1/memories/{cat_id}/"))
        .header("Authorization", format!("Token {}", stack.key))
        .json(&json!({"text": "I have a cat named Mochi"}))
        .send()
        .await
        .expect("update");
    assert!(resp.status().is_success(), "update: {}", resp.status());
    let mut fresh = None;
    for _ in 0..50 {
        let after = mem0_post(&stack, &base, "/v3/memories/search/", search.clone()).await;
        if memories(&after.body).iter().any(|m| m.contains("Mochi")) {
            fresh = Some(after);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let fresh = fresh.expect("the update reached the cache within a second");
    assert!(
        memories(&fresh.body).iter().all(|m| !m.contains("Miu")),
        "{}",
        fresh.body
    );
    sidecar.stop().await;
}
