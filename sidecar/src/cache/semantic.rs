//! Semantic matching: is a new query a paraphrase of a cached one?
//!
//! Two tests, both required. The cosine of the query embeddings must reach
//! the policy threshold; and a lexical guard must find no sign that the
//! questions differ in a way embeddings blur. The guard exists because the
//! local MiniLM tokenizer strips Vietnamese diacritics ("sợ ma" and "sợ má"
//! embed identically) and because sentence embeddings are weak on numbers and
//! negation ("2 con mèo" / "3 con mèo", "likes" / "dislikes"). Candidates are
//! only ever the same user's entries with the same parameter key: the caller
//! passes that partition, never a global list.

use super::key::Digest128;
use pika_common::text::{fold, syllables};
use pika_common::vector::dot;
use std::collections::HashSet;
use std::sync::Arc;

/// A cached query that later queries may match.
#[derive(Debug, Clone)]
pub struct SemanticEntry {
    pub params: Digest128,
    pub exact: Digest128,
    /// Normalised query text (for the lexical guard).
    pub query: String,
    /// Unit vector of the query.
    pub embedding: Arc<[f32]>,
}

/// Words that flip the meaning of a question.
const NEGATIONS: &[&str] = &[
    "không", "chẳng", "chả", "chưa", "đừng", "ghét", "not", "no", "never", "dont", "doesnt", "didnt", "isnt",
    "arent", "wont", "cant", "dislike", "dislikes", "hate", "hates", "n't",
];

fn negated(words: &[String]) -> bool {
    words
        .iter()
        .any(|w| NEGATIONS.contains(&w.as_str()) || w.ends_with("n't"))
}

fn numbers(words: &[String]) -> Vec<&str> {
    words
        .iter()
        .filter(|w| w.chars().any(|c| c.is_ascii_digit()))
        .map(String::as_str)
        .collect()
}

/// People a question can be about: a different person is a different question
/// ("sinh nhật của bé" / "sinh nhật của mẹ bé"). Pronouns that name the child
/// ("em", "con", "bé") are not here: they are interchangeable.
const PEOPLE: &[&str] = &[
    "mẹ",
    "má",
    "bố",
    "ba",
    "cha",
    "anh",
    "chị",
    "ông",
    "bà",
    "cô",
    "chú",
    "bác",
    "dì",
    "cậu",
    "mợ",
    "thím",
    "thầy",
    "bạn",
    "mom",
    "mum",
    "mommy",
    "mother",
    "dad",
    "daddy",
    "father",
    "brother",
    "sister",
    "grandma",
    "grandpa",
    "grandmother",
    "grandfather",
    "granny",
    "aunt",
    "uncle",
    "teacher",
    "friend",
    "cousin",
];

/// Comparisons, where word order carries the meaning ("mèo hơn chó").
const COMPARISONS: &[&str] = &["hơn", "than", "rather", "prefer", "prefers"];

fn people(words: &[String]) -> HashSet<&str> {
    words
        .iter()
        .map(String::as_str)
        .filter(|w| PEOPLE.contains(w))
        .collect()
}

/// The words both questions use, in the order `words` uses them.
fn shared_order<'a>(words: &'a [String], other: &HashSet<&str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    words
        .iter()
        .map(String::as_str)
        .filter(|w| other.contains(w) && seen.insert(*w))
        .collect()
}

/// Words (with apostrophes folded in, "don't" → "dont") for the guard.
fn words(q: &str) -> Vec<String> {
    syllables(&q.replace(['\'', '’'], ""))
}

