//! Milvus search latency alone, through the service's own adapter
//! (`MilvusIndex::search`: partition-key filter on `user_id`, Bounded
//! consistency, the configured index), so the figure can be set beside a whole
//! search request (embedding, keyword query, hydration, graph) and the two told
//! apart.
//!
//! Loads `USERS × PER_USER` random unit vectors (384 dims, MiniLM's size) into
//! a private collection, then searches top-`K` for random users, first from one
//! client, then from `CONCURRENCY` clients at once, and prints p50/p95/p99.
//! The collection is dropped at the end.
//!
//! ```text
//! eval "$(bash scripts/services.sh env)"; bash scripts/services.sh start
//! cargo bench -p pika-dataplane --bench milvus_search
//! PIKA_BENCH_USERS=1000 PIKA_BENCH_PER_USER=100 cargo bench -p pika-dataplane --bench milvus_search
//! ```
//! Settings (environment): `PIKA_TEST_MILVUS_URL` (required), `PIKA_BENCH_USERS`
//! (200), `PIKA_BENCH_PER_USER` (100), `PIKA_BENCH_QUERIES` (2000),
//! `PIKA_BENCH_K` (50, the service's over-fetch), `PIKA_BENCH_CONCURRENCY` (4),
//! `PIKA_BENCH_INDEX` (HNSW, IVF_FLAT or FLAT).

mod common;

use common::{DIMENSION, setting, unit_vector};
use futures::StreamExt;
use hdrhistogram::Histogram;
use pika_dataplane::ports::VectorIndex;
use pika_dataplane::store::{IndexSpec, MilvusIndex};
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn index_spec() -> IndexSpec {
    match std::env::var("PIKA_BENCH_INDEX")
        .unwrap_or_else(|_| "HNSW".into())
        .to_ascii_uppercase()
        .as_str()
    {
        "FLAT" => IndexSpec::Flat,
        "IVF_FLAT" => IndexSpec::IvfFlat {
            nlist: 128,
            nprobe: 16,
        },
        // The service's defaults (config.rs).
        _ => common::default_index(),
    }
}

fn print_histogram(label: &str, h: &Histogram<u64>, wall: Duration) {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{label}: {} searches in {:.1} s ({:.0}/s): p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        h.len(),
        wall.as_secs_f64(),
        h.len() as f64 / wall.as_secs_f64(),
        ms(0.5),
        ms(0.95),
        ms(0.99),
        h.max() as f64 / 1000.0
    );
}

async fn measure(
    index: Arc<MilvusIndex>,
    users: usize,
    queries: usize,
    k: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let latencies: Vec<anyhow::Result<(u64, usize)>> = futures::stream::iter(0..queries)
        .map(|_| {
            let index = index.clone();
            let (user, query) = {
                let mut rng = rand::rng();
                (rng.random_range(0..users), unit_vector(&mut rng))
            };
            async move {
                let t = Instant::now();
                let hits = index.search(&format!("user-{user}"), &query, k).await?;
                Ok((t.elapsed().as_micros() as u64, hits.len()))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let wall = started.elapsed();
    let mut h = Histogram::<u64>::new(3)?;
    let mut short = 0;
    for r in latencies {
        let (us, n) = r?;
        h.record(us.max(1))?;
        if n < k.min(setting("PIKA_BENCH_PER_USER", 100)) {
            short += 1;
        }
    }
    print_histogram(&format!("concurrency {concurrency}"), &h, wall);
    if short > 0 {
        println!("  ({short} searches returned fewer than min(k, per-user) hits)");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Ok(url) = std::env::var("PIKA_TEST_MILVUS_URL") else {
        println!("SKIPPED: set PIKA_TEST_MILVUS_URL (eval \"$(bash scripts/services.sh env)\")");
        return Ok(());
    };
    let users = setting("PIKA_BENCH_USERS", 200);
    let per_user = setting("PIKA_BENCH_PER_USER", 100);
    let queries = setting("PIKA_BENCH_QUERIES", 2000);
    let k = setting("PIKA_BENCH_K", 50);
    let concurrency = setting("PIKA_BENCH_CONCURRENCY", 4);
    let index_spec = index_spec();
    println!(
        "Milvus search alone: {users} users x {per_user} vectors x {DIMENSION} dims, top-{k}, {index_spec:?}"
    );
    let options = common::options(url, "bench", index_spec.clone());
    let index = Arc::new(MilvusIndex::new(options.clone(), "bench", DIMENSION));
    let result = async {
        index.ready().await?;
        let load = Instant::now();
        let loads: Vec<_> = futures::stream::iter(0..users)
            .map(|u| {
                let index = index.clone();
                let items: Vec<(String, Vec<f32>)> = {
                    let mut rng = rand::rng();
                    (0..per_user)
                        .map(|i| (format!("fact-{u}-{i}"), unit_vector(&mut rng)))
                        .collect()
                };
                async move { index.upsert(&format!("user-{u}"), &items).await }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for r in loads {
            r?;
        }
        println!(
            "loaded {} vectors in {:.1} s (each upsert waits until searchable)",
            users * per_user,
            load.elapsed().as_secs_f64()
        );
        // Warm-up: connections, segment loading.
        measure(index.clone(), users, 100, k, 1).await?;
        measure(index.clone(), users, queries, k, 1).await?;
        measure(index.clone(), users, queries, k, concurrency).await?;
        anyhow::Ok(())
    }
    .await;
    MilvusIndex::drop_prefix(options).await?;
    result
}
