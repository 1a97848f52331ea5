//! `pika-cachebench`: the sidecar's cache measured from a client, against two
//! sidecars (A and B, sharing Redis) in front of one dataplane.
//!
//! Phases, each printing latency per `X-Cache` value:
//! 1. L0 hits: hot queries repeated on sidecar A.
//! 2. L1 hits: queries answered once on A, then asked once each on B (B's L0
//!    is empty for them, L1 has them).
//! 3. Miss overhead: never-repeated queries, alternately straight to the
//!    dataplane and through sidecar B, at a low rate, same run.
//! 4. Hit mix: open loop at rising rates, `--hit-fraction` hot queries and
//!    the rest never repeated; achieved rate, p50/p99, errors.
//!
//! Everything is open loop (requests start on schedule), bounded by
//! `--duration` per step and `--max-in-flight`.

use anyhow::{Context, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "pika-cachebench",
    about = "Cache latency and throughput through the PIKA sidecar"
)]
struct Args {
    /// Sidecar A.
    #[arg(long)]
    sidecar_a: String,
    /// Sidecar B (same Redis as A).
    #[arg(long)]
    sidecar_b: String,
    /// The dataplane itself.
    #[arg(long)]
    direct: String,
    #[arg(long, env = "PIKA_API_KEY")]
    key: String,
    #[arg(long, default_value_t = 20)]
    users: usize,
    /// Requests per phase (1-3).
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Rates for the hit mix, comma-separated.
    #[arg(long, default_value = "500,1000,2000,3000")]
    rates: String,
    #[arg(long, default_value_t = 0.9)]
    hit_fraction: f64,
    /// Seconds per rate of the hit mix.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    #[arg(long, default_value_t = 2000)]
    max_in_flight: usize,
    /// PEM CA certificate to trust (sidecars serving HTTPS with a private CA).
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
}

const HOT: &[&str] = &[
    "bé thích gì",
    "bé thích ăn gì",
    "bé nuôi con gì",
    "what does the child like",
    "bạn thân của bé là ai",
];

/// Latency per `X-Cache` value, plus errors.
#[derive(Default)]
struct Tally {
    by_cache: BTreeMap<String, Histogram<u64>>,
    errors: usize,
}

impl Tally {
    fn record(&mut self, x_cache: &str, micros: u64) {
        let h = self
            .by_cache
            .entry(x_cache.to_string())
            .or_insert_with(|| Histogram::new(3).expect("histogram"));
        let _ = h.record(micros.max(1));
    }

    fn merged(&self) -> Histogram<u64> {
        let mut all = Histogram::new(3).expect("histogram");
        for h in self.by_cache.values() {
            let _ = all.add(h);
        }
        all
    }

