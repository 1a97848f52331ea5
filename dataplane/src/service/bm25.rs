//! Okapi BM25 over one user's memory, as a pure function of what the
//! metadata store returns (DESIGN.md §4.2, issue 10).
//!
//! Why scored here and not in the database: IDF must be per user (a child's
//! "mèo" is rare in their memory however common it is across all children),
//! and SQLite's FTS5 `bm25()` and Postgres's `ts_rank` both use table-wide
//! statistics (and `ts_rank` is not BM25). The store returns every active item
//! of the user holding a query term, with its index terms, plus the user's
//! item count and mean length; document frequencies are counted over those
//! items, which is exact because every item holding a term is among them.
//!
//! Terms come from [`pika_common::text::index_terms`]: folded syllables,
//! stemmed English, and `~`-marked accented forms (an accented match adds its
//! own term's weight on top of the folded one). Query expansion terms (topic
//! tags a query implies: "thú cưng" → "mèo", "pet") carry a lower weight.

use std::collections::HashMap;

/// BM25 parameters (the usual Okapi defaults).
#[derive(Debug, Clone, Copy)]
pub struct Bm25Params {
    pub k1: f32,
    pub b: f32,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Bm25Params { k1: 1.2, b: 0.75 }
    }
}

/// A query term with its weight (1 for the query's own words).
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedTerm {
    pub term: String,
    pub weight: f32,
}

/// Scores each document (its index terms) for the weighted query terms.
/// `total_docs` and `mean_len` describe the user's whole memory.
pub fn score_all(
    params: Bm25Params,
    query: &[WeightedTerm],
    docs: &[&[String]],
    total_docs: u64,
    mean_len: f32,
) -> Vec<f32> {
    let mut df: HashMap<&str, u32> = HashMap::new();
    let tfs: Vec<HashMap<&str, u32>> = docs
        .iter()
        .map(|terms| {
            let mut tf: HashMap<&str, u32> = HashMap::new();
            for t in terms.iter() {
                *tf.entry(t.as_str()).or_default() += 1;
            }
            tf
        })
        .collect();
    for tf in &tfs {
        for t in tf.keys() {
            *df.entry(t).or_default() += 1;
        }
    }
    // The store's count can lag behind its candidates (old rows, races): never below them.
    let n = (total_docs as f32).max(docs.len() as f32).max(1.0);
    let avg = if mean_len > 0.0 { mean_len } else { 1.0 };
    // One weight per distinct term: the largest (own words beat expansions).
    let mut weights: Vec<(&str, f32)> = Vec::new();
    for q in query {
        match weights.iter_mut().find(|(t, _)| *t == q.term) {
            Some((_, w)) => *w = w.max(q.weight),
            None => weights.push((q.term.as_str(), q.weight)),
        }
    }
    tfs.iter()
        .zip(docs)
        .map(|(tf, terms)| {
            let len = terms.len() as f32;
            weights
                .iter()
                .filter_map(|(term, w)| {
                    let f = *tf.get(term)? as f32;
                    let d = *df.get(term)? as f32;
                    let idf = (1.0 + (n - d + 0.5) / (d + 0.5)).ln();
                    let norm = 1.0 - params.b + params.b * len / avg;
                    Some(w * idf * f * (params.k1 + 1.0) / (f + params.k1 * norm))
                })
                .sum()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(s: &str) -> Vec<String> {
        pika_common::text::index_terms(s)
    }

    fn q(s: &str) -> Vec<WeightedTerm> {
        terms(s)
            .into_iter()
            .map(|term| WeightedTerm { term, weight: 1.0 })
            .collect()
    }

    #[test]
    fn rare_terms_weigh_more_and_accents_add() {
        let docs = [
            terms("Mình nuôi mèo tên Miu"),
            terms("Mình nuoi meo"),
            terms("Mình đi học"),
        ];
        let refs: Vec<&[String]> = docs.iter().map(|d| d.as_slice()).collect();
        let s = score_all(Bm25Params::default(), &q("mèo"), &refs, 3, 4.0);
        assert!(s[0] > s[1], "accented match scores higher: {s:?}");
        assert!(s[1] > 0.0 && s[2] == 0.0, "{s:?}");
        let s = score_all(Bm25Params::default(), &q("meo"), &refs, 3, 4.0);
        assert!(s[0] > 0.0 && s[1] > 0.0, "unaccented query finds both: {s:?}");
    }

    #[test]
    fn expansion_terms_weigh_less() {
        let docs = [terms("I have a cat"), terms("my pet is lovely")];
        let refs: Vec<&[String]> = docs.iter().map(|d| d.as_slice()).collect();
        let query = vec![
            WeightedTerm {
                term: "pet".into(),
                weight: 1.0,
            },
            WeightedTerm {
                term: "cat".into(),
                weight: 0.3,
            },
        ];
        let s = score_all(Bm25Params::default(), &query, &refs, 2, 3.0);
        assert!(s[1] > s[0] && s[0] > 0.0, "{s:?}");
    }
}
