//! Latency and throughput of the local embedders side by side: all-MiniLM-L6-v2
//! and multilingual-e5-small (4-bit file), on candle, CPU.
//!
//! `cargo run --release -p pika-common --example embed_bench -- [MINILM_DIR] [E5_FILE] [ITERATIONS]`
//!
//! For each model and 1 and 2 threads: p50/p99 for one query at a time (the
//! cost a search pays on a cache miss), throughput and per-request latency with
//! several concurrent callers (micro-batching at work), and stored texts per
//! second embedded in batches of 32 (the extraction worker's path); first,
//! MiniLM's texts per second with 8 worker jobs at once, its batches grouped
//! by length and not, alternated in one run. A model
//! whose files are missing is skipped with a message.
//!
//! "threads" means what each embedder's option means: MiniLM runs that many
//! inference threads, one batch each; e5 runs one batch at a time and splits
//! its matrix products over that many threads. candle's f32 GEMM (MiniLM, and
//! e5 in a build without AVX2) also reads `RAYON_NUM_THREADS`; scripts/bench.sh
//! runs this once with it at 1 and once at 2.

use pika_embed::{E5Embedder, E5Options, Embedder, MiniLmEmbedder, MiniLmOptions};
use std::path::Path;
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

/// Stored texts of the kind the worker embeds: facts and child turns.
const PASSAGES: &[&str] = &[
    "Bé nuôi một con mèo tên là Miu",
    "Con thích ăn kem dâu lắm mẹ ơi",
    "Hôm qua con đi sở thú với bố, con thấy con voi to ơi là to",
    "Bạn thân nhất của con là Lan, bạn ấy học cùng lớp",
    "Con sợ bóng tối, tối nào con cũng bật đèn ngủ",
    "Cuối tuần con hay đá bóng với anh Minh",
    "Con bị ngã xe đạp, đầu gối chảy máu, đau lắm",
    "Bà ngoại hay kể chuyện cổ tích cho con nghe",
    "I have a cat named Miu and she sleeps on my bed",
    "My favourite food is strawberry ice cream",
    "Yesterday we went to the zoo and I saw a really big elephant",
    "I'm scared of the dark so I sleep with a nightlight",
    "When I grow up I want to be a pilot",
    "we play football every saturday with my cousin",
    "The child likes dinosaurs, especially the T. rex",
    "The child is learning to swim at the pool near home",
];

fn pct(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

async fn sequential(e: &dyn Embedder, n: usize) -> Vec<f64> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        e.embed_one(QUERIES[i % QUERIES.len()]).await.expect("embed");
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    v.sort_by(f64::total_cmp);
    v
}

