//! The service on a real Milvus: read-your-writes through the worker's
//! visibility check, and search degrading (never failing) when Milvus goes away.

use crate::backends::{server_url, unique};
use crate::harness::{TestServer, have_model};
use crate::split::{PrivateSchema, delete_test_queues, process_env, spawn, start_api};
use pika_dataplane::store::{IndexSpec, MilvusIndex, MilvusOptions};
use pika_tests::fault_proxy::{FaultProxy, host_port, through};
use serde_json::json;
use std::time::{Duration, Instant};

/// Milvus collections private to one test (a unique prefix), dropped at the end.
pub struct PrivateCollections {
    url: String,
    prefix: String,
}

impl PrivateCollections {
    pub fn new(url: &str) -> Self {
        PrivateCollections {
            url: url.to_string(),
            prefix: unique("t"),
        }
    }

    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PIKA__VECTOR__URL".into(), self.url.clone()),
            ("PIKA__VECTOR__COLLECTION_PREFIX".into(), self.prefix.clone()),
        ]
    }

    pub async fn drop(self) {
        MilvusIndex::drop_prefix(MilvusOptions {
            url: self.url,
            token: String::new(),
            ca_file: Default::default(),
            collection_prefix: self.prefix,
            num_partitions: 1,
            index: IndexSpec::Flat,
            timeout: Duration::from_secs(10),
            visible_timeout: Duration::from_secs(1),
        })
        .await
        .expect("drop test collections");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Made-up words, so that only the vector (keyword weight 0) can find the fact.
pub fn word(i: usize) -> String {
    const A: [&str; 10] = ["ka", "mo", "ri", "te", "zu", "ba", "no", "si", "pe", "lu"];
    format!("{}{}{}", A[i % 10], A[(i / 10) % 10], A[(i / 100) % 10])
}

#[tokio::test]
async fn extract_then_search_reads_its_writes_100_times_on_milvus() {
    let (Some(pg), Some(amqp), Some(milvus)) = (
        server_url("PIKA_TEST_POSTGRES_URL"),
        server_url("PIKA_TEST_RABBITMQ_URL"),
        server_url("PIKA_TEST_MILVUS_URL"),
    ) else {
        return;
    };
    if !have_model() {
        return;
    }
    let schema = PrivateSchema::new(&pg, "pika_ryw").await;
    let collections = PrivateCollections::new(&milvus);
    let data = tempfile::tempdir().expect("tempdir");
    let queue_name = unique("pika.ryw.jobs");
    let env: Vec<(String, String)> = process_env(&schema.url, data.path(), &amqp, &queue_name)
        .into_iter()
        // Similarity from the vector alone: a fact Milvus does not return scores 0.
        .chain([("PIKA__SEARCH__KEYWORD_WEIGHT".to_string(), "0".to_string())])
        .chain(collections.env())
        .collect();
    let (_api, s) = start_api(&env);
    let (_worker, _) = spawn(&["worker"], &env, "worker health on ");

    let user = unique("kid");
    let mut completions = Vec::new();
    let mut searches = Vec::new();
    let mut misses = Vec::new();
    for i in 0..100 {
        let w = word(i);
        let started = Instant::now();
        let (status, body) = s
            .post(
                "/v1/extract_facts",
                &crate::harness::conversation(
                    &user,
                    &format!("c{i}"),
                    &[
                        ("assistant", "What do you like?"),
                        ("user", &format!("I love drawing {w}.")),
                    ],
                ),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
        let job_id = body["data"]["job_id"].as_str().expect("job").to_string();
        let job = s.wait_job(&job_id, Duration::from_secs(30)).await;
        completions.push(started.elapsed());
        assert_eq!(job["state"], "completed", "{job}");
        let new_ids: Vec<String> = job["result"]["fact_ids"]
            .as_array()
            .expect("fact ids")
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        assert_eq!(new_ids.len(), 1, "{job}");

        // The very next request: a search for the new fact.
        let t = Instant::now();
        let (status, body) = s
            .post(
                "/v1/search_facts",
                &json!({"user_id": user, "query": format!("drawing {w}"), "limit": 5}),
            )
            .await;
        searches.push(t.elapsed());
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
        assert_eq!(body["data"]["degraded"], false, "{body}");
        let found = body["data"]["results"]
            .as_array()
            .expect("results")
            .iter()
            // The job's fact or its episode (they share the turn, so one slot).
            .any(|r| {
                r["conversation_id"] == format!("c{i}").as_str()
                    && r["similarity"].as_f64().unwrap_or(0.0) > 0.5
            });
        if !found {
            misses.push((i, body));
        }
    }
    completions.sort();
    searches.sort();
    println!(
        "read-your-writes on Milvus: {}/100 new facts found by the next search; \
         extract→completed p50 {:?} p95 {:?}; search p50 {:?} p95 {:?}",
        100 - misses.len(),
        percentile(&completions, 0.5),
        percentile(&completions, 0.95),
        percentile(&searches, 0.5),
        percentile(&searches, 0.95),
    );
    assert!(
        misses.is_empty(),
        "searches that missed a completed job's fact: {misses:?}"
    );

    schema.drop_schema().await;
    collections.drop().await;
    delete_test_queues(&amqp, &queue_name).await;
}

#[tokio::test]
async fn search_degrades_to_keywords_while_milvus_is_unreachable() {
    let Some(milvus) = server_url("PIKA_TEST_MILVUS_URL") else {
        return;
    };
    if !have_model() {
        return;
    }
    let proxy = FaultProxy::start(&host_port(&milvus)).await;
    let collections = PrivateCollections::new(&milvus);
    let via_proxy = through(&milvus, proxy.addr());
    let prefix = collections.env()[1].1.clone();
    let s = TestServer::start(|c| {
        c.vector.url = pika_dataplane::config::Secret::new(via_proxy.clone());
        c.vector.collection_prefix = prefix.clone();
        c.vector.timeout_ms = 500;
        c.resilience.breaker_failures = 2;
    })
    .await;
    let job = s
        .extract_and_wait(
            "kid",
            "c1",
            &[("assistant", "Chào cậu!"), ("user", "Mình nuôi mèo tên Miu.")],
        )
        .await;
    assert_eq!(job["state"], "completed", "{job}");

    proxy.cut();
    let mut errors = 0;
    let mut slowest = Duration::ZERO;
    for q in ["con mèo của bé", "thú cưng của bé là gì", "meo", "mèo", "Miu"] {
        let t = Instant::now();
        let (status, body) = s
            .post("/v1/search_facts", &json!({"user_id": "kid", "query": q}))
            .await;
        slowest = slowest.max(t.elapsed());
        if !status.is_success() {
            errors += 1;
        }
        assert_eq!(body["data"]["degraded"], true, "{body}");
        assert_eq!(body["data"]["source"], "keyword (vector search unavailable)");
        assert_eq!(
            body["data"]["results"][0]["content"], "Bé nuôi mèo tên Miu.",
            "{q}: {body}"
        );
    }
    let (_, health) = s.send(s.http.get(s.url("/health"))).await;
    println!(
        "Milvus unreachable: 5 searches, {errors} errors (5xx or other), all degraded, slowest {slowest:?}; \
         health {} with vectors circuit {}",
        health["status"], health["checks"][1]["circuit"]
    );
    assert_eq!(errors, 0);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["checks"][1]["circuit"], "open", "{health}");

    // Milvus back: the breaker lets a trial call through and search is whole again.
    proxy.restore();
    let started = Instant::now();
    loop {
        let (_, body) = s
            .post(
                "/v1/search_facts",
                &json!({"user_id": "kid", "query": "con mèo của bé"}),
            )
            .await;
        if body["data"]["degraded"] == false {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still degraded: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "Milvus back: vector search restored after {:?}",
        started.elapsed()
    );
    s.stop().await;
    collections.drop().await;
}
