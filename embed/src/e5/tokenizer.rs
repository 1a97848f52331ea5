//! XLM-R's SentencePiece unigram tokenizer, from the vocabulary in the model file.
//!
//! The pipeline, as the reference engine runs it: map every codepoint through
//! the file's normalisation table (NFKC-style folding, control characters
//! dropped, whitespace to a space), collapse runs of spaces, put the
//! metaspace `▁` before the text unless it starts with a space, turn spaces
//! into `▁`, then pick the segmentation with the highest total piece score
//! (Viterbi over character positions). A character no piece covers becomes
//! `<unk>` on its own, scored ten below the lowest piece (SentencePiece's
//! unknown penalty). Ties go to the first segmentation found, scanning start
//! positions left to right and, for each, pieces shortest first.

use super::file::Vocab;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const METASPACE: char = '\u{2581}';
/// SentencePiece scores an unknown character this far below the worst piece.
const UNKNOWN_PENALTY: f32 = 10.0;

/// FNV-1a: short keys, hundreds of lookups a query; SipHash's DoS resistance
/// buys nothing for a fixed vocabulary.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

pub(super) struct Tokenizer {
    pieces: FnvMap<Box<str>, u32>,
    scores: Vec<f32>,
    unk_score: f32,
    /// Longest piece in bytes: no longer span needs a lookup.
    max_piece_bytes: usize,
    normalization: HashMap<char, Box<[char]>>,
    pub bos: u32,
    pub eos: u32,
    unk: u32,
}

impl Tokenizer {
    pub fn new(vocab: Vocab, normalization: HashMap<char, Box<[char]>>) -> Self {
        let mut pieces = FnvMap::with_capacity_and_hasher(vocab.pieces.len(), Default::default());
        let mut max_piece_bytes = 1;
        for (id, piece) in vocab.pieces.into_iter().enumerate() {
            // `<unk>` is never matched as text; it is the fallback below.
            if piece.is_empty() || id as u32 == vocab.unk {
                continue;
            }
            max_piece_bytes = max_piece_bytes.max(piece.len());
            // A duplicated piece keeps its first id.
            pieces.entry(piece.into_boxed_str()).or_insert(id as u32);
        }
        let lowest = vocab.scores.iter().copied().fold(f32::INFINITY, f32::min);
        Tokenizer {
            pieces,
            unk_score: lowest - UNKNOWN_PENALTY,
            scores: vocab.scores,
            max_piece_bytes,
            normalization,
            bos: vocab.bos,
            eos: vocab.eos,
            unk: vocab.unk,
        }
    }

    /// The normalised text with metaspaces, and the byte offset of every
    /// character boundary in it (first 0, last the length).
    fn normalize(&self, text: &str) -> (String, Vec<usize>) {
        let mut chars: Vec<char> = Vec::with_capacity(text.len() + 1);
        for c in text.chars() {
            let mapped = match self.normalization.get(&c) {
                Some(to) => to,
                None => std::slice::from_ref(&c),
            };
            for &m in mapped.iter() {
                if m == ' ' && chars.last() == Some(&' ') {
                    continue;
                }
                chars.push(m);
            }
        }
        let mut out = String::with_capacity(chars.len() * 3 + 3);
        let mut bounds = Vec::with_capacity(chars.len() + 2);
        if chars.first() != Some(&' ') {
            bounds.push(0);
            out.push(METASPACE);
        }
        for c in chars {
            bounds.push(out.len());
            out.push(if c == ' ' { METASPACE } else { c });
        }
        bounds.push(out.len());
        (out, bounds)
    }

    /// Token ids of `text` without `<s>`/`</s>`; the caller adds the
    /// `query: `/`passage: ` prefix.
    pub fn content_ids(&self, text: &str) -> Vec<u32> {
        let (s, bounds) = self.normalize(text);
        let n = bounds.len() - 1;
        // best[i]: highest score of a segmentation of the first i characters;
        // back[i]: its last token and where that token starts.
        let mut best = vec![f32::NEG_INFINITY; n + 1];
        let mut back = vec![(self.unk, 0usize); n + 1];
        best[0] = 0.0;
        for i in 0..n {
            let here = best[i];
            if here == f32::NEG_INFINITY {
                continue;
            }
            let start = bounds[i];
            for e in i + 1..=n {
                let end = bounds[e];
                if end - start > self.max_piece_bytes {
                    break;
                }
                if let Some(&id) = self.pieces.get(&s[start..end]) {
                    let score = here + self.scores[id as usize];
                    if score > best[e] {
                        best[e] = score;
                        back[e] = (id, i);
                    }
                }
            }
            let score = here + self.unk_score;
            if score > best[i + 1] {
                best[i + 1] = score;
                back[i + 1] = (self.unk, i);
            }
        }
        let mut ids = Vec::with_capacity(n);
        let mut i = n;
        while i > 0 {
            let (id, from) = back[i];
            ids.push(id);
            i = from;
        }
        ids.reverse();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: enough pieces to check the pipeline by hand.
    fn toy() -> Tokenizer {
        let pieces = [
            "<s>", "<pad>", "</s>", "<unk>", "▁", "▁con", "▁mèo", "mèo", "▁co", "n", "▁a", "b", "ab",
        ];
        let scores = [
            0.0, 0.0, 0.0, 0.0, -2.0, -3.0, -4.0, -5.0, -3.5, -3.0, -4.0, -6.0, -5.0,
        ];
        let vocab = Vocab {
            pieces: pieces.iter().map(|s| s.to_string()).collect(),
            scores: scores.to_vec(),
            bos: 0,
            eos: 2,
            unk: 3,
        };
        let mut norm = HashMap::new();
        norm.insert('\t', vec![' '].into_boxed_slice());
        norm.insert('\u{1}', Vec::new().into_boxed_slice());
        Tokenizer::new(vocab, norm)
    }

    #[test]
    fn picks_the_best_segmentation() {
        let t = toy();
        assert_eq!(t.content_ids("con mèo"), vec![5, 6]);
        // "▁ab": "▁a"+"b" scores -10, "▁"+"ab" scores -7.
        assert_eq!(t.content_ids("ab"), vec![4, 12]);
    }

    #[test]
    fn spaces_are_normalised_and_collapsed() {
        let t = toy();
        assert_eq!(t.content_ids("con \t  mèo"), t.content_ids("con mèo"));
        assert_eq!(t.content_ids("con\u{1} mèo"), t.content_ids("con mèo"));
        // A leading space is the metaspace itself, not an extra one.
        assert_eq!(t.content_ids(" con"), t.content_ids("con"));
        // A trailing space stays a lone metaspace.
        assert_eq!(t.content_ids("con "), vec![5, 4]);
    }

    #[test]
    fn unknown_characters_become_unk_one_each() {
        let t = toy();
        assert_eq!(t.content_ids("xy"), vec![4, 3, 3]);
        assert_eq!(t.content_ids(""), vec![4]);
    }

    #[test]
    fn unk_is_never_matched_as_text() {
        let t = toy();
        assert!(!t.content_ids("<unk>").is_empty());
        assert!(!t.pieces.contains_key("<unk>"));
    }
}
