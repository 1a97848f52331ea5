//! OpenAI-compatible `/v1/embeddings` (OpenAI, Azure-style gateways, vLLM,
//! text-embeddings-inference, Ollama...) through async-openai, any base URL.

use super::{EmbedError, Embedder};
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::{CreateEmbeddingRequest, EmbeddingInput};
use async_trait::async_trait;
use std::time::Duration;

/// Options of the remote embedder.
#[derive(Debug, Clone)]
pub struct OpenAiEmbedderOptions {
    /// Base URL including `/v1`, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    /// Expected dimension; replies of another size are rejected.
    pub dimension: usize,
    /// Ask the server to shorten vectors (text-embedding-3 models only).
    pub request_dimensions: bool,
    pub timeout: Duration,
}

/// Remote embedder.
pub struct OpenAiEmbedder {
    client: Client<OpenAIConfig>,
    opts: OpenAiEmbedderOptions,
}

impl OpenAiEmbedder {
    pub fn new(opts: OpenAiEmbedderOptions) -> Result<Self, EmbedError> {
        let http = reqwest::Client::builder()
            .timeout(opts.timeout)
            .build()
            .map_err(|e| EmbedError::Unavailable(e.to_string()))?;
        let config = OpenAIConfig::new()
            .with_api_base(&opts.base_url)
            .with_api_key(&opts.api_key);
        // Retries belong to the caller (job retry with backoff); fail fast here.
        let backoff = backoff::ExponentialBackoff {
            max_elapsed_time: Some(Duration::ZERO),
            ..Default::default()
        };
        let client = Client::with_config(config)
            .with_http_client(http)
            .with_backoff(backoff);
        Ok(OpenAiEmbedder { client, opts })
    }
}

pub(crate) fn classify(e: OpenAIError) -> EmbedError {
    match e {
        OpenAIError::Reqwest(e) => EmbedError::Unavailable(e.to_string()),
        OpenAIError::JSONDeserialize(e, body) => EmbedError::BadReply(format!(
            "{e}; body starts {:?}",
            body.chars().take(200).collect::<String>()
        )),
        OpenAIError::ApiError(e) => EmbedError::Unavailable(e.message),
        other => EmbedError::BadReply(other.to_string()),
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let n = texts.len();
        let request = CreateEmbeddingRequest {
            model: self.opts.model.clone(),
            input: EmbeddingInput::StringArray(texts),
            encoding_format: None,
            user: None,
            dimensions: self.opts.request_dimensions.then_some(self.opts.dimension as u32),
        };
        let reply = self.client.embeddings().create(request).await.map_err(classify)?;
        if reply.data.len() != n {
            return Err(EmbedError::BadReply(format!(
                "asked for {n} vectors, got {}",
                reply.data.len()
            )));
        }
        let mut out = vec![Vec::new(); n];
        for item in reply.data {
            let idx = item.index as usize;
            if idx >= n || !out[idx].is_empty() {
                return Err(EmbedError::BadReply(format!("bad or repeated index {idx}")));
            }
            if item.embedding.len() != self.opts.dimension {
                return Err(EmbedError::BadReply(format!(
                    "expected dimension {}, got {}",
                    self.opts.dimension,
                    item.embedding.len()
                )));
            }
            let mut v = item.embedding;
            crate::vector::normalize(&mut v);
            out[idx] = v;
        }
        Ok(out)
    }

    fn model_id(&self) -> &str {
        &self.opts.model
    }

    fn dimension(&self) -> usize {
        self.opts.dimension
    }
}
