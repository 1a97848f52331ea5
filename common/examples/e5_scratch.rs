use pika_common::embed::{E5Embedder, E5Options, E5Weights, Embedder};
use std::time::Instant;
#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let w = match args.next().as_deref() { Some("q4") => E5Weights::Q4, Some("f32") => E5Weights::F32, _ => E5Weights::Auto };
    let threads: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(200);
    let mut o = E5Options::new("models/multilingual-e5-small-q4/e5-small-q4.bin");
    o.weights = w; o.threads = threads;
    let e = E5Embedder::load(o).unwrap();
    let qs = ["thú cưng của bé là gì", "What pets does the child have?", "con mèo của bé", "What does the child like to eat?", "bé thích chơi gì ở công viên", "favorite games and toys"];
    for i in 0..10 { e.embed_one(qs[i % 6]).await.unwrap(); }
    let mut v = Vec::new();
    for i in 0..n { let t = Instant::now(); e.embed_one(qs[i % 6]).await.unwrap(); v.push(t.elapsed().as_secs_f64()*1000.0); }
    v.sort_by(f64::total_cmp);
    println!("{:?} threads={threads} p50={:.2} p99={:.2}", w, v[n/2], v[n*99/100]);
}
