//! Extractors: the built-in rules and an OpenAI-compatible language model.

pub mod lexicon;
pub mod llm;
pub mod rules;

pub use llm::{LlmExtractor, LlmOptions};
pub use rules::RuleExtractor;
