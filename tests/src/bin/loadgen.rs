//! `pika-loadgen`: open-loop load generator for the PIKA memory API.
//!
//! Replays the SDD load mix (70% search, 30% extract by default) at a fixed
//! request rate for a fixed duration and prints p50/p95/p99, throughput and
//! error rate per endpoint. Open loop: requests start on schedule whether or
//! not earlier ones finished, so a slow server shows up as latency, not as a
//! politely reduced rate. `--ramp` steps the rate up and reports the highest
//! rate whose search p99 stays under `--p99-budget-ms` with no errors.
//!
//! Only loopback or explicitly given addresses are targeted; every loop is
//! bounded by `--duration` and `--max-in-flight`.
//!
//! Slightly over 400 lines: one binary (arguments, schedule, workers, report).

use anyhow::{Context, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use rand::Rng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "pika-loadgen",
    about = "Open-loop load generator for the PIKA memory API"
)]
struct Args {
    /// Base URL of the API (dataplane or sidecar).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    url: String,
    /// API key with extract and search permissions.
    #[arg(long, env = "PIKA_API_KEY", default_value = "")]
    key: String,
    /// Requests per second.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Seconds to run (per step with --ramp).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Fraction of requests that are searches; the rest are extracts.
    #[arg(long, default_value_t = 0.7)]
    search_fraction: f64,
    /// Distinct children the requests are spread over.
    #[arg(long, default_value_t = 20)]
    users: usize,
    /// Conversations extracted per user (waiting for completion) before measuring.
    #[arg(long, default_value_t = 3)]
    prefill: usize,
    /// Prefill, then exit without measuring (so a caller can snapshot between).
    #[arg(long)]
    prefill_only: bool,
    /// Stop starting new requests while this many are in flight (counted as errors).
    #[arg(long, default_value_t = 2000)]
    max_in_flight: usize,
    /// Ramp: `START:STEP:MAX` requests per second; each step runs --duration seconds.
    #[arg(long)]
    ramp: Option<String>,
    /// Search p99 budget for --ramp.
    #[arg(long, default_value_t = 100.0)]
    p99_budget_ms: f64,
    /// Prefix of generated user ids (keeps runs apart).
    #[arg(long, default_value = "load")]
    user_prefix: String,
    /// Also report every this many seconds (a soak's per-minute figures):
    /// one CSV line per interval and endpoint on stdout, prefixed `series,`,
    /// and in `--series-file` when given. 0: only the final report.
    #[arg(long, default_value_t = 0)]
    interval_secs: u64,
    /// Where the per-interval CSV lines also go.
    #[arg(long)]
    series_file: Option<std::path::PathBuf>,
}

/// Latencies and errors of one interval of a run.
struct Interval {
    search: Histogram<u64>,
    extract: Histogram<u64>,
    search_errors: u64,
    extract_errors: u64,
}

impl Interval {
    fn new() -> Interval {
        Interval {
            search: hist(),
            extract: hist(),
            search_errors: 0,
            extract_errors: 0,
        }
    }

    /// `series,INDEX,START_S,ENDPOINT,COUNT,P50_MS,P95_MS,P99_MS,ERRORS` lines.
    fn csv(&self, index: usize, start_s: u64) -> Vec<String> {
        [
            ("search", &self.search, self.search_errors),
            ("extract", &self.extract, self.extract_errors),
        ]
        .into_iter()
        .map(|(name, h, errors)| {
            let ms = |q: f64| {
                if h.is_empty() {
                    0.0
                } else {
                    h.value_at_quantile(q) as f64 / 1000.0
                }
            };
            format!(
                "series,{index},{start_s},{name},{},{:.2},{:.2},{:.2},{errors}",
                h.len() + errors,
                ms(0.5),
                ms(0.95),
                ms(0.99)
            )
        })
        .collect()
    }
}

/// Writes the CSV lines of one interval to stdout and the series file.
fn emit(lines: &[String], file: &mut Option<std::fs::File>) {
    use std::io::Write;
    for l in lines {
        println!("{l}");
        if let Some(f) = file {
            let _ = writeln!(f, "{l}");
        }
    }
}

