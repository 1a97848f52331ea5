//! RabbitMQ going away in the middle of a burst of extracts: every accepted job
//! still completes exactly once. The broker is cut through a [`FaultProxy`]
//! (every connection dropped, new ones refused for a few seconds, then
//! accepted again), which is what the service sees when RabbitMQ restarts,
//! without restarting the broker other tests share.

use crate::backends::{server_url, unique};
use crate::harness::{TestServer, conversation, have_model};
use crate::milvus::word;
use crate::split::{PrivateSchema, delete_test_queues};
use futures::StreamExt;
use pika_tests::fault_proxy::{FaultProxy, host_port, through};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BURST: usize = 500;
const USERS: usize = 50;
const CUT_AFTER: usize = 150;
const CUT_FOR: Duration = Duration::from_secs(3);

#[tokio::test]
async fn broker_restart_during_a_burst_of_500_extracts_loses_and_duplicates_nothing() {
    let (Some(pg), Some(amqp)) = (
        server_url("PIKA_TEST_POSTGRES_URL"),
        server_url("PIKA_TEST_RABBITMQ_URL"),
    ) else {
        return;
    };
    if !have_model() {
        return;
    }
    let schema = PrivateSchema::new(&pg, "pika_burst").await;
    let proxy = Arc::new(FaultProxy::start(&host_port(&amqp)).await);
    let queue_name = unique("pika.burst.jobs");
    let via_proxy = through(&amqp, proxy.addr());
    let meta_url = schema.url.clone();
    let q = queue_name.clone();
    let s = Arc::new(
        TestServer::start(move |c| {
            c.storage.meta_url = pika_dataplane::config::Secret::new(meta_url);
            c.queue.url = pika_dataplane::config::Secret::new(via_proxy);
            c.queue.name = q;
            c.queue.publish_timeout_ms = 1_000;
            c.queue.sweep_after_ms = 2_000;
            c.worker.concurrency = 4;
        })
        .await,
    );

    let accepted = Arc::new(AtomicUsize::new(0));
    let cut = {
        let (proxy, accepted) = (proxy.clone(), accepted.clone());
        tokio::spawn(async move {
            while accepted.load(Ordering::SeqCst) < CUT_AFTER {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            proxy.cut();
            let at = accepted.load(Ordering::SeqCst);
            tokio::time::sleep(CUT_FOR).await;
            proxy.restore();
            at
        })
    };
    let started = Instant::now();
    let statuses: Vec<reqwest::StatusCode> = futures::stream::iter(0..BURST)
        .map(|i| {
            let (s, accepted) = (s.clone(), accepted.clone());
            async move {
                let body = conversation(
                    &format!("kid{}", i % USERS),
                    &format!("c{i}"),
                    &[
                        ("assistant", "What do you like?"),
                        ("user", &format!("I love drawing {}.", word(i))),
                    ],
                );
                let (status, _) = s.post("/v1/extract_facts", &body).await;
                if status == reqwest::StatusCode::ACCEPTED {
                    accepted.fetch_add(1, Ordering::SeqCst);
                }
                status
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let burst_time = started.elapsed();
    let cut_at = cut.await.expect("cut task");
    let accepted = accepted.load(Ordering::SeqCst);
    let rejected = statuses
        .iter()
        .filter(|s| **s != reqwest::StatusCode::ACCEPTED)
        .count();

    // Wait until no accepted job is left unfinished.
    let pool = schema.store.pool();
    let deadline = Instant::now() + Duration::from_secs(240);
    let (completed, failed) = loop {
        let (completed, failed, open): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FILTER (WHERE state = 'failed'), \
             count(*) FILTER (WHERE state NOT IN ('completed', 'failed')) FROM jobs",
        )
        .fetch_one(&pool)
        .await
        .expect("count jobs");
        if open == 0 {
            break (completed, failed);
        }
        assert!(Instant::now() < deadline, "{open} jobs unfinished after 240 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let settle = started.elapsed();
    let (facts, distinct, rows, episode_rows): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'active' AND kind = 'fact'), \
         count(DISTINCT (user_id, content)) FILTER (WHERE status = 'active' AND kind = 'fact'), \
         count(*) FILTER (WHERE kind = 'fact'), count(*) FILTER (WHERE kind = 'episode') FROM facts",
    )
    .fetch_one(&pool)
    .await
    .expect("count facts");
    // What the jobs say they stored: a job run twice would leave more rows than this.
    let (reported, one_fact_each, episodes_reported): (i64, i64, i64) = sqlx::query_as(
        "SELECT COALESCE(sum((result->>'added')::bigint + (result->>'updated')::bigint), 0)::bigint, \
         count(*) FILTER (WHERE (result->>'facts_count')::bigint = 1), \
         COALESCE(sum((result->>'episodes')::bigint), 0)::bigint FROM jobs",
    )
    .fetch_one(&pool)
    .await
    .expect("job results");
    println!(
        "broker cut for {CUT_FOR:?} after {cut_at} of {BURST} extracts: accepted {accepted}, rejected {rejected}, \
         completed {completed}, failed {failed}; fact rows {rows} (jobs report {reported} written, the rest \
         merged as near-duplicates), active facts {facts}, duplicate facts {}; burst sent in {burst_time:?}, \
         all jobs final after {settle:?}",
        facts - distinct
    );
    assert_eq!(rejected, 0, "extract must accept while the broker is down");
    assert_eq!(completed as usize, accepted, "accepted = completed");
    assert_eq!(failed, 0);
    assert_eq!(
        one_fact_each as usize, BURST,
        "every conversation yields its fact"
    );
    assert_eq!(
        rows, reported,
        "fact rows = facts the jobs wrote (no job wrote twice)"
    );
    assert_eq!(
        episode_rows, episodes_reported,
        "episode rows = episodes the jobs wrote (no job wrote twice)"
    );
    assert_eq!(facts, distinct, "no duplicate facts");

    match Arc::try_unwrap(s) {
        Ok(s) => s.stop().await,
        Err(_) => panic!("server still shared"),
    }
    schema.drop_schema().await;
    delete_test_queues(&amqp, &queue_name).await;
}
