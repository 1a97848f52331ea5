//! The randomized run over the sidecar's HTTP surface (the same cases as
//! the dataplane's, `pika_tests::http_fuzz`), through a sidecar with L0 and
//! L1 in front of a real dataplane: no 5xx other than 503 (load shedding),
//! and both keep serving afterwards.

use crate::harness::Stack;

/// Requests per run (docs/SECURITY.md records the figure).
const CASES: usize = 10_000;

#[tokio::test]
async fn random_requests_through_the_sidecar_never_get_a_5xx_other_than_shedding() {
    let Some(stack) = Stack::start().await else { return };
    // Rate limits off, so the cases reach the cache and the proxy rather
    // than stopping at 429 (the limits have their own tests).
    let sidecar = stack
        .sidecar(&stack.redis_url, |s| {
            s.config.rate_limit.per_second = 0;
            s.config.rate_limit.unknown_key_per_second = 0;
        })
        .await;
    let base = format!("http://{}", sidecar.addr);
    let report = pika_tests::http_fuzz::run(&stack.http, &base, &stack.key, CASES).await;
    let live = stack
        .http
        .get(format!("{base}/health/live"))
        .send()
        .await
        .expect("live");
    assert!(live.status().is_success());
    let search = stack.search(&base, "fuzz-after", "bé thích gì").await;
    assert_eq!(search.status, reqwest::StatusCode::OK, "{:?}", search.body);
    println!(
        "sidecar fuzz: {} random requests, statuses {:?}, {} 5xx other than 503",
        report.sent,
        report.statuses,
        report.failures.len()
    );
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    sidecar.stop().await;
}
