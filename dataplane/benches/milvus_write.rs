//! Milvus write cost through the service's own adapter (`MilvusIndex::upsert`,
//! which returns only once its rows are searchable), so a change to the write
//! path can be judged by what it costs Milvus, not only by how long it takes.
//!
//! Two phases, each `PIKA_BENCH_WRITES` upserts of `PIKA_BENCH_ROWS` rows for
//! random users, `PIKA_BENCH_CONCURRENCY` at once (the worker's jobs in
//! flight):
//! - **new rows**: ids never written before, a job's first attempt;
//! - **rewrites**: the same ids again with new vectors, a retried job.
//!
//! For each it prints wall time, upserts per second, per-upsert p50/p95/p99 and
//! the CPU seconds the Milvus process used (from `/proc`), per upsert. At the
//! end every user's rows are searched: each id must come back exactly once
//! (a rewrite that left its old copy would show as a duplicate).
//!
//! ```text
//! eval "$(bash scripts/services.sh env)"; bash scripts/services.sh start-milvus
//! cargo bench -p pika-dataplane --bench milvus_write
//! ```
//! Settings (environment): `PIKA_TEST_MILVUS_URL` (required), `PIKA_BENCH_WRITES`
//! (1000), `PIKA_BENCH_ROWS` (4: three facts and an episode), `PIKA_BENCH_USERS`
//! (100), `PIKA_BENCH_CONCURRENCY` (8), `PIKA_BENCH_MILVUS_PID` (found from
//! `/proc` when unset: the process running `milvus run standalone`).

mod common;

use common::{DIMENSION, setting, unit_vector};
use futures::StreamExt;
use hdrhistogram::Histogram;
use pika_dataplane::ports::VectorIndex;
use pika_dataplane::store::MilvusIndex;
use rand::Rng;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Linux's `USER_HZ`: `/proc/<pid>/stat` counts CPU time in these.
const TICKS_PER_SECOND: f64 = 100.0;

/// The Milvus server process: `PIKA_BENCH_MILVUS_PID`, or the one whose
/// command line runs `milvus run standalone`.
fn milvus_pid() -> Option<u32> {
    if let Some(pid) = std::env::var("PIKA_BENCH_MILVUS_PID")
        .ok()
        .and_then(|p| p.parse().ok())
    {
        return Some(pid);
    }
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        (cmdline.contains("milvus run standalone") && !cmdline.contains("milvus-server")).then_some(pid)
    })
}

/// CPU seconds (user + system, all threads) the process has used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// One user's rows of one phase.
type Batch = (String, Vec<(String, Vec<f32>)>);

fn batches(writes: usize, users: usize, rows: usize) -> Vec<Batch> {
    let mut rng = rand::rng();
    (0..writes)
        .map(|w| {
            let user = format!("user-{}", rng.random_range(0..users));
            let items = (0..rows)
                .map(|r| (format!("fact-{w}-{r}"), unit_vector(&mut rng)))
                .collect();
            (user, items)
        })
        .collect()
}

async fn phase(
    label: &str,
    index: &Arc<MilvusIndex>,
    batches: &[Batch],
    concurrency: usize,
    pid: Option<u32>,
) -> anyhow::Result<()> {
    let cpu_before = pid.and_then(cpu_seconds);
    let started = Instant::now();
    let latencies: Vec<anyhow::Result<u64>> = futures::stream::iter(batches)
        .map(|(user, items)| {
            let index = index.clone();
            async move {
                let t = Instant::now();
                index.upsert(user, items).await?;
                Ok(t.elapsed().as_micros() as u64)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let wall = started.elapsed();
    let cpu = cpu_before.zip(pid.and_then(cpu_seconds)).map(|(a, b)| b - a);
    let mut h = Histogram::<u64>::new(3)?;
    for us in latencies {
        h.record(us?.max(1))?;
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let cpu_text = cpu.map_or("Milvus CPU not read".to_string(), |s| {
        format!(
            "Milvus CPU {s:.1} s ({:.1} ms per upsert, {:.2} cores)",
            s * 1000.0 / batches.len() as f64,
            s / wall.as_secs_f64()
        )
    });
    println!(
        "{label}: {} upserts in {:.1} s ({:.0}/s): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms; {cpu_text}",
        batches.len(),
        wall.as_secs_f64(),
        batches.len() as f64 / wall.as_secs_f64(),
        ms(0.5),
        ms(0.95),
        ms(0.99),
    );
    Ok(())
}

/// Every user's rows come back from a search, each id once.
async fn verify(index: &MilvusIndex, batches: &[Batch]) -> anyhow::Result<()> {
    let mut per_user: HashMap<&str, usize> = HashMap::new();
    for (user, items) in batches {
        *per_user.entry(user.as_str()).or_default() += items.len();
    }
    let mut duplicates = 0;
    let mut missing = 0;
    for (user, expected) in &per_user {
        let hits = index
            .search(user, &unit_vector(&mut rand::rng()), expected + 10)
            .await?;
        let mut ids: Vec<&str> = hits.iter().map(|(id, _)| id.as_str()).collect();
        ids.sort_unstable();
        let found = ids.len();
        ids.dedup();
        duplicates += found - ids.len();
        missing += expected.saturating_sub(ids.len());
    }
    println!(
        "check: {} users, {} rows: {duplicates} duplicates, {missing} missing",
        per_user.len(),
        per_user.values().sum::<usize>()
    );
    anyhow::ensure!(
        duplicates == 0 && missing == 0,
        "the writes left duplicates or lost rows"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Ok(url) = std::env::var("PIKA_TEST_MILVUS_URL") else {
        println!("SKIPPED: set PIKA_TEST_MILVUS_URL (eval \"$(bash scripts/services.sh env)\")");
        return Ok(());
    };
    let writes = setting("PIKA_BENCH_WRITES", 1000);
    let rows = setting("PIKA_BENCH_ROWS", 4);
    let users = setting("PIKA_BENCH_USERS", 100);
    let concurrency = setting("PIKA_BENCH_CONCURRENCY", 8);
    let pid = milvus_pid();
    println!(
        "Milvus writes: {writes} upserts x {rows} rows x {DIMENSION} dims over {users} users, {concurrency} in flight (Milvus pid {pid:?})"
    );
    let options = common::options(url, "benchw", common::default_index());
    let index = Arc::new(MilvusIndex::new(options.clone(), "bench", DIMENSION));
    let result = async {
        index.ready().await?;
        let fresh = batches(writes, users, rows);
        phase("new rows", &index, &fresh, concurrency, pid).await?;
        let mut rng = rand::rng();
        let rewrites: Vec<Batch> = fresh
            .iter()
            .map(|(user, items)| {
                let items = items
                    .iter()
                    .map(|(id, _)| (id.clone(), unit_vector(&mut rng)))
                    .collect();
                (user.clone(), items)
            })
            .collect();
        phase("rewrites", &index, &rewrites, concurrency, pid).await?;
        verify(&index, &rewrites).await
    }
    .await;
    MilvusIndex::drop_prefix(options).await?;
    result
}
