//! Redis failing under the sidecar: answers keep coming, from L0 or the
//! dataplane, never as errors.

use crate::harness::{Stack, user};
use pika_tests::fault_proxy::{FaultProxy, host_port, through};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[tokio::test]
async fn redis_cut_mid_run_gives_no_errors_only_l0_or_bypass() {
    let Some(stack) = Stack::start().await else { return };
    // Only the sidecar's Redis path is cut; the dataplane keeps its own.
    let proxy = FaultProxy::start(&host_port(&stack.redis_url)).await;
    let sidecar = stack
        .sidecar(&through(&stack.redis_url, proxy.addr()), |_| {})
        .await;
    let base = format!("http://{}", sidecar.addr);
    let kids: Vec<String> = (0..4).map(|_| user("redis-cut")).collect();
    let queries = [
        "bé thích gì",
        "bé sợ gì",
        "bạn thân của bé là ai",
        "what does the child like",
        "bé học lớp mấy",
        "what is the child's favourite food",
        "bé nuôi con gì",
        "who is the child's teacher",
    ];

    let mut phases: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    let mut errors = 0;
    // Each phase repeats half of the previous phase's searches and adds new ones.
    let run = |phase: &'static str, offset: usize, rounds: usize| {
        let stack = &stack;
        let base = &base;
        let kids = &kids;
        async move {
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            let mut errors = 0;
            for r in 0..rounds {
                let i = offset + r;
                let kid = &kids[i % kids.len()];
                let q = queries[(i / kids.len()) % queries.len()];
                let ans = stack.search(base, kid, q).await;
                if !ans.status.is_success() {
                    errors += 1;
                }
                *seen.entry(ans.x_cache).or_default() += 1;
            }
            (phase, seen, errors)
        }
    };
    for (phase, offset, rounds, action) in [
        ("before", 0, 16, None),
        ("cut", 8, 16, Some(true)),
        ("restored", 16, 16, Some(false)),
    ] {
        match action {
            Some(true) => proxy.cut(),
            Some(false) => {
                proxy.restore();
                // L1 is skipped for a second after a failure; the subscription
                // reconnects with back-off.
                let started = Instant::now();
                while !sidecar.state.subscribed() && started.elapsed() < Duration::from_secs(15) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_millis(1100)).await;
            }
            None => {}
        }
        let (phase, seen, e) = run(phase, offset, rounds).await;
        errors += e;
        phases.insert(phase, seen);
    }
    println!("redis cut: X-Cache per phase {phases:?}; error responses {errors}");
    assert_eq!(errors, 0);
    let cut = &phases["cut"];
    assert!(
        cut.keys().all(|k| k == "L0-HIT" || k == "BYPASS"),
        "while Redis is cut only L0 or BYPASS: {cut:?}"
    );
    assert!(
        cut.contains_key("BYPASS"),
        "new searches during the cut go to the dataplane: {cut:?}"
    );
    let restored = &phases["restored"];
    assert!(
        restored.keys().any(|k| k == "MISS" || k == "L1-HIT"),
        "after Redis is back L1 is used again: {restored:?}"
    );
    sidecar.stop().await;
}

#[tokio::test]
async fn the_subscription_outlives_its_keepalive_pings() {
    let Some(stack) = Stack::start().await else { return };
    let sidecar = stack.sidecar(&stack.redis_url, |_| {}).await;
    let base = format!("http://{}", sidecar.addr);
    let kid = user("keepalive");
    assert_eq!(stack.search(&base, &kid, "bé thích gì").await.x_cache, "MISS");
    // Past one keep-alive ping (every 5 s): a failed ping would drop the
    // subscription and, with it, every L0 entry.
    tokio::time::sleep(Duration::from_millis(6500)).await;
    assert!(sidecar.state.subscribed(), "subscription dropped by its own ping");
    assert_eq!(stack.search(&base, &kid, "bé thích gì").await.x_cache, "L0-HIT");
    sidecar.stop().await;
}

/// The dataplane stopped under a running sidecar (DESIGN.md §5, README
/// "When the dataplane is down"): a key whose grant the sidecar saw within
/// `keys.stale_ms` still gets its cached answer; a key it never saw gets 503,
/// never a cached answer.
#[tokio::test]
async fn with_the_dataplane_down_cached_answers_need_a_recent_grant() {
    let Some(mut stack) = Stack::start().await else {
        return;
    };
    let sidecar = stack
        .sidecar(&stack.redis_url, |o| {
            // Grants go stale at once, so every request below asks the
            // dataplane first and falls back to the last grant seen.
            o.config.keys.cache_ttl_ms = 1;
            o.config.keys.stale_ms = 60_000;
        })
        .await;
    let base = format!("http://{}", sidecar.addr);
    let kid = user("outage");
    assert_eq!(stack.search(&base, &kid, "bé thích gì").await.x_cache, "MISS");
    assert_eq!(stack.search(&base, &kid, "bé thích gì").await.x_cache, "L0-HIT");
    stack.stop_dataplane().await;

    let cached = stack.search(&base, &kid, "bé thích gì").await;
    assert_eq!(
        (cached.status, cached.x_cache.as_str()),
        (reqwest::StatusCode::OK, "L0-HIT"),
        "a known key keeps its cached answer: {:?}",
        cached.body
    );
    let unknown = stack
        .search_with_key(
            &base,
            Some("pika_live_sk_never-seen-by-this-sidecar"),
            serde_json::json!({"user_id": kid, "query": "bé thích gì"}),
        )
        .await;
    assert_eq!(unknown.status, reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unknown.body["error"]["code"], "SERVICE_UNAVAILABLE");
    let missed = stack.search(&base, &kid, "bé có sợ gì không").await;
    assert_eq!(
        missed.status,
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
        "a miss needs the dataplane"
    );
    println!(
        "dataplane down: known key cached {} {}, unknown key {}, known key miss {}",
        cached.status.as_u16(),
        cached.x_cache,
        unknown.status.as_u16(),
        missed.status.as_u16()
    );
    sidecar.stop().await;
}