const QUERIES: &[&str] = &[
    "thú cưng của bé là gì",
    "con mèo của bé",
    "bé thích chơi gì",
    "bé thích ăn gì",
    "gia đình của bé",
    "bé học môn gì ở trường",
    "What pets does the child have?",
    "What does the child like to eat?",
    "favorite games",
    "Who are the child's friends?",
    "What sports does the child play?",
    "How does the child feel about school?",
];

const PETS: &[(&str, &str)] = &[
    ("mèo", "cat"),
    ("chó", "dog"),
    ("thỏ", "rabbit"),
    ("cá vàng", "goldfish"),
];
const NAMES: &[&str] = &[
    "Miu", "Max", "Bông", "Lu", "Kem", "Bin", "Na", "Tom", "Mochi", "Bo",
];
const FOODS: &[(&str, &str)] = &[
    ("kem", "ice cream"),
    ("phở", "noodles"),
    ("pizza", "pizza"),
    ("xoài", "mango"),
];
const GAMES: &[(&str, &str)] = &[
    ("đá bóng", "football"),
    ("xích đu", "the swings"),
    ("lego", "lego"),
    ("vẽ tranh", "drawing"),
];

fn conversation(rng: &mut impl Rng, user: &str, n: u64) -> Value {
    let name = NAMES.choose(rng).copied().unwrap_or("Miu");
    let (pet_vi, pet_en) = *PETS.choose(rng).unwrap_or(&PETS[0]);
    let (food_vi, food_en) = *FOODS.choose(rng).unwrap_or(&FOODS[0]);
    let (game_vi, game_en) = *GAMES.choose(rng).unwrap_or(&GAMES[0]);
    let age = rng.random_range(4..11);
    let turns = if rng.random_bool(0.5) {
        vec![
            json!({"role": "assistant", "content": "Chào cậu! Hôm nay cậu thế nào?"}),
            json!({"role": "user", "content": format!("Mình nuôi {pet_vi} tên {name}. Mình thích ăn {food_vi} lắm.")}),
            json!({"role": "assistant", "content": "Tuyệt quá! Cậu hay chơi gì?"}),
            json!({"role": "user", "content": format!("Mình thích chơi {game_vi} với bạn. Năm nay mình {age} tuổi.")}),
        ]
    } else {
        vec![
            json!({"role": "assistant", "content": "Hi! What did you do today?"}),
            json!({"role": "user", "content": format!("I have a {pet_en} called {name}. I love {food_en}.")}),
            json!({"role": "assistant", "content": "Nice! What do you like to play?"}),
            json!({"role": "user", "content": format!("I like playing {game_en} with my friends. I am {age} years old.")}),
        ]
    };
    json!({"user_id": user, "conversation_id": format!("conv-{n}-{}", rng.random::<u32>()), "conversation": turns})
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Search,
    Extract,
}

struct Sample {
    kind: Kind,
    micros: u64,
    ok: bool,
    /// When the request was due, since the start of the step.
    due: Duration,
}

struct Report {
    rate: f64,
    search: Histogram<u64>,
    extract: Histogram<u64>,
    search_errors: u64,
    extract_errors: u64,
    elapsed: Duration,
    error_examples: Vec<String>,
}