    fn print(&self, label: &str) {
        for (cache, h) in &self.by_cache {
            println!(
                "{label:<22} {cache:<8} n={:<6} p50 {:>8.3} ms  p95 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms",
                h.len(),
                ms(h, 0.5),
                ms(h, 0.95),
                ms(h, 0.99),
                h.max() as f64 / 1000.0
            );
        }
        if self.errors > 0 {
            println!("{label:<22} errors {}", self.errors);
        }
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

struct Client {
    http: reqwest::Client,
    key: String,
}

impl Client {
    /// One search: (X-Cache, latency µs), or an error.
    async fn search(&self, base: &str, user: &str, query: &str) -> Result<(String, u64)> {
        let t = Instant::now();
        let resp = self
            .http
            .post(format!("{base}/v1/search_facts"))
            .bearer_auth(&self.key)
            .json(&json!({"user_id": user, "query": query}))
            .send()
            .await?;
        let status = resp.status();
        let cache = resp
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("DIRECT")
            .to_string();
        resp.bytes().await?;
        let micros = t.elapsed().as_micros() as u64;
        if !status.is_success() {
            bail!("status {status}");
        }
        Ok((cache, micros))
    }
}

fn user(i: usize) -> String {
    format!("bench-kid-{i}")
}

async fn prefill(c: &Client, args: &Args) -> Result<()> {
    let sentences = [
        "Mình thích ăn phở lắm",
        "Mình nuôi con mèo tên Miu",
        "Bạn thân của mình là Lan",
    ];
    let mut jobs = Vec::new();
    for u in 0..args.users {
        for s in sentences {
            let resp: serde_json::Value = c
                .http
                .post(format!("{}/v1/extract_facts", args.direct))
                .bearer_auth(&c.key)
                .json(&json!({"user_id": user(u), "conversation_id": format!("c-{u}-{}", jobs.len()),
                    "conversation": [{"role": "user", "content": s}, {"role": "assistant", "content": "Hay quá!"}]}))
                .send()
                .await?
                .json()
                .await?;
            jobs.push(resp["data"]["job_id"].as_str().context("job id")?.to_string());
        }
    }
    for job in jobs {
        for _ in 0..600 {
            let v: serde_json::Value = c
                .http
                .get(format!("{}/v1/jobs/{job}", args.direct))
                .bearer_auth(&c.key)
                .send()
                .await?
                .json()
                .await?;
            if matches!(v["data"]["state"].as_str(), Some("completed" | "failed")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Runs `n` searches one after another (closed loop, one client).
async fn sequential(c: &Client, items: &[(String, String, String)]) -> Tally {
    let mut t = Tally::default();
    for (base, u, q) in items {
        match c.search(base, u, q).await {
            Ok((cache, us)) => t.record(&cache, us),
            Err(_) => t.errors += 1,
        }
    }
    t
}

async fn open_loop(c: Arc<Client>, args: &Args, rate: f64, unique: &AtomicUsize) -> (Tally, f64) {
    let total = (rate * args.duration as f64) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    let mut rng = rand::rng();
    for i in 0..total {
        tokio::time::sleep_until((started + interval.mul_f64(i as f64)).into()).await;
        let u = user(rng.random_range(0..args.users));
        let q = if rng.random_bool(args.hit_fraction) {
            HOT[rng.random_range(0..HOT.len())].to_string()
        } else {
            format!("bé thích gì nhất số {}", unique.fetch_add(1, Ordering::Relaxed))
        };
        if in_flight.load(Ordering::Relaxed) >= args.max_in_flight {
            let _ = tx.send(Err(()));
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (c, tx, in_flight, base) = (c.clone(), tx.clone(), in_flight.clone(), args.sidecar_a.clone());
        tokio::spawn(async move {
            let r = c.search(&base, &u, &q).await.map_err(|_| ());
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = tx.send(r);
        });
    }
    drop(tx);
    let mut t = Tally::default();
    while let Some(r) = rx.recv().await {
        match r {
            Ok((cache, us)) => t.record(&cache, us),
            Err(()) => t.errors += 1,
        }
    }
    let achieved = (t.merged().len() as f64) / started.elapsed().as_secs_f64();
    (t, achieved)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.max_in_flight)
        .timeout(Duration::from_secs(30));
    if let Some(ca) = &args.ca {
        http = http.add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca)?)?);
    }
    let c = Arc::new(Client {
        http: http.build()?,
        key: args.key.clone(),
    });
    prefill(&c, &args).await?;
    println!("prefilled {} users", args.users);

    // 1. L0: warm the hot set on A, then repeat it.
    let a = &args.sidecar_a;
    let warm: Vec<_> = (0..args.users)
        .flat_map(|u| HOT.iter().map(move |q| (a.clone(), user(u), q.to_string())))
        .collect();
    sequential(&c, &warm).await;
    let hot: Vec<_> = (0..args.requests).map(|i| warm[i % warm.len()].clone()).collect();
    sequential(&c, &hot).await.print("L0 hits (A)");

    // 2. L1: distinct queries answered on A, then asked once each on B.
    let n = args.requests.min(1000);
    let distinct: Vec<_> = (0..n)
        .map(|i| {
            (
                args.sidecar_a.clone(),
                user(i % args.users),
                format!("bé thích gì vậy {i}"),
            )
        })
        .collect();
    sequential(&c, &distinct).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // L1 writes are off the request path
    let on_b: Vec<_> = distinct
        .iter()
        .map(|(_, u, q)| (args.sidecar_b.clone(), u.clone(), q.clone()))
        .collect();
    sequential(&c, &on_b).await.print("L1 hits (B)");

    // 3. Misses: never-repeated queries, alternately direct and through B.
    let n = (args.requests / 4).clamp(20, 400);
    let mut direct = Tally::default();
    let mut via = Tally::default();
    for i in 0..n {
        let u = user(i % args.users);
        let q = format!("bé thích con gì số {i}");
        let (base, tally) = if i % 2 == 0 {
            (&args.direct, &mut direct)
        } else {
            (&args.sidecar_b, &mut via)
        };
        match c.search(base, &u, &q).await {
            Ok((cache, us)) => tally.record(&cache, us),
            Err(_) => tally.errors += 1,
        }
    }
    direct.print("misses direct");
    via.print("misses via sidecar B");
    let (d, v) = (direct.merged(), via.merged());
    println!(
        "miss overhead (sidecar - direct): p50 {:+.3} ms, p99 {:+.3} ms",
        ms(&v, 0.5) - ms(&d, 0.5),
        ms(&v, 0.99) - ms(&d, 0.99)
    );

    // 4. Hit mix, open loop.
    let unique = AtomicUsize::new(1_000_000);
    for rate in args.rates.split(',').filter_map(|r| r.trim().parse::<f64>().ok()) {
        let (t, achieved) = open_loop(c.clone(), &args, rate, &unique).await;
        let all = t.merged();
        println!(
            "mix {:.0}% hits @ {rate:.0} rps: achieved {achieved:.0} rps, p50 {:.3} ms, p99 {:.3} ms, errors {}",
            args.hit_fraction * 100.0,
            ms(&all, 0.5),
            ms(&all, 0.99),
            t.errors
        );
        t.print(&format!("  @{rate:.0}"));
    }
    Ok(())
}
