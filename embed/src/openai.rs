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

/// An async-openai client for any OpenAI-compatible endpoint, making exactly
/// one request per call: retries belong to the caller (a job's retry with
/// backoff). async-openai 0.30 retries 5xx and 429 internally for up to 15
/// minutes unless given a policy; its API takes only a `backoff` policy, and
/// one with no time budget makes one request. The extractor uses it too.
pub fn openai_client(
    base_url: &str,
    api_key: &str,
    timeout: Duration,
) -> Result<Client<OpenAIConfig>, reqwest::Error> {
    let http = reqwest::Client::builder().timeout(timeout).build()?;
    let config = OpenAIConfig::new().with_api_base(base_url).with_api_key(api_key);
    let backoff = backoff::ExponentialBackoff {
        max_elapsed_time: Some(Duration::ZERO),
        ..Default::default()
    };
    Ok(Client::with_config(config)
        .with_http_client(http)
        .with_backoff(backoff))
}

impl OpenAiEmbedder {
    pub fn new(opts: OpenAiEmbedderOptions) -> Result<Self, EmbedError> {
        let client = openai_client(&opts.base_url, &opts.api_key, opts.timeout)
            .map_err(|e| EmbedError::Unavailable(e.to_string()))?;
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
            pika_common::vector::normalize(&mut v);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Reads one HTTP request (headers, then a `content-length` body).
    async fn read_request(sock: &mut TcpStream) -> Option<()> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let header_end = loop {
            let n = sock.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < header_end + len {
            let n = sock.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(())
    }

    /// A server that answers every request with 503 and counts the requests.
    async fn overloaded_server() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    while read_request(&mut sock).await.is_some() {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let body = "overloaded";
                        let reply = format!(
                            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if sock.write_all(reply.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (format!("http://{addr}/v1"), hits)
    }

    #[tokio::test]
    async fn a_server_error_is_one_request_and_left_to_the_caller() {
        let (base_url, hits) = overloaded_server().await;
        let embedder = OpenAiEmbedder::new(OpenAiEmbedderOptions {
            base_url,
            api_key: "sk-test".into(),
            model: "test-embed".into(),
            dimension: 8,
            request_dimensions: false,
            timeout: Duration::from_secs(5),
        })
        .expect("embedder");
        // async-openai's own retry would keep going for minutes.
        let result = tokio::time::timeout(Duration::from_secs(10), embedder.embed(vec!["hi".into()]))
            .await
            .expect("fails fast, no internal retries");
        match result {
            Err(EmbedError::Unavailable(m)) => assert!(m.contains("overloaded"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "exactly one request");
    }
}
