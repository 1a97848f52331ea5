//! Embedding providers, in their own crate so that only the processes that
//! embed (dataplane, sidecar) compile a neural-network runtime; the operator
//! does not depend on this crate.
//!
//! One trait, three implementations: two local models on candle, no network
//! (all-MiniLM-L6-v2, English only, and multilingual-e5-small in 4 bits,
//! which also reads Vietnamese), and any OpenAI-compatible `/v1/embeddings`
//! endpoint. All return L2-normalised vectors, so a dot product is the cosine.
//! The sidecar and the dataplane share these so a query embedded by one is
//! usable by the other when `model_id` and dimension match.
//!
//! It knows nothing of storage, HTTP routes, caches or Kubernetes.

#![forbid(unsafe_code)]

mod config;
mod e5;
mod length_groups;
mod minilm;
mod openai;
mod queue;

pub use config::{EmbeddingConfig, build};
pub use e5::{E5Embedder, E5Options, E5Prefix, E5Weights};
pub use minilm::{MiniLmEmbedder, MiniLmOptions};
pub use openai::{OpenAiEmbedder, OpenAiEmbedderOptions, openai_client};

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
    #[error("unknown embedding.provider {0:?} (local, minilm, e5, openai)")]
    UnknownProvider(String),
}

impl EmbedError {
    /// Transient errors are worth retrying (network, overload); others are not.
    pub fn is_transient(&self) -> bool {
        matches!(self, EmbedError::Unavailable(_) | EmbedError::Closed)
    }
}

/// Turns texts into unit vectors.
///
/// Queries and stored texts are two kinds of input: [`Embedder::embed`] and
/// [`Embedder::embed_one`] embed *queries* (what a search looks for), and
/// [`Embedder::embed_passages`] embeds *stored texts* (facts, episodes: what a
/// search finds). Symmetric models (MiniLM, OpenAI) treat both alike;
/// asymmetric ones (e5 reads `query: ` and `passage: ` prefixes) do not, so a
/// caller must say which it has.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// Embeds queries; output order matches input order. Latency-sensitive
    /// callers (a search waiting on its query vector) use this.
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError>;

    /// Like [`Embedder::embed`], for background work (extraction,
    /// reindexing); providers with a shared local model run these after
    /// waiting queries. Providers that distinguish the two kinds embed these
    /// as stored texts, like [`Embedder::embed_passages`].
    async fn embed_bulk(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed(texts).await
    }

    /// Embeds stored texts (facts, episodes), at bulk priority.
    async fn embed_passages(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_bulk(texts).await
    }

    /// Stable identifier of the model (stored beside vectors; mismatches mean `reindex`).
    fn model_id(&self) -> &str;

    /// Vector dimension.
    fn dimension(&self) -> usize;

    /// Requests waiting for a local model now, as (queries, bulk); `None`
    /// for providers without a local queue. Exported as a metric.
    fn waiting(&self) -> Option<(usize, usize)> {
        None
    }

    /// Embeds one query.
    async fn embed_one(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut v = self.embed(vec![text.to_string()]).await?;
        v.pop()
            .ok_or_else(|| EmbedError::BadReply("no vector returned".into()))
    }
}
