//! Relevance and ranking, as pure functions (SDD 5.2.2, DESIGN.md §4.2, §11).
//!
//! similarity = cos + (1 − cos) · keyword_weight · keyword
//!   The (rescaled) vector cosine, lifted by keyword coverage: the absolute
//!   relevance `score_threshold` applies to. A fact whose content or
//!   bilingual tags match the query's terms climbs toward 1.
//! score = w_sim · fused + w_rec · recency + w_rel · relationship
//!   fused = the weighted reciprocal-rank fusion of the dense and BM25
//!   rankings, normalised to 0..1 (`service::search`);
//!   recency = 0.5^(age / half_life), age by when the item was said, counted
//!   back from the newest candidate (newest state first);
//!   relationship = 1 when the fact mentions a topic the query names, else
//!   0.5 · min(n, 4) / 4 where n is the number of other candidate facts sharing
//!   an entity with it (facts connected to other relevant facts matter more;
//!   computed in memory, so ranking needs no graph query).
//! `score_threshold` applies to `similarity`: it is a relevance floor, so a
//! brand-new but unrelated fact is not let through by its recency.

use crate::domain::Fact;
use crate::extract::lexicon::{Concept, concepts_in, matching_tags, tags_of};
use chrono::{DateTime, Utc};
use pika_common::text::{Term, fold, syllables, terms};

/// Configured weights.
#[derive(Debug, Clone, Copy)]
pub struct Weights {
    pub similarity: f32,
    pub recency: f32,
    pub relationship: f32,
    pub half_life_days: f32,
    pub keyword_weight: f32,
}

/// The query's keyword side, computed once per search: its own terms, the
/// topics it names, and the expansion (topic tags) used to find candidates.
#[derive(Debug, Clone)]
pub struct QueryTerms {
    /// Terms the query itself contains: the denominator of the keyword score.
    own: Vec<Term>,
    /// For each own term, the topics it triggers (index into `topics`).
    own_topics: Vec<Vec<usize>>,
    topics: Vec<&'static Concept>,
    /// Own terms plus the tags of the topics the query names.
    expanded: Vec<Term>,
    /// Canonical entities the query names (for the relationship signal).
    pub entities: Vec<String>,
}

