//! MiniLM's batches run as passes of similar lengths must give the vectors a
//! text gets alone: grouping only drops padding, which the attention mask
//! already kept out. A mixed batch (short facts, long episodes, a text past
//! the truncation limit) is embedded with grouping on, with it off, and one
//! text at a time.
//!
//! Needs `models/all-MiniLM-L6-v2` (`scripts/fetch-model.sh`): skipped with a
//! message without it, a failure under `CI=true`.

use pika_embed::{Embedder, MiniLmEmbedder, MiniLmOptions};
use std::path::PathBuf;

const MIN_COSINE: f32 = 0.9999;

fn model_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/all-MiniLM-L6-v2"));
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "MiniLM missing in {} (run scripts/fetch-model.sh)",
        dir.display()
    );
    eprintln!(
        "skipped: MiniLM missing in {} (run scripts/fetch-model.sh)",
        dir.display()
    );
    None
}

fn load(dir: &PathBuf, grouped: bool) -> MiniLmEmbedder {
    let mut opts = MiniLmOptions::new(dir);
    opts.group_by_length = grouped;
    MiniLmEmbedder::load(opts).expect("MiniLM loads")
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn grouped_batches_give_the_vectors_each_text_gets_alone() {
    let Some(dir) = model_dir() else { return };
    let long = "we went to the park and played on the swings ".repeat(40);
    let texts: Vec<String> = [
        "Bé nuôi mèo tên Miu",
        "Tuyệt quá! Cậu hay chơi gì?\nMình thích chơi đá bóng với bạn. Năm nay mình 7 tuổi.",
        "I love ice cream",
        long.as_str(),
        "The child has a dog called Max",
        "Nice! What do you like to play?\nI like playing football with my friends. I am 8 years old.",
        "ok",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let grouped = load(&dir, true);
    let padded = load(&dir, false);
    let a = grouped.embed_passages(texts.clone()).await.expect("grouped");
    let b = padded.embed_passages(texts.clone()).await.expect("one pass");
    assert_eq!(a.len(), texts.len());
    assert_eq!(b.len(), texts.len());
    for (i, text) in texts.iter().enumerate() {
        let alone = padded.embed_passages(vec![text.clone()]).await.expect("alone");
        let (with_groups, one_pass) = (cosine(&a[i], &alone[0]), cosine(&b[i], &alone[0]));
        assert!(
            with_groups >= MIN_COSINE && one_pass >= MIN_COSINE,
            "text {i}: grouped {with_groups}, one pass {one_pass} against alone"
        );
    }
}
