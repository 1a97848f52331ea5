//! Semantic cache precision on a labelled set written for this project
//! (`tests/data/semantic_pairs.tsv`, Vietnamese and English, paraphrases and
//! near misses): with the local embedder and the sidecar's own matcher at the
//! default threshold, how many paraphrases hit, and that no different question
//! ever does. Prints the figures for docs/BENCHMARKS.md.

use pika_common::cache_policy::CachePolicySpec;
use pika_embed::{Embedder, MiniLmEmbedder, MiniLmOptions};
use pika_sidecar::cache::key::{Digest128, normalize_query};
use pika_sidecar::cache::semantic::{SemanticEntry, best_match};
use pika_tests::support::{have_model, model_dir};
use std::collections::BTreeMap;
use std::sync::Arc;

struct Pair {
    same: bool,
    lang: String,
    kind: String,
    cached: String,
    new: String,
}

fn pairs() -> Vec<Pair> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/semantic_pairs.tsv");
    let text = std::fs::read_to_string(path).expect("pairs file");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 5, "bad row: {l}");
            Pair {
                same: f[0] == "same",
                lang: f[1].into(),
                kind: f[2].into(),
                cached: f[3].into(),
                new: f[4].into(),
            }
        })
        .collect()
}

/// The sidecar's decision for one pair: exact key, else semantic match.
fn hits(p: &Pair, cached: &[f32], new: &[f32], threshold: f32, guard: bool) -> bool {
    let (a, b) = (normalize_query(&p.cached), normalize_query(&p.new));
    if a == b {
        return true;
    }
    let params = Digest128([0; 16]);
    let entry = SemanticEntry {
        params,
        exact: Digest128([1; 16]),
        query: a,
        embedding: Arc::from(cached.to_vec()),
    };
    if guard {
        best_match([&entry], params, &b, new, threshold).is_some()
    } else {
        pika_common::vector::dot(cached, new) >= threshold
    }
}

#[tokio::test]
async fn no_false_hits_at_the_default_threshold() {
    if !have_model() {
        return;
    }
    let pairs = pairs();
    assert!(pairs.len() >= 100, "the set must hold at least 100 pairs");
    let embedder = MiniLmEmbedder::load(MiniLmOptions::new(model_dir())).expect("model");
    let texts: Vec<String> = pairs
        .iter()
        .flat_map(|p| [p.cached.clone(), p.new.clone()])
        .collect();
    let vectors = embedder.embed(texts).await.expect("embed");
    let default = CachePolicySpec::default().semantic.threshold as f32;

    let mut rows: BTreeMap<(String, String, &str), (usize, usize)> = BTreeMap::new();
    let mut false_hits = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        let hit = hits(p, &vectors[2 * i], &vectors[2 * i + 1], default, true);
        let label = if p.same { "same" } else { "different" };
        let r = rows.entry((p.lang.clone(), p.kind.clone(), label)).or_default();
        r.0 += 1;
        r.1 += hit as usize;
        if hit && !p.same {
            false_hits.push(format!("{:?} ~ {:?}", p.cached, p.new));
        }
    }
    println!(
        "semantic precision at threshold {default} ({} pairs):",
        pairs.len()
    );
    println!("| lang | kind | label | pairs | hits |");
    for ((lang, kind, label), (n, h)) in &rows {
        println!("| {lang} | {kind} | {label} | {n} | {h} |");
    }
    for threshold in [0.85f32, 0.90, 0.92, 0.95, 0.97] {
        for guard in [true, false] {
            let (mut same, mut same_hits, mut diff, mut diff_hits) = (0, 0, 0, 0);
            for (i, p) in pairs.iter().enumerate() {
                let hit = hits(p, &vectors[2 * i], &vectors[2 * i + 1], threshold, guard);
                if p.same {
                    same += 1;
                    same_hits += hit as usize;
                } else {
                    diff += 1;
                    diff_hits += hit as usize;
                }
            }
            println!(
                "threshold {threshold:.2} guard {}: paraphrase hit rate {same_hits}/{same} ({:.1}%), false hits {diff_hits}/{diff} ({:.1}%)",
                if guard { "on " } else { "off" },
                100.0 * same_hits as f64 / same as f64,
                100.0 * diff_hits as f64 / diff as f64
            );
        }
    }
    assert!(
        false_hits.is_empty(),
        "false hits at the default threshold: {false_hits:#?}"
    );
}