/// True when nothing lexical says the two questions differ: same numbers, same
/// polarity, the same people, the same order in a comparison, and no word of
/// one that is another word of the other save for its tone marks.
pub fn lexically_compatible(a: &str, b: &str) -> bool {
    let wa = words(a);
    let wb = words(b);
    if numbers(&wa) != numbers(&wb) || negated(&wa) != negated(&wb) || people(&wa) != people(&wb) {
        return false;
    }
    let set_a: HashSet<&str> = wa.iter().map(String::as_str).collect();
    let set_b: HashSet<&str> = wb.iter().map(String::as_str).collect();
    let compares = |set: &HashSet<&str>| COMPARISONS.iter().any(|c| set.contains(c));
    if (compares(&set_a) || compares(&set_b)) && shared_order(&wa, &set_b) != shared_order(&wb, &set_a) {
        return false;
    }
    let only_a: Vec<&str> = set_a.difference(&set_b).copied().collect();
    let only_b: Vec<&str> = set_b.difference(&set_a).copied().collect();
    let folded_b: HashSet<String> = only_b.iter().map(|w| fold(w)).collect();
    !only_a.iter().any(|w| folded_b.contains(&fold(w)))
}

/// The best entry of `candidates` (all in the caller's partition) that `query`
/// may reuse, with its cosine.
pub fn best_match<'a>(
    candidates: impl IntoIterator<Item = &'a SemanticEntry>,
    params: Digest128,
    query: &str,
    embedding: &[f32],
    threshold: f32,
) -> Option<(&'a SemanticEntry, f32)> {
    candidates
        .into_iter()
        .filter(|e| e.params == params && e.embedding.len() == embedding.len())
        .map(|e| (e, dot(&e.embedding, embedding)))
        .filter(|(e, cos)| *cos >= threshold && lexically_compatible(&e.query, query))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(params: u8, query: &str, v: &[f32]) -> SemanticEntry {
        SemanticEntry {
            params: Digest128([params; 16]),
            exact: Digest128([0; 16]),
            query: query.into(),
            embedding: v.into(),
        }
    }

    #[test]
    fn guard_rejects_tone_numbers_and_negation() {
        assert!(!lexically_compatible("bé có sợ ma không", "bé có sợ má không"));
        assert!(!lexically_compatible("bé có 2 con mèo", "bé có 3 con mèo"));
        assert!(!lexically_compatible(
            "what does minh like",
            "what does minh dislike"
        ));
        assert!(!lexically_compatible("bé thích ăn gì", "bé không thích ăn gì"));
        assert!(!lexically_compatible("does he like cats", "doesn't he like cats"));
        assert!(!lexically_compatible("sinh nhật của bé", "sinh nhật của mẹ bé"));
        assert!(!lexically_compatible(
            "bé thích mèo hơn chó",
            "bé thích chó hơn mèo"
        ));
        assert!(!lexically_compatible(
            "likes cats more than dogs",
            "likes dogs more than cats"
        ));
        assert!(lexically_compatible("bé thích ăn gì", "con thích ăn món gì"));
        assert!(lexically_compatible(
            "bé thích mèo hơn chó à",
            "bé thích mèo hơn chó hả"
        ));
        assert!(lexically_compatible(
            "what's minh's favourite food",
            "what is minh's favorite food"
        ));
    }

    #[test]
    fn matches_only_within_the_partition_and_above_threshold() {
        let same = entry(1, "bé thích ăn gì", &[1.0, 0.0]);
        let other_params = entry(2, "bé thích ăn gì", &[1.0, 0.0]);
        let far = entry(1, "bé thích ăn gì nhất", &[0.0, 1.0]);
        let all = [other_params, far, same];
        let hit = best_match(&all, Digest128([1; 16]), "con thích ăn gì", &[1.0, 0.0], 0.95);
        assert_eq!(hit.map(|(e, _)| e.params), Some(Digest128([1; 16])));
        assert!(
            best_match(
                &all[..2],
                Digest128([1; 16]),
                "con thích ăn gì",
                &[1.0, 0.0],
                0.95
            )
            .is_none()
        );
        assert!(best_match(&all, Digest128([3; 16]), "con thích ăn gì", &[1.0, 0.0], 0.95).is_none());
    }
}
