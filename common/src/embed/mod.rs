//! Embedding providers.
//!
//! One trait, two implementations: the local all-MiniLM-L6-v2 on candle (the
//! embedded default, no network) and any OpenAI-compatible `/v1/embeddings`
//! endpoint. Both return L2-normalised vectors, so a dot product is the cosine.
//! The sidecar and the dataplane share these so a query embedded by one is
//! usable by the other when `model_id` and dimension match.

mod minilm;
mod openai;

pub use minilm::{MiniLmEmbedder, MiniLmOptions};
pub use openai::{OpenAiEmbedder, OpenAiEmbedderOptions};

use async_trait::async_trait;

/// Why embedding failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedding model files missing or unreadable at {path}: {reason}")]
    ModelFiles { path: String, reason: String },
    #[error("tokenizer failed: {0}")]
    Tokenizer(String),
    #[error("model inference failed: {0}")]
    Inference(String),
    #[error("embedding service unavailable: {0}")]
    Unavailable(String),
    #[error("embedding service returned an unusable reply: {0}")]
    BadReply(String),
    #[error("embedder is shut down")]
    Closed,
}

impl EmbedError {
    /// Transient errors are worth retrying (network, overload); others are not.
    pub fn is_transient(&self) -> bool {
        matches!(self, EmbedError::Unavailable(_) | EmbedError::Closed)
    }
}

/// Turns texts into unit vectors.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// Embeds all `texts` in one call; output order matches input order.
    /// Latency-sensitive callers (a search waiting on a query) use this.
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError>;

    /// Like [`Embedder::embed`], for background work (extraction); providers
    /// with a shared local model run these after waiting queries.
    async fn embed_bulk(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed(texts).await
    }

    /// Stable identifier of the model (stored beside vectors; mismatches mean `reindex`).
    fn model_id(&self) -> &str;

    /// Vector dimension.
    fn dimension(&self) -> usize;

    /// Embeds one text.
    async fn embed_one(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut v = self.embed(vec![text.to_string()]).await?;
        v.pop()
            .ok_or_else(|| EmbedError::BadReply("no vector returned".into()))
    }
}