fn hist() -> Histogram<u64> {
    // 1 µs .. 120 s at 3 significant digits: constant, valid bounds.
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

impl Report {
    fn print(&self) {
        let secs = self.elapsed.as_secs_f64();
        println!("rate {:.0} rps, {:.1} s", self.rate, secs);
        println!(
            "{:<8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
            "endpoint", "count", "rps", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"
        );
        for (name, h, errors) in [
            ("search", &self.search, self.search_errors),
            ("extract", &self.extract, self.extract_errors),
        ] {
            let count = h.len() + errors;
            if count == 0 {
                continue;
            }
            let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            println!(
                "{:<8} {:>8} {:>9.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7.2}%",
                name,
                count,
                count as f64 / secs,
                ms(0.50),
                ms(0.95),
                ms(0.99),
                h.max() as f64 / 1000.0,
                100.0 * errors as f64 / count as f64
            );
        }
        for e in &self.error_examples {
            println!("  error: {e}");
        }
    }

    fn search_p99_ms(&self) -> f64 {
        self.search.value_at_quantile(0.99) as f64 / 1000.0
    }

    fn errors(&self) -> u64 {
        self.search_errors + self.extract_errors
    }
}

async fn send(http: &reqwest::Client, args: &Args, kind: Kind, body: Value) -> Result<(), String> {
    let path = match kind {
        Kind::Search => "/v1/search_facts",
        Kind::Extract => "/v1/extract_facts",
    };
    let mut req = http.post(format!("{}{path}", args.url)).json(&body);
    if !args.key.is_empty() {
        req = req.bearer_auth(&args.key);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    let expected = match kind {
        Kind::Search => status.as_u16() == 200,
        Kind::Extract => status.as_u16() == 202,
    };
    if expected {
        Ok(())
    } else {
        Err(format!(
            "{path} {status}: {}",
            text.chars().take(200).collect::<String>()
        ))
    }
}

async fn run_step(http: &reqwest::Client, args: &Args, rate: f64, seq: &AtomicUsize) -> Report {
    let (tx, rx) = mpsc::unbounded_channel::<(Sample, Option<String>)>();
    let file = args.series_file.as_ref().map(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .expect("series file opens")
    });
    let every = (args.interval_secs > 0).then(|| Duration::from_secs(args.interval_secs));
    let collector = tokio::spawn(collect(rx, rate, every, file));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (rate * args.duration as f64).round() as u64;
    let started = Instant::now();
    let mut rng = rand::rng();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let kind = if rng.random_bool(args.search_fraction.clamp(0.0, 1.0)) {
            Kind::Search
        } else {
            Kind::Extract
        };
        let user = format!("{}-{}", args.user_prefix, rng.random_range(0..args.users.max(1)));
        let body = match kind {
            Kind::Search => {
                json!({"user_id": user, "query": QUERIES.choose(&mut rng).copied().unwrap_or("pets")})
            }
            Kind::Extract => conversation(&mut rng, &user, seq.fetch_add(1, Ordering::Relaxed) as u64),
        };
        if in_flight.load(Ordering::Relaxed) >= args.max_in_flight {
            let _ = tx.send((
                Sample {
                    kind,
                    micros: 0,
                    ok: false,
                    due: due - started,
                },
                Some("client: too many requests in flight".into()),
            ));
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (http, args2, tx, in_flight) = (http.clone(), args.clone(), tx.clone(), in_flight.clone());
        let due = due - started;
        tasks.retain(|t: &tokio::task::JoinHandle<()>| !t.is_finished());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = send(&http, &args2, kind, body).await;
            let micros = t.elapsed().as_micros() as u64;
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = tx.send((
                Sample {
                    kind,
                    micros,
                    ok: r.is_ok(),
                    due,
                },
                r.err(),
            ));
        }));
    }
    drop(tx);
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed();
    collector
        .await
        .unwrap_or_else(|_| Report {
            rate,
            search: hist(),
            extract: hist(),
            search_errors: 0,
            extract_errors: 0,
            elapsed,
            error_examples: vec!["collector panicked".into()],
        })
        .finished(elapsed)
}

