//! Freshness, isolation, auth and pass-through, each through a real sidecar.

use crate::harness::{Stack, user};
use pika_dataplane::domain::Permission;
use pika_dataplane::service::keys;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

/// Sentences the rule extractor turns into clearly different facts that all
/// match the query "bé thích gì" by keyword ("thích").
const LIKES: &[&str] = &[
    "Mình thích ăn phở lắm",
    "Mình thích con mèo nhà bà",
    "Mình thích màu xanh dương",
    "Mình thích đá bóng với bố",
    "Mình thích vẽ tranh con voi",
    "Mình thích bơi ở hồ bơi",
    "Mình thích đọc truyện cổ tích",
    "Mình thích chơi lego",
];

#[tokio::test]
async fn a_completed_write_is_never_answered_from_a_stale_cache() {
    let Some(stack) = Stack::start().await else { return };
    let sidecar = stack.sidecar(&stack.redis_url, |_| {}).await;
    let base = format!("http://{}", sidecar.addr);
    let kid = user("fresh");
    let query = "bé thích gì";
    let mut known = 0;
    let mut stale = 0;
    for (i, sentence) in LIKES.iter().enumerate() {
        // Warm both layers with the current answer.
        let before = stack.search(&base, &kid, query).await;
        assert_eq!(before.status, StatusCode::OK);
        assert_eq!(before.facts().len(), known);
        let again = stack.search(&base, &kid, query).await;
        assert_eq!(again.x_cache, "L0-HIT", "a repeated search is served from L0");

        let job = stack.extract(&base, &kid, sentence).await;
        // Odd rounds learn of completion from the dataplane directly, so only
        // the worker's generation bump and the pub/sub message can freshen the
        // sidecar; even rounds poll through the sidecar (which also bumps).
        let via = if i % 2 == 1 {
            stack.dataplane.clone()
        } else {
            base.clone()
        };
        let done = stack.wait_completed(&via, &job).await;
        let added = done["result"]["added"].as_u64().unwrap_or(0) as usize;
        assert_eq!(added, 1, "the sentence {sentence:?} should add one fact: {done}");
        known += added;

        let after = stack.search(&base, &kid, query).await;
        if after.facts().len() != known {
            stale += 1;
        }
        assert_ne!(after.x_cache, "L0-HIT", "round {i}: answered from a stale L0");
        assert_ne!(after.x_cache, "L1-HIT", "round {i}: answered from a stale L1");
    }
    println!(
        "freshness: {} writes, {} stale answers after completion (half seen via the dataplane, half via the sidecar)",
        LIKES.len(),
        stale
    );
    assert_eq!(stale, 0);
    sidecar.stop().await;
}