async fn concurrent(e: Arc<dyn Embedder>, callers: usize, per_caller: usize) -> (f64, Vec<f64>) {
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

/// Stored texts per second, `batches` calls of 32 texts each.
async fn passages(e: &dyn Embedder, batches: usize) -> f64 {
    let batch: Vec<String> = PASSAGES.iter().cycle().take(32).map(|s| s.to_string()).collect();
    e.embed_passages(batch.clone()).await.expect("embed"); // warm-up
    let started = Instant::now();
    for _ in 0..batches {
        e.embed_passages(batch.clone()).await.expect("embed");
    }
    (batches * batch.len()) as f64 / started.elapsed().as_secs_f64()
}

/// Facts and episodes as one extraction job sends them: short facts, and the
/// child's turns with the question they answer.
const JOB: &[&str] = &[
    "Bé nuôi mèo tên Miu",
    "Bé thích ăn kem",
    "Bé thích chơi đá bóng với bạn",
    "Bé 7 tuổi",
    "Tuyệt quá! Cậu hay chơi gì?\nMình thích chơi đá bóng với bạn. Năm nay mình 7 tuổi.",
    "Chào cậu! Hôm nay cậu thế nào?\nMình nuôi mèo tên Miu. Mình thích ăn kem lắm.",
    "The child has a dog called Max",
    "Nice! What do you like to play?\nI like playing football with my friends. I am 8 years old.",
];

/// Texts per second with 8 jobs embedding at once, as the worker does.
async fn worker_jobs(e: Arc<dyn Embedder>, rounds: usize) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let e = Arc::clone(&e);
            tokio::spawn(async move {
                for _ in 0..rounds {
                    let texts = JOB.iter().map(|s| s.to_string()).collect();
                    e.embed_passages(texts).await.expect("embed");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    (8 * rounds * JOB.len()) as f64 / started.elapsed().as_secs_f64()
}

/// MiniLM with and without grouping a batch by length, alternated in one run.
async fn minilm_grouping(dir: &str) {
    for round in 1..=2 {
        for grouped in [false, true] {
            let mut opts = MiniLmOptions::new(dir);
            opts.group_by_length = grouped;
            let e: Arc<dyn Embedder> = Arc::new(MiniLmEmbedder::load(opts).expect("MiniLM loads"));
            worker_jobs(Arc::clone(&e), 2).await; // warm-up
            let rate = worker_jobs(e, 20).await;
            println!(
                "minilm threads=1 worker jobs (8 at once), group_by_length={grouped:<5} round {round}: {rate:.0} texts/s"
            );
        }
    }
}

struct Row {
    model: &'static str,
    threads: usize,
    p50: f64,
    p99: f64,
    passages: f64,
}

async fn measure(model: &'static str, threads: usize, e: Arc<dyn Embedder>, n: usize, rows: &mut Vec<Row>) {
    sequential(e.as_ref(), 20).await; // warm-up
    let s = sequential(e.as_ref(), n).await;
    println!(
        "{model} threads={threads} one query: n={n} p50={:.2} ms p99={:.2} ms max={:.2} ms ({:.0} queries/s)",
        pct(&s, 0.5),
        pct(&s, 0.99),
        s[s.len() - 1],
        1000.0 / (s.iter().sum::<f64>() / s.len() as f64)
    );
    for callers in [4usize, 16] {
        let (rate, lat) = concurrent(Arc::clone(&e), callers, (n / callers).max(1) * 2).await;
        println!(
            "{model} threads={threads} callers={callers:>2}: {rate:.0} queries/s, p50={:.2} ms p99={:.2} ms",
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
    }
    let rate = passages(e.as_ref(), 4).await;
    println!("{model} threads={threads} passages in batches of 32: {rate:.0} passages/s");
    rows.push(Row {
        model,
        threads,
        p50: pct(&s, 0.5),
        p99: pct(&s, 0.99),
        passages: rate,
    });
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let minilm_dir = args.next().unwrap_or_else(|| "models/all-MiniLM-L6-v2".into());
    let e5_file = args
        .next()
        .unwrap_or_else(|| "models/multilingual-e5-small-q4/e5-small-q4.bin".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(300);
    println!(
        "RAYON_NUM_THREADS={}",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "(unset)".into())
    );
    if Path::new(&minilm_dir).join("model.safetensors").is_file() {
        minilm_grouping(&minilm_dir).await;
    }
    let mut rows = Vec::new();
    for threads in [1usize, 2] {
        if Path::new(&minilm_dir).join("model.safetensors").is_file() {
            let mut opts = MiniLmOptions::new(&minilm_dir);
            opts.threads = threads;
            let e: Arc<dyn Embedder> = Arc::new(MiniLmEmbedder::load(opts).expect("MiniLM loads"));
            measure("minilm", threads, e, n, &mut rows).await;
        } else {
            println!("minilm skipped: no model in {minilm_dir} (scripts/fetch-model.sh)");
        }
        if Path::new(&e5_file).is_file() {
            let mut opts = E5Options::new(&e5_file);
            opts.threads = threads;
            let e5 = E5Embedder::load(opts).expect("e5 loads");
            let model = if e5.is_quantized() { "e5-q4" } else { "e5-f32" };
            measure(model, threads, Arc::new(e5), n, &mut rows).await;
        } else {
            println!("e5 skipped: no model at {e5_file} (scripts/fetch-model.sh)");
        }
    }
    println!("\nmodel     threads  query p50 ms  query p99 ms  passages/s");
    for r in &rows {
        println!(
            "{:<9} {:>7}  {:>12.2}  {:>12.2}  {:>10.0}",
            r.model, r.threads, r.p50, r.p99, r.passages
        );
    }
}
