//! The whole path under TLS: clients reach the sidecar over HTTPS, the
//! sidecar keeps L1 and its invalidation subscription on a Redis that speaks
//! only TLS, and the dataplane announces writes to that Redis over TLS. All
//! certificates come from a private CA that every client is told to trust.

use crate::harness::{Stack, user};
use pika_common::tls::ServerTlsConfig;
use pika_dataplane::config::Secret;
use pika_tests::pki::TestPki;
use pika_tests::tls_redis::TlsRedis;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

#[tokio::test]
async fn search_over_https_with_l1_and_invalidations_on_a_tls_only_redis() {
    let pki = TestPki::new();
    let Some(redis) = TlsRedis::start(&pki) else {
        return;
    };
    let url = redis.url();
    let ca = pki.ca_file();
    let Some(mut stack) = Stack::start_with(|c| {
        c.cache.redis_url = Secret::new(url.clone());
        c.cache.redis_ca_file = ca.clone();
    })
    .await
    else {
        return;
    };
    let https = |s: &mut crate::harness::SidecarSetup| {
        s.config.redis.ca_file = pki.ca_file();
        s.config.tls = ServerTlsConfig {
            cert_file: pki.cert_file(),
            key_file: pki.key_file(),
            ..Default::default()
        };
    };
    let first = stack.sidecar(&url, https).await;
    let second = stack.sidecar(&url, https).await;
    assert!(first.state.subscribed(), "invalidation subscription over TLS");
    let ca_pem = std::fs::read(pki.ca_file()).expect("ca");
    let plain = stack.http.clone();
    stack.http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).expect("ca pem"))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("https client");
    let a = format!("https://localhost:{}", first.addr.port());
    let b = format!("https://localhost:{}", second.addr.port());

    // Plain HTTP to the sidecar's port gets no answer.
    assert!(
        plain
            .get(format!("http://127.0.0.1:{}/health", first.addr.port()))
            .send()
            .await
            .is_err(),
        "the TLS port answered plain HTTP"
    );
    let health: serde_json::Value = stack
        .http
        .get(format!("{a}/health"))
        .send()
        .await
        .expect("health over https")
        .json()
        .await
        .expect("json");
    assert_eq!(health["redis"]["up"], true, "L1 reaches the TLS Redis: {health}");

    let kid = user("tls");
    let job = stack.extract(&a, &kid, "Mình thích con mèo nhà bà").await;
    stack.wait_completed(&a, &job).await;
    let miss = stack.search(&a, &kid, "bé thích gì").await;
    assert_eq!(miss.status, StatusCode::OK);
    assert_eq!(miss.facts().len(), 1, "{:?}", miss.body);
    // The job's completion, relayed by the sidecar, bumps the generation; its
    // invalidation may land after the miss above filled L0 and drop it. Each
    // try asks a paraphrase not asked before, so a refill never hides a hit.
    let mut l0 = false;
    for n in 0..20 {
        let q = format!("bé thích gì{}", "?".repeat(n));
        stack.search(&a, &kid, &q).await;
        if stack.search(&a, &kid, &q).await.x_cache == "L0-HIT" {
            l0 = true;
            break;
        }
    }
    assert!(l0, "no L0 hit over HTTPS");
    // The other sidecar finds an answer in the shared L1, over TLS.
    let mut l1 = false;
    for n in 0..20 {
        let q = format!("bé thích gì{}", "!".repeat(n + 1));
        stack.search(&a, &kid, &q).await;
        if stack.search(&b, &kid, &q).await.x_cache == "L1-HIT" {
            l1 = true;
            break;
        }
    }
    assert!(l1, "no L1 hit across sidecars over TLS");

    // A write (announced by the dataplane over TLS) reaches both sidecars.
    let job = stack
        .extract(&stack.dataplane, &kid, "Mình thích vẽ tranh con voi")
        .await;
    stack.wait_completed(&stack.dataplane, &job).await;
    let started = Instant::now();
    loop {
        let after = stack.search(&a, &kid, "bé thích gì").await;
        if after.facts().len() == 2 {
            assert_ne!(after.x_cache, "L0-HIT");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the write was not seen through the sidecar: {:?}",
            after.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stack.search(&b, &kid, "bé thích gì").await.facts().len(), 2);
    first.stop().await;
    second.stop().await;
}
