//! Query-embedding latency of the local MiniLM embedder, alone.
//!
//! `cargo run --release -p pika-common --example embed_bench -- [MODEL_DIR] [ITERATIONS]`
//!
//! Prints p50/p99 for one query at a time (the cost a search pays on a cache
//! miss), then throughput and per-request latency with several concurrent
//! callers (micro-batching at work), for 1 and 2 inference threads.

use pika_common::embed::{Embedder, MiniLmEmbedder, MiniLmOptions};
use std::sync::Arc;
use std::time::Instant;

const QUERIES: &[&str] = &[
    "thú cưng của bé là gì",
    "What pets does the child have?",
    "con mèo của bé",
    "What does the child like to eat?",
    "bé thích chơi gì ở công viên",
    "favorite games and toys",
];

fn pct(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

async fn sequential(e: &MiniLmEmbedder, n: usize) -> Vec<f64> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        e.embed_one(QUERIES[i % QUERIES.len()]).await.expect("embed");
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    v.sort_by(f64::total_cmp);
    v
}

async fn concurrent(e: Arc<MiniLmEmbedder>, callers: usize, per_caller: usize) -> (f64, Vec<f64>) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let e = Arc::clone(&e);
            tokio::spawn(async move {
                let mut v = Vec::with_capacity(per_caller);
                for i in 0..per_caller {
                    let t = Instant::now();
                    e.embed_one(QUERIES[(c + i) % QUERIES.len()])
                        .await
                        .expect("embed");
                    v.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                v
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    (rate, all)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "models/all-MiniLM-L6-v2".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(300);
    for threads in [1usize, 2] {
        let mut opts = MiniLmOptions::new(&dir);
        opts.threads = threads;
        let e = Arc::new(MiniLmEmbedder::load(opts).expect("model loads"));
        sequential(&e, 20).await; // warm-up
        let s = sequential(&e, n).await;
        println!(
            "threads={threads} sequential: n={n} p50={:.2} ms p99={:.2} ms max={:.2} ms ({:.0} queries/s)",
            pct(&s, 0.5),
            pct(&s, 0.99),
            s[s.len() - 1],
            1000.0 / (s.iter().sum::<f64>() / s.len() as f64)
        );
        for callers in [4usize, 16] {
            let (rate, lat) = concurrent(Arc::clone(&e), callers, n / callers.max(1) * 2).await;
            println!(
                "threads={threads} callers={callers:>2}: {rate:.0} queries/s, p50={:.2} ms p99={:.2} ms",
                pct(&lat, 0.5),
                pct(&lat, 0.99)
            );
        }
    }
}