/// Records samples as they arrive (so a long run holds histograms, not
/// samples), into the whole run's report and, with `--interval-secs`, into
/// per-interval figures printed as each interval closes.
async fn collect(
    mut rx: mpsc::UnboundedReceiver<(Sample, Option<String>)>,
    rate: f64,
    interval: Option<Duration>,
    mut file: Option<std::fs::File>,
) -> Report {
    let mut report = Report {
        rate,
        search: hist(),
        extract: hist(),
        search_errors: 0,
        extract_errors: 0,
        elapsed: Duration::ZERO,
        error_examples: Vec::new(),
    };
    let mut intervals: std::collections::BTreeMap<usize, Interval> = Default::default();
    let mut closed = 0usize;
    let started = Instant::now();
    while let Some((s, err)) = rx.recv().await {
        let slot = interval.map(|i| (s.due.as_secs_f64() / i.as_secs_f64()) as usize);
        for (search, extract, search_errors, extract_errors) in std::iter::once((
            &mut report.search,
            &mut report.extract,
            &mut report.search_errors,
            &mut report.extract_errors,
        ))
        .chain(slot.map(|k| {
            let i = intervals.entry(k).or_insert_with(Interval::new);
            (
                &mut i.search,
                &mut i.extract,
                &mut i.search_errors,
                &mut i.extract_errors,
            )
        })) {
            match (s.kind, s.ok) {
                (Kind::Search, true) => {
                    let _ = search.record(s.micros.max(1));
                }
                (Kind::Extract, true) => {
                    let _ = extract.record(s.micros.max(1));
                }
                (Kind::Search, false) => *search_errors += 1,
                (Kind::Extract, false) => *extract_errors += 1,
            }
        }
        if let Some(e) = err
            && report.error_examples.len() < 5
        {
            report.error_examples.push(e);
        }
        // An interval is printed once requests due two intervals later answer
        // (the slowest of its own have answered by then, within the timeout).
        if let Some(i) = interval {
            let now_slot = (started.elapsed().as_secs_f64() / i.as_secs_f64()) as usize;
            while closed + 2 <= now_slot {
                if let Some(done) = intervals.remove(&closed) {
                    emit(&done.csv(closed, closed as u64 * i.as_secs()), &mut file);
                }
                closed += 1;
            }
        }
    }
    if let Some(i) = interval {
        for (k, done) in std::mem::take(&mut intervals) {
            emit(&done.csv(k, k as u64 * i.as_secs()), &mut file);
        }
    }
    report
}

impl Report {
    fn finished(mut self, elapsed: Duration) -> Report {
        self.elapsed = elapsed;
        self
    }
}

async fn prefill(http: &reqwest::Client, args: &Args) -> Result<()> {
    if args.prefill == 0 {
        return Ok(());
    }
    let started = Instant::now();
    let mut rng = rand::rng();
    let mut n = 0u64;
    for u in 0..args.users {
        let user = format!("{}-{u}", args.user_prefix);
        for _ in 0..args.prefill {
            n += 1;
            let body = conversation(&mut rng, &user, 1_000_000 + n);
            let mut req = http
                .post(format!(
                    "{}/v1/extract_facts?wait=true&timeout_ms=30000",
                    args.url
                ))
                .json(&body);
            if !args.key.is_empty() {
                req = req.bearer_auth(&args.key);
            }
            let resp = req.send().await.context("prefill request")?;
            if !resp.status().is_success() {
                bail!(
                    "prefill failed: {} {}",
                    resp.status(),
                    resp.text().await.unwrap_or_default()
                );
            }
        }
    }
    println!(
        "prefilled {n} conversations for {} users in {:.1} s",
        args.users,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.rate <= 0.0 || args.duration == 0 {
        bail!("--rate and --duration must be positive");
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.max_in_flight)
        .timeout(Duration::from_secs(30))
        .build()?;
    prefill(&http, &args).await?;
    if args.prefill_only {
        return Ok(());
    }
    let seq = AtomicUsize::new(0);
    match &args.ramp {
        None => {
            let report = run_step(&http, &args, args.rate, &seq).await;
            report.print();
        }
        Some(spec) => {
            let parts: Vec<f64> = spec
                .split(':')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .context("--ramp START:STEP:MAX")?;
            let [start, step, max] = parts[..] else {
                bail!("--ramp needs START:STEP:MAX")
            };
            if start <= 0.0 || step <= 0.0 {
                bail!("--ramp START and STEP must be positive");
            }
            let mut best = None;
            let mut rate = start;
            while rate <= max {
                let report = run_step(&http, &args, rate, &seq).await;
                report.print();
                let within = report.errors() == 0 && report.search_p99_ms() < args.p99_budget_ms;
                if within {
                    best = Some(rate);
                } else {
                    println!(
                        "-> search p99 {:.1} ms or errors {} over budget at {rate:.0} rps; stopping",
                        report.search_p99_ms(),
                        report.errors()
                    );
                    break;
                }
                rate += step;
            }
            match best {
                Some(r) => println!(
                    "highest rate with search p99 < {} ms and no errors: {r:.0} rps",
                    args.p99_budget_ms
                ),
                None => println!(
                    "no step met search p99 < {} ms with no errors",
                    args.p99_budget_ms
                ),
            }
        }
    }
    Ok(())
}