#[tokio::test]
async fn another_user_never_gets_a_cached_answer_in_l0_or_l1_exact_or_semantic() {
    let Some(stack) = Stack::start().await else { return };
    let first = stack.sidecar(&stack.redis_url, |_| {}).await;
    let second = stack.sidecar(&stack.redis_url, |_| {}).await;
    let a_base = format!("http://{}", first.addr);
    let b_base = format!("http://{}", second.addr);
    let a = user("iso-a");
    let job = stack.extract(&a_base, &a, "Mình thích con mèo nhà bà").await;
    stack.wait_completed(&a_base, &job).await;

    let q = "bé thích con gì";
    let a1 = stack.search(&a_base, &a, q).await;
    assert_eq!(a1.x_cache, "MISS");
    assert_eq!(a1.facts().len(), 1);
    // The job's invalidation messages can reach this sidecar after the fill
    // above (pub/sub under load); one for an earlier generation still drops
    // the L0 entry being filled, and the answer then comes from L1: never
    // stale, but not the L0 entry this test needs first. Read until L0 has it.
    let mut a2 = stack.search(&a_base, &a, q).await;
    for _ in 0..20 {
        if a2.x_cache == "L0-HIT" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        a2 = stack.search(&a_base, &a, q).await;
    }
    assert_eq!(a2.x_cache, "L0-HIT");
    // A paraphrase by A is a semantic L0 hit (so the test below means
    // something). A late invalidation (see above) can again send one read to
    // L1; that read then fills L0 under the paraphrase's own exact key, so a
    // retry uses a paraphrase not asked before (one more "?"), after making
    // sure L0 holds the original question again.
    let mut paraphrase = String::new();
    let mut a3 = None;
    for attempt in 1..=10 {
        paraphrase = format!("Bé thích con gì{}", "?".repeat(attempt));
        let ans = stack.search(&a_base, &a, &paraphrase).await;
        if ans.x_cache == "L0-HIT" && ans.semantic {
            a3 = Some(ans);
            break;
        }
        for _ in 0..20 {
            if stack.search(&a_base, &a, q).await.x_cache == "L0-HIT" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(a3.is_some(), "no paraphrase was a semantic L0 hit");
    // On the second sidecar, A's query is in L1.
    let a4 = stack.search(&b_base, &a, q).await;
    assert_eq!(a4.x_cache, "L1-HIT");

    // A fresh user per probe, with no facts and nothing cached: any hit, or
    // any result at all, would be A's.
    let mut leaks = 0;
    let mut seen = Vec::new();
    for (base, query) in [
        (&a_base, q),
        (&a_base, paraphrase.as_str()),
        (&b_base, q),
        (&b_base, paraphrase.as_str()),
    ] {
        let b = user("iso-b");
        let ans = stack.search(base, &b, query).await;
        assert_eq!(ans.status, StatusCode::OK);
        if !ans.facts().is_empty() || ans.x_cache != "MISS" {
            leaks += 1;
        }
        seen.push(ans.x_cache);
    }
    println!(
        "isolation: 4 searches by other users with user A's cached texts (L0 and L1, exact and paraphrase; X-Cache {seen:?}), {leaks} served A's answer"
    );
    assert_eq!(leaks, 0);
    first.stop().await;
    second.stop().await;
}

/// Creates a key in the dataplane's SQLite store, retrying while the running
/// dataplane holds the write lock.
async fn create_key(meta: &dyn pika_dataplane::ports::MetaStore, name: &str, p: Permission) -> keys::NewKey {
    let mut last = None;
    for _ in 0..50 {
        let spec = keys::KeySpec {
            tenant_id: "default".into(),
            name: name.into(),
            permissions: vec![p],
            users: None,
            expires_at: None,
        };
        match keys::create(meta, "test", spec).await {
            Ok(k) => return k,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot create key {name}: {last:?}");
}

#[tokio::test]
async fn cached_answers_need_a_live_key_with_search_permission() {
    let Some(stack) = Stack::start().await else { return };
    let meta = pika_dataplane::resolve::open_meta(&stack.config)
        .await
        .expect("meta");
    let extract_only = create_key(meta.as_ref(), "extract-only", Permission::Extract).await;
    let searcher = create_key(meta.as_ref(), "searcher", Permission::Search).await;
    let sidecar = stack
        .sidecar(&stack.redis_url, |o| o.config.keys.cache_ttl_ms = 100)
        .await;
    let base = format!("http://{}", sidecar.addr);
    let kid = user("auth");
    let body = json!({"user_id": kid, "query": "bé thích gì"});
    let warm = stack.search_with_key(&base, Some(&stack.key), body.clone()).await;
    assert_eq!(warm.status, StatusCode::OK);
    let hit = stack.search_with_key(&base, Some(&stack.key), body.clone()).await;
    assert_eq!(hit.x_cache, "L0-HIT");

    let none = stack.search_with_key(&base, None, body.clone()).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.body["error"]["code"], "UNAUTHORIZED");
    let wrong = stack
        .search_with_key(&base, Some("pika_live_sk_not-a-real-key"), body.clone())
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

    let forbidden = stack
        .search_with_key(&base, Some(&extract_only.secret), body.clone())
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);

    let ok = stack
        .search_with_key(&base, Some(&searcher.secret), body.clone())
        .await;
    assert_eq!((ok.status, ok.x_cache.as_str()), (StatusCode::OK, "L0-HIT"));
    let mut revoked_ok = false;
    for _ in 0..50 {
        if meta.revoke_key(&searcher.record.key_id).await.is_ok() {
            revoked_ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(revoked_ok, "cannot revoke the key");
    // The sidecar trusts a key lookup for key_cache_ttl (100 ms here).
    tokio::time::sleep(Duration::from_millis(250)).await;
    let revoked = stack.search_with_key(&base, Some(&searcher.secret), body).await;
    println!(
        "auth: no key {}, unknown key {}, extract-only key {}, revoked key {} (answer cached each time)",
        none.status.as_u16(),
        wrong.status.as_u16(),
        forbidden.status.as_u16(),
        revoked.status.as_u16()
    );
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    sidecar.stop().await;
}

#[tokio::test]
async fn other_requests_pass_through_unchanged() {
    let Some(stack) = Stack::start().await else { return };
    let sidecar = stack.sidecar(&stack.redis_url, |_| {}).await;
    let base = format!("http://{}", sidecar.addr);
    let kid = user("pass");
    let job = stack.extract(&base, &kid, "Mình thích chơi lego").await;
    stack.wait_completed(&base, &job).await;
    for path in [
        format!("/v1/users/{kid}/facts"),
        format!("/v1/jobs/{job}"),
        "/v1/no-such-route".to_string(),
    ] {
        let via = stack
            .http
            .get(format!("{base}{path}"))
            .bearer_auth(&stack.key)
            .send()
            .await
            .expect("via sidecar");
        let direct = stack
            .http
            .get(format!("{}{path}", stack.dataplane))
            .bearer_auth(&stack.key)
            .send()
            .await
            .expect("direct");
        assert_eq!(via.status(), direct.status(), "{path}");
        assert_eq!(
            via.headers().get("content-type"),
            direct.headers().get("content-type"),
            "{path}"
        );
        assert!(via.headers().get("x-request-id").is_some(), "{path}");
        let (v, d) = (
            via.bytes().await.expect("body"),
            direct.bytes().await.expect("body"),
        );
        if path.contains("/facts") {
            assert_eq!(v, d, "{path}: body changed");
        }
    }
    // Invalid searches reach the dataplane, which words the error.
    let bad = stack
        .search_with_key(&base, Some(&stack.key), json!({"user_id": kid, "query": ""}))
        .await;
    assert_eq!(
        (bad.status, bad.x_cache.as_str()),
        (StatusCode::BAD_REQUEST, "BYPASS")
    );
    assert_eq!(bad.body["error"]["code"], "VALIDATION_ERROR");
    let health: serde_json::Value = stack
        .http
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok", "{health}");
    sidecar.stop().await;
}

#[tokio::test]
async fn concurrent_misses_for_one_key_make_one_upstream_call() {
    let Some(stack) = Stack::start().await else { return };
    let sidecar = stack.sidecar(&stack.redis_url, |_| {}).await;
    let base = format!("http://{}", sidecar.addr);
    let kid = user("flight");
    let searches = (0..20).map(|_| stack.search(&base, &kid, "bé thích gì nhất"));
    let answers = futures::future::join_all(searches).await;
    assert!(answers.iter().all(|a| a.status == StatusCode::OK));
    let misses = answers.iter().filter(|a| a.x_cache == "MISS").count();
    let upstream = sidecar
        .state
        .metrics
        .upstream_duration
        .with_label_values(&["search"])
        .get_sample_count();
    println!("single flight: 20 concurrent identical searches, {misses} MISS, {upstream} upstream call(s)");
    assert_eq!(upstream, 1);
    assert_eq!(misses, 1);
    sidecar.stop().await;
}

#[tokio::test]
async fn each_key_is_rate_limited_once_per_request_hits_included() {
    let Some(stack) = Stack::start().await else { return };
    let sidecar = stack
        .sidecar(&stack.redis_url, |o| {
            o.config.rate_limit.per_second = 2;
            o.config.rate_limit.burst = 3;
        })
        .await;
    let base = format!("http://{}", sidecar.addr);
    let kid = user("limit");
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(stack.search(&base, &kid, "bé thích gì").await.status.as_u16());
    }
    println!("rate limit 2/s burst 3: statuses {codes:?}");
    assert_eq!(&codes[..3], &[200, 200, 200]);
    assert!(codes[3..].contains(&429), "{codes:?}");
    let limited = stack.search(&base, &kid, "bé thích gì").await;
    assert_eq!(limited.body["error"]["code"], "RATE_LIMITED");
    sidecar.stop().await;
}

#[tokio::test]
async fn warm_up_queries_are_answered_ahead_after_a_write() {
    let Some(stack) = Stack::start().await else { return };
    let key = stack.key.clone();
    let sidecar = stack
        .sidecar(&stack.redis_url, |o| {
            o.config.warmup_key = pika_dataplane::config::Secret::new(key);
            o.policy.warmup.queries = vec!["bé thích gì".into()];
            o.policy.warmup.delay_ms = 50;
        })
        .await;
    let base = format!("http://{}", sidecar.addr);
    let kid = user("warm");
    // The child is active (searched recently).
    stack.search(&base, &kid, "bé sợ gì").await;
    let job = stack
        .extract(&stack.dataplane, &kid, "Mình thích chơi lego")
        .await;
    stack.wait_completed(&stack.dataplane, &job).await;
    // Warm-up runs after the last invalidation plus the delay.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Exactly what the warm-up sent: the default parameters.
    let ans = stack
        .search_with_key(
            &base,
            Some(&stack.key),
            json!({"user_id": kid, "query": "bé thích gì"}),
        )
        .await;
    println!(
        "warm-up: first search after the write answered {} with {} fact(s)",
        ans.x_cache,
        ans.facts().len()
    );
    assert_eq!(ans.x_cache, "L0-HIT");
    assert_eq!(ans.facts().len(), 1, "the warmed answer includes the new fact");
    sidecar.stop().await;
}

#[tokio::test]
async fn answers_from_cache_are_audited() {
    let Some(stack) = Stack::start().await else { return };
    let sidecar = stack.sidecar(&stack.redis_url, |_| {}).await;
    let base = format!("http://{}", sidecar.addr);
    let kid = user("audit");
    assert_eq!(stack.search(&base, &kid, "bé thích gì").await.x_cache, "MISS");
    assert_eq!(stack.search(&base, &kid, "bé thích gì").await.x_cache, "L0-HIT");
    let db = pika_dataplane::resolve::open_embedded_db(&stack.config)
        .await
        .expect("db");
    let mut audited = 0i64;
    for _ in 0..40 {
        audited =
            sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE user_id = ? AND target = 'cache:L0'")
                .bind(&kid)
                .fetch_one(&db.pool())
                .await
                .unwrap_or(0);
        if audited > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(audited, 1, "one search was answered from cache");
    sidecar.stop().await;
}

/// Creates a tenant and a key in it through the dataplane's operator routes.
async fn tenant_key(stack: &Stack, tenant: &str, perms: &[&str], users: Option<&[&str]>) -> String {
    let post = |path: &str, body: serde_json::Value| {
        stack
            .http
            .post(format!("{}{path}", stack.dataplane))
            .bearer_auth(&stack.key)
            .json(&body)
            .send()
    };
    let _ = post("/v1/tenants", json!({ "tenant_id": tenant }))
        .await
        .expect("tenant");
    let resp = post(
        "/v1/keys",
        json!({"tenant_id": tenant, "name": "t", "permissions": perms, "users": users}),
    )
    .await
    .expect("key");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: serde_json::Value = resp.json().await.expect("json");
    body["data"]["api_key"].as_str().expect("secret").to_string()
}

#[tokio::test]
async fn a_cached_answer_never_crosses_tenants_or_a_device_keys_users() {
    let Some(stack) = Stack::start().await else { return };
    let sidecar = stack.sidecar(&stack.redis_url, |_| {}).await;
    let base = format!("http://{}", sidecar.addr);
    let kid = user("tenant-kid");
    // The default tenant's kid learns something and searches it twice (L0).
    let job = stack.extract(&base, &kid, "Mình thích con mèo nhà bà").await;
    stack.wait_completed(&base, &job).await;
    let q = "bé thích con gì";
    let body = json!({"user_id": kid, "query": q});
    let first = stack.search_with_key(&base, Some(&stack.key), body.clone()).await;
    assert_eq!(first.facts().len(), 1);
    let mut cached = stack.search_with_key(&base, Some(&stack.key), body.clone()).await;
    for _ in 0..20 {
        if cached.x_cache == "L0-HIT" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        cached = stack.search_with_key(&base, Some(&stack.key), body.clone()).await;
    }
    assert_eq!(cached.x_cache, "L0-HIT");

    // The same user id in another tenant is another child: a miss, no facts.
    let other = tenant_key(&stack, "fleet-x", &["search"], None).await;
    let ans = stack.search_with_key(&base, Some(&other), body.clone()).await;
    assert_eq!(ans.status, StatusCode::OK);
    assert_eq!(
        (ans.x_cache.as_str(), ans.facts().len()),
        ("MISS", 0),
        "{}",
        ans.body
    );
    // A device key of the default tenant for someone else: refused, even
    // though the answer sits in L0.
    let device = tenant_key(&stack, "default", &["search"], Some(&["someone-else"])).await;
    let ans = stack.search_with_key(&base, Some(&device), body.clone()).await;
    assert_eq!(ans.status, StatusCode::FORBIDDEN, "{}", ans.body);
    assert_ne!(ans.x_cache, "L0-HIT");
    // A device key covering the kid gets the cached answer.
    let own = tenant_key(&stack, "default", &["search"], Some(&[kid.as_str()])).await;
    let ans = stack.search_with_key(&base, Some(&own), body).await;
    assert_eq!((ans.status, ans.x_cache.as_str()), (StatusCode::OK, "L0-HIT"));
    sidecar.stop().await;
}

#[tokio::test]
async fn unknown_keys_are_limited_per_address_before_any_lookup_known_keys_are_not() {
    let Some(stack) = Stack::start().await else { return };
    let sidecar = stack
        .sidecar(&stack.redis_url, |s| {
            s.config.rate_limit.unknown_key_per_second = 1;
            s.config.rate_limit.unknown_key_burst = 1;
        })
        .await;
    let base = format!("http://{}", sidecar.addr);
    let body = json!({"user_id": user("addr"), "query": "bé thích gì"});
    // The real key is looked up once (its first request counts as unknown).
    let first = stack.search_with_key(&base, Some(&stack.key), body.clone()).await;
    assert_eq!(first.status, StatusCode::OK);
    let mut statuses = Vec::new();
    for i in 0..6 {
        let guess = format!("pika_live_sk_guess{i}");
        statuses.push(
            stack
                .search_with_key(&base, Some(&guess), body.clone())
                .await
                .status,
        );
    }
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    println!("unknown keys from one address, 6 in a burst at 1/s: {statuses:?}");
    assert!(limited >= 4, "{statuses:?}");
    // A key known to be live is not held back by the guesses from its address.
    for _ in 0..5 {
        let ans = stack.search_with_key(&base, Some(&stack.key), body.clone()).await;
        assert_eq!(ans.status, StatusCode::OK);
    }
    sidecar.stop().await;
}
