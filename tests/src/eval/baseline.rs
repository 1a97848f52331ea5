//! What a user could do instead of a memory service: keep the transcript and
//! search its raw turns. Three baselines, computed in the same run as the
//! service's figures: BM25 over the turns, dense retrieval with the service's
//! own embedder, and their reciprocal-rank fusion.
//!
//! The BM25 here is deliberately plain and standard (Okapi, k1 = 1.2,
//! b = 0.75; lowercase words with diacritics folded so Vietnamese typed
//! without tone marks still matches; a short English stop list; no stemming,
//! no synonyms): the transcript search a developer would write in an
//! afternoon, not our product's keyword index.

use pika_common::text::{fold, syllables};
use std::collections::HashMap;

/// Standard English stop words (a short, common list) and Vietnamese particles.
const STOP: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no",
    "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to",
    "was", "will", "with", "what", "when", "where", "who", "how", "do", "does", "did", "i", "you", "la",
    "va", "cua", "thi", "ma", "a", "nhe", "nha",
];

/// Tokens of the plain baseline: folded words minus stop words.
pub fn tokens(text: &str) -> Vec<String> {
    syllables(text)
        .into_iter()
        .map(|w| fold(&w))
        .filter(|w| !STOP.contains(&w.as_str()))
        .collect()
}

/// An in-memory Okapi BM25 index over a list of documents.
pub struct Bm25 {
    docs: Vec<HashMap<String, u32>>,
    lengths: Vec<f32>,
    avg_len: f32,
    df: HashMap<String, u32>,
}

impl Bm25 {
    const K1: f32 = 1.2;
    const B: f32 = 0.75;

    pub fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Bm25 {
        let mut docs = Vec::new();
        let mut lengths = Vec::new();
        let mut df: HashMap<String, u32> = HashMap::new();
        for t in texts {
            let mut tf: HashMap<String, u32> = HashMap::new();
            let toks = tokens(t);
            lengths.push(toks.len() as f32);
            for w in toks {
                *tf.entry(w).or_default() += 1;
            }
            for w in tf.keys() {
                *df.entry(w.clone()).or_default() += 1;
            }
            docs.push(tf);
        }
        let avg_len = if lengths.is_empty() {
            1.0
        } else {
            (lengths.iter().sum::<f32>() / lengths.len() as f32).max(1.0)
        };
        Bm25 {
            docs,
            lengths,
            avg_len,
            df,
        }
    }

    /// Score of every document for the query (0 where nothing matches).
    pub fn scores(&self, query: &str) -> Vec<f32> {
        let n = self.docs.len() as f32;
        let mut q = tokens(query);
        q.sort();
        q.dedup();
        let mut out = vec![0.0; self.docs.len()];
        for term in &q {
            let Some(&df) = self.df.get(term) else { continue };
            let idf = (1.0 + (n - df as f32 + 0.5) / (df as f32 + 0.5)).ln();
            for (i, doc) in self.docs.iter().enumerate() {
                if let Some(&tf) = doc.get(term) {
                    let tf = tf as f32;
                    let norm = 1.0 - Self::B + Self::B * self.lengths[i] / self.avg_len;
                    out[i] += idf * tf * (Self::K1 + 1.0) / (tf + Self::K1 * norm);
                }
            }
        }
        out
    }
}

/// Indices of the `k` best scores, best first (ties keep document order).
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Reciprocal-rank fusion (k = 60) of several full rankings.
pub fn rrf(rankings: &[Vec<usize>], n: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n];
    for r in rankings {
        for (rank, &doc) in r.iter().enumerate() {
            out[doc] += 1.0 / (60.0 + rank as f32 + 1.0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bm25_prefers_rare_matching_terms() {
        let idx = Bm25::new(["I have a cat named Miu", "I like football", "the cat and the dog"]);
        let s = idx.scores("Miu the cat");
        assert_eq!(top_k(&s, 1), vec![0]);
        assert_eq!(idx.scores("zebra"), vec![0.0, 0.0, 0.0]);
    }

    #[test]
    fn folded_vietnamese_matches() {
        let idx = Bm25::new(["Mình nuôi mèo", "con chó"]);
        assert_eq!(top_k(&idx.scores("meo"), 1), vec![0]);
    }

    #[test]
    fn rrf_rewards_agreement() {
        let s = rrf(&[vec![0, 1, 2], vec![1, 0, 2]], 3);
        assert!(s[0] > s[2] && s[1] > s[2]);
    }
}
