//! The randomized run over the dataplane's HTTP surface
//! (`pika_tests::http_fuzz`): no 5xx other than 503 (load shedding), and
//! the server keeps serving afterwards.

use crate::harness::{TestServer, have_model};

/// Requests per run (docs/SECURITY.md records the figure).
const CASES: usize = 10_000;

#[tokio::test]
async fn random_requests_never_get_a_5xx_other_than_shedding() {
    if !have_model() {
        return;
    }
    let s = TestServer::start(|_| {}).await;
    let report = pika_tests::http_fuzz::run(&s.http, &s.base, &s.key, CASES).await;
    // Still serving after all of it.
    let (status, _) = s.get("/health/live").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    println!(
        "fuzz: {} random requests, statuses {:?}, {} 5xx other than 503",
        report.sent,
        report.statuses,
        report.failures.len()
    );
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    s.stop().await;
}
