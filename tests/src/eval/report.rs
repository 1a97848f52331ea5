//! Figures of one evaluation run, printed as tables or JSON.

use super::{KS, ordered_groups};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Answered-at-k counts and reciprocal ranks of one group of questions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    pub questions: usize,
    /// Questions answered within the top 1, 3, 5, 10.
    pub answered: [usize; 4],
    pub reciprocal_rank_sum: f64,
}

impl Counts {
    /// Adds one question whose first relevant result sits at `first` (0-based).
    pub fn add(&mut self, first: Option<usize>) {
        self.questions += 1;
        if let Some(rank) = first {
            for (i, k) in KS.iter().enumerate() {
                if rank < *k {
                    self.answered[i] += 1;
                }
            }
            self.reciprocal_rank_sum += 1.0 / (rank as f64 + 1.0);
        }
    }

    pub fn recall(&self, k: usize) -> f64 {
        let i = KS.iter().position(|x| *x == k).unwrap_or(KS.len() - 1);
        self.answered[i] as f64 / self.questions.max(1) as f64
    }

    pub fn mrr(&self) -> f64 {
        self.reciprocal_rank_sum / self.questions.max(1) as f64
    }
}

/// Scores of one retrieval system, per group ("all", "category N", "tag T").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemScores {
    pub system: String,
    pub groups: BTreeMap<String, Counts>,
}

impl SystemScores {
    pub fn new(name: &str) -> SystemScores {
        SystemScores {
            system: name.to_string(),
            groups: BTreeMap::new(),
        }
    }

    pub fn all(&self) -> Counts {
        self.groups.get("all").cloned().unwrap_or_default()
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub samples: usize,
    pub turns: usize,
    pub conversations: usize,
    pub dropped_questions: usize,
    pub ingest_seconds: f64,
    pub ingest_per_second: f64,
    pub search_p50_ms: f64,
    pub search_p99_ms: f64,
    /// The service first, then the baselines.
    pub systems: Vec<SystemScores>,
}

impl Report {
    /// The service's overall counts.
    pub fn pika(&self) -> Counts {
        self.systems.first().map(SystemScores::all).unwrap_or_default()
    }

    /// Human-readable tables (Markdown).
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} samples, {} turns, {} questions ({} without usable evidence dropped)",
            self.samples,
            self.turns,
            self.pika().questions,
            self.dropped_questions
        );
        let _ = writeln!(
            s,
            "ingest: {} conversations in {:.1} s ({:.1}/s); search p50 {:.1} ms, p99 {:.1} ms\n",
            self.conversations,
            self.ingest_seconds,
            self.ingest_per_second,
            self.search_p50_ms,
            self.search_p99_ms
        );
        let _ = writeln!(s, "| system | R@1 | R@3 | R@5 | R@10 | MRR |");
        let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- |");
        for sys in &self.systems {
            let c = sys.all();
            let _ = writeln!(
                s,
                "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                sys.system,
                c.recall(1),
                c.recall(3),
                c.recall(5),
                c.recall(10),
                c.mrr()
            );
        }
        let _ = writeln!(s);
        let names: Vec<&str> = self.systems.iter().map(|x| x.system.as_str()).collect();
        let _ = writeln!(s, "R@10 by group (n = questions); R@3 in brackets");
        let _ = writeln!(s, "| group | n | {} |", names.join(" | "));
        let _ = writeln!(s, "| --- | --- |{}", " --- |".repeat(names.len()));
        if let Some(first) = self.systems.first() {
            for (group, counts) in ordered_groups(&first.groups) {
                let cells: Vec<String> = self
                    .systems
                    .iter()
                    .map(|sys| {
                        let c = sys.groups.get(group).cloned().unwrap_or_default();
                        format!("{:.3} ({:.3})", c.recall(10), c.recall(3))
                    })
                    .collect();
                let _ = writeln!(s, "| {group} | {} | {} |", counts.questions, cells.join(" | "));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_and_mrr() {
        let mut c = Counts::default();
        c.add(Some(0));
        c.add(Some(4));
        c.add(None);
        c.add(Some(9));
        assert_eq!(c.recall(1), 0.25);
        assert_eq!(c.recall(5), 0.5);
        assert_eq!(c.recall(10), 0.75);
        assert!((c.mrr() - (1.0 + 0.2 + 0.1) / 4.0).abs() < 1e-9);
    }
}
