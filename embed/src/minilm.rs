//! all-MiniLM-L6-v2 on candle (CPU), with micro-batching.
//!
//! Why micro-batching over a pool of model copies: on a 2-core machine a second
//! concurrent forward pass only competes for the same cores, while stacking the
//! queued requests into one padded batch amortises the fixed per-pass cost
//! (kernel dispatch, attention setup). A small number of inference threads
//! (default 1) each drain whatever requests are waiting, up to `max_batch`
//! texts, and run them as passes of similar lengths, each padded to its
//! longest member (`length_groups`: facts and episodes differ). Queries
//! (`embed`, a search waiting on it) go before bulk work (`embed_bulk`, the
//! extraction worker): a search never queues behind a worker's batch that has
//! not started yet. Fixed
//! 128-token padding from the shipped `tokenizer.json` is switched off: it made
//! every pass 5-6x slower (DESIGN.md §11).

use super::length_groups::{PASS_OVERHEAD_TOKENS, length_groups};
use super::queue::{Request, WorkQueue};
use super::{EmbedError, Embedder};
use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use tokio::sync::oneshot;

/// Options of the local embedder.
#[derive(Debug, Clone)]
pub struct MiniLmOptions {
    /// Folder holding `config.json`, `model.safetensors`, `tokenizer.json`.
    pub model_dir: PathBuf,
    /// Inference threads, each running one batch at a time.
    pub threads: usize,
    /// Most texts stacked into one forward pass.
    pub max_batch: usize,
    /// Longest input in tokens (longer inputs are truncated).
    pub max_tokens: usize,
    /// Run a batch as passes of similar lengths (`length_groups`) rather
    /// than one pass padded to its longest text. On by default; off only to
    /// measure what it saves.
    pub group_by_length: bool,
}

impl MiniLmOptions {
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        MiniLmOptions {
            model_dir: model_dir.into(),
            threads: 1,
            max_batch: 32,
            max_tokens: 256,
            group_by_length: true,
        }
    }
}

/// Handle to the inference threads; cheap to share behind an `Arc`.
pub struct MiniLmEmbedder {
    queue: Arc<WorkQueue>,
    model_id: String,
    dimension: usize,
}

struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
    max_batch: usize,
    group_by_length: bool,
}

impl MiniLmEmbedder {
    pub const MODEL_ID: &'static str = "all-MiniLM-L6-v2";

    /// Loads weights and starts the inference threads.
    pub fn load(opts: MiniLmOptions) -> Result<Self, EmbedError> {
        let model = Arc::new(load_model(&opts)?);
        let dimension = model.bert_hidden_size(&opts.model_dir)?;
        let queue = Arc::new(WorkQueue::default());
        for i in 0..opts.threads.max(1) {
            let queue = Arc::clone(&queue);
            let model = Arc::clone(&model);
            std::thread::Builder::new()
                .name(format!("minilm-{i}"))
                .spawn(move || inference_loop(&model, &queue))
                .map_err(|e| EmbedError::Inference(format!("cannot start thread: {e}")))?;
        }
        Ok(MiniLmEmbedder {
            queue,
            model_id: Self::MODEL_ID.to_string(),
            dimension,
        })
    }
}

fn files_err(path: &Path, reason: impl ToString) -> EmbedError {
    EmbedError::ModelFiles {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn load_model(opts: &MiniLmOptions) -> Result<Model, EmbedError> {
    let dir = &opts.model_dir;
    let config_text = std::fs::read_to_string(dir.join("config.json")).map_err(|e| files_err(dir, e))?;
    let config: Config = serde_json::from_str(&config_text).map_err(|e| files_err(dir, e))?;
    let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| files_err(dir, e))?;
    let pad = PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        ..Default::default()
    };
    tokenizer.with_padding(Some(pad));
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: opts.max_tokens,
            ..Default::default()
        }))
        .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
    let weights = dir.join("model.safetensors");
    // Read into memory rather than mmap: the mmap constructor is `unsafe`, which we forbid.
    let bytes = std::fs::read(&weights).map_err(|e| files_err(&weights, e))?;
    let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)
        .map_err(|e| files_err(&weights, e))?;
    let bert = BertModel::load(vb, &config).map_err(|e| files_err(&weights, e))?;
    Ok(Model {
        bert,
        tokenizer,
        max_batch: opts.max_batch.max(1),
        group_by_length: opts.group_by_length,
    })
}

