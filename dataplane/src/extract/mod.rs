//! Extractors (the built-in rules and an OpenAI-compatible language model)
//! and what every extraction shares whichever extractor runs: episodes,
//! relative dates and the user's names.

pub mod episodes;
pub mod lexicon;
pub mod llm;
pub mod names;
pub mod rules;
pub mod time;

pub use llm::{LlmExtractor, LlmOptions};
pub use rules::RuleExtractor;