impl QueryTerms {
    pub fn parse(query: &str) -> QueryTerms {
        let own = terms(query);
        let topics = concepts_in(query);
        let own_topics = own
            .iter()
            .map(|t| {
                topics
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| {
                        c.triggers
                            .iter()
                            .any(|tr| syllables(tr).iter().any(|s| fold(s) == t.folded))
                    })
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        let mut expanded = own.clone();
        for c in &topics {
            for tag in tags_of(c).iter().chain(std::iter::once(&c.entity.to_string())) {
                for t in terms(tag) {
                    if !expanded.iter().any(|x| x.exact == t.exact) {
                        expanded.push(t);
                    }
                }
            }
        }
        QueryTerms {
            entities: topics.iter().map(|c| c.entity.to_string()).collect(),
            own,
            own_topics,
            topics,
            expanded,
        }
    }

    /// Tags and entities of the topics the query names (its expansion), as text.
    pub fn expansion_tags(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in &self.topics {
            for tag in tags_of(c)
                .into_iter()
                .chain(std::iter::once(c.entity.to_string()))
            {
                if !out.contains(&tag) {
                    out.push(tag);
                }
            }
        }
        out
    }

    /// Folded forms, for the store's keyword candidate search.
    pub fn folded(&self) -> Vec<String> {
        let mut v: Vec<String> = self.expanded.iter().map(|t| t.folded.clone()).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Fraction (0..1) of the query's own terms found in the fact's content, tags
/// or entities. An accented match counts 1, a match only without diacritics
/// 0.6. A query term that names a topic ("thú cưng", "pets") also counts 1
/// when the fact carries that topic's tags (a cat fact is tagged "thú cưng").
pub fn keyword_score(q: &QueryTerms, fact: &Fact) -> f32 {
    if q.own.is_empty() {
        return 0.0;
    }
    let mut exact: Vec<String> = syllables(&fact.content);
    for t in fact.tags.iter().chain(&fact.entities) {
        exact.extend(syllables(t));
    }
    let folded: Vec<String> = exact.iter().map(|s| fold(s)).collect();
    let topic_present: Vec<bool> = q
        .topics
        .iter()
        .map(|c| {
            fact.entities.iter().any(|e| e == c.entity)
                || fact
                    .tags
                    .iter()
                    .any(|tag| matching_tags(c).contains(&tag.as_str()))
        })
        .collect();
    let total: f32 = q
        .own
        .iter()
        .zip(&q.own_topics)
        .map(|(t, topics)| {
            if exact.contains(&t.exact) || topics.iter().any(|&i| topic_present[i]) {
                1.0
            } else if folded.contains(&t.folded) {
                0.6
            } else {
                0.0
            }
        })
        .sum();
    (total / q.own.len() as f32).min(1.0)
}

/// Vector cosine lifted by keyword evidence (see module docs).
pub fn fuse(cosine: f32, keyword: f32, keyword_weight: f32) -> f32 {
    let cos = cosine.clamp(0.0, 1.0);
    (cos + (1.0 - cos) * keyword_weight * keyword.clamp(0.0, 1.0)).clamp(0.0, 1.0)
}

/// 1 for a fact updated now, 0.5 after one half-life.
pub fn recency(updated_at: DateTime<Utc>, now: DateTime<Utc>, half_life_days: f32) -> f32 {
    let age_days = (now - updated_at).num_seconds().max(0) as f32 / 86_400.0;
    if half_life_days <= 0.0 {
        return 1.0;
    }
    0.5f32.powf(age_days / half_life_days)
}

/// Relationship signal (see module docs).
pub fn relationship(fact: &Fact, q: &QueryTerms, related_count: usize) -> f32 {
    if q.entities.iter().any(|e| fact.entities.contains(e)) {
        1.0
    } else {
        0.5 * (related_count.min(4) as f32) / 4.0
    }
}

/// Final ranking score.
pub fn score(w: &Weights, similarity: f32, recency: f32, relationship: f32) -> f32 {
    w.similarity * similarity + w.recency * recency + w.relationship * relationship
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FactStatus, Polarity};
    use pika_common::wire::Category;

    fn fact(content: &str, tags: &[&str], entities: &[&str]) -> Fact {
        Fact {
            fact_id: "f".into(),
            user_id: "u".into(),
            conversation_id: "c".into(),
            content: content.into(),
            category: Category::Other,
            confidence: 0.9,
            entities: entities.iter().map(|s| s.to_string()).collect(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
            kind: crate::domain::MemoryKind::Fact,
            context: None,
            occurred_at: None,
            said_at: None,
            source_turns: vec![1],
            language: "vi".into(),
            status: FactStatus::Active,
            polarity: Polarity::Positive,
            predicate: None,
            supersedes: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            accessed_count: 0,
            last_accessed_at: None,
            attrs: None,
        }
    }

    #[test]
    fn vietnamese_pet_query_matches_cat_fact_through_tags() {
        let cat = fact(
            "Bé nuôi mèo tên Miu.",
            &["mèo", "cat", "thú cưng", "pet"],
            &["cat", "Miu"],
        );
        let swing = fact(
            "Bé thích chơi xích đu và leo cây.",
            &["xích đu", "swing"],
            &["swing"],
        );
        for q in [
            "thú cưng của bé là gì",
            "con mèo của bé",
            "What pets does the child have?",
        ] {
            let qt = QueryTerms::parse(q);
            let k_cat = keyword_score(&qt, &cat);
            let k_swing = keyword_score(&qt, &swing);
            assert!(k_cat >= 0.99, "{q}: cat {k_cat}");
            assert!(k_swing < 0.01, "{q}: swing {k_swing}");
        }
    }

    #[test]
    fn unaccented_match_counts_less() {
        let cat = fact("Bé nuôi mèo.", &[], &[]);
        let k = keyword_score(&QueryTerms::parse("meo"), &cat);
        assert!((0.5..0.7).contains(&k), "{k}");
    }

    #[test]
    fn fusion_keeps_cosine_order_and_bounds() {
        assert!(fuse(0.5, 1.0, 0.85) > fuse(0.3, 1.0, 0.85));
        assert_eq!(fuse(0.43, 0.0, 0.85), 0.43);
        assert!(fuse(1.2, 1.0, 1.0) <= 1.0);
    }

    #[test]
    fn recency_halves_each_half_life() {
        let now = Utc::now();
        let r = recency(now - chrono::Duration::days(30), now, 30.0);
        assert!((r - 0.5).abs() < 0.01);
    }
}