impl Model {
    fn bert_hidden_size(&self, dir: &Path) -> Result<usize, EmbedError> {
        let text = std::fs::read_to_string(dir.join("config.json")).map_err(|e| files_err(dir, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| files_err(dir, e))?;
        v.get("hidden_size")
            .and_then(serde_json::Value::as_u64)
            .map(|n| n as usize)
            .ok_or_else(|| files_err(dir, "config.json has no hidden_size"))
    }

    /// The texts' embeddings, in order: tokenized together, then run as
    /// passes of similar lengths (see `length_groups`).
    fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        // Padding is on the right: a text's real tokens are its first `len`.
        let lens: Vec<usize> = encodings
            .iter()
            .map(|e| e.get_attention_mask().iter().filter(|&&m| m != 0).count())
            .collect();
        let groups = if self.group_by_length {
            length_groups(&lens, PASS_OVERHEAD_TOKENS)
        } else {
            vec![(0..encodings.len()).collect()]
        };
        let mut rows = vec![Vec::new(); encodings.len()];
        for group in groups {
            let width = group.iter().map(|&i| lens[i]).max().unwrap_or(0);
            let mut ids = Vec::with_capacity(group.len() * width);
            let mut mask = Vec::with_capacity(group.len() * width);
            for &i in &group {
                ids.extend_from_slice(&encodings[i].get_ids()[..width]);
                mask.extend_from_slice(&encodings[i].get_attention_mask()[..width]);
            }
            for (i, row) in group.iter().zip(self.forward_padded(ids, mask, width)?) {
                rows[*i] = row;
            }
        }
        Ok(rows)
    }

    /// One forward pass over `ids.len() / width` texts of `width` tokens
    /// (padding masked out), mean pooling over real tokens, L2 normalisation.
    fn forward_padded(
        &self,
        ids: Vec<u32>,
        mask: Vec<u32>,
        width: usize,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let n = ids.len() / width.max(1);
        let infer = |e: candle_core::Error| EmbedError::Inference(e.to_string());
        let ids = Tensor::from_vec(ids, (n, width), &Device::Cpu).map_err(infer)?;
        let mask = Tensor::from_vec(mask, (n, width), &Device::Cpu).map_err(infer)?;
        let type_ids = ids.zeros_like().map_err(infer)?;
        let hidden = self.bert.forward(&ids, &type_ids, Some(&mask)).map_err(infer)?;
        let mask_f = mask
            .to_dtype(DType::F32)
            .map_err(infer)?
            .unsqueeze(2)
            .map_err(infer)?;
        let summed = hidden
            .broadcast_mul(&mask_f)
            .map_err(infer)?
            .sum(1)
            .map_err(infer)?;
        let counts = mask_f
            .sum(1)
            .map_err(infer)?
            .clamp(1e-9, f32::MAX)
            .map_err(infer)?;
        let pooled = summed.broadcast_div(&counts).map_err(infer)?;
        let mut rows: Vec<Vec<f32>> = pooled.to_vec2().map_err(infer)?;
        rows.iter_mut().for_each(|r| pika_common::vector::normalize(r));
        Ok(rows)
    }
}

fn inference_loop(model: &Model, queue: &WorkQueue) {
    while let Some(batch) = queue.next_batch(model.max_batch) {
        let texts: Vec<String> = batch
            .requests
            .iter()
            .flat_map(|r| r.texts.iter().cloned())
            .collect();
        let mut outcome = if texts.is_empty() {
            Ok(Vec::new())
        } else {
            model.embed_batch(&texts)
        };
        for req in batch.requests {
            req.answer(&mut outcome);
        }
    }
}

impl MiniLmEmbedder {
    async fn submit(&self, texts: Vec<String>, bulk: bool) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.queue.push(Request { texts, reply }, bulk)?;
        rx.await.map_err(|_| EmbedError::Closed)?
    }
}

#[async_trait]
impl Embedder for MiniLmEmbedder {
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.submit(texts, false).await
    }

    async fn embed_bulk(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.submit(texts, true).await
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn waiting(&self) -> Option<(usize, usize)> {
        Some(self.queue.waiting())
    }
}

impl Drop for MiniLmEmbedder {
    fn drop(&mut self) {
        // Lets the inference threads exit once the queue is drained.
        self.queue.close();
    }
}
