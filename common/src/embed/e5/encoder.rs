//! The XLM-R (BERT-style) encoder of multilingual-e5-small, on candle.
//!
//! Embeddings (word + position + token type 0, then layer norm), then per
//! layer: self-attention with a post-attention residual layer norm, and an
//! exact-erf GELU feed-forward block with its own residual layer norm; the
//! output is the mean of the token states. Positions count from 0 at `<s>`:
//! the file's position table already starts at XLM-R's first real position
//! (`padding_idx + 1`), which is how the reference engine indexes it.
//!
//! A batch is padded to its longest member; an additive mask keeps padding out
//! of attention and out of the mean.

use super::file::{Dims, ModelFile, Q4_BLOCK, Q4_BLOCK_BYTES};
use super::E5Weights;
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Tensor};
use std::borrow::Cow;

type CResult<T> = candle_core::Result<T>;

/// A weight matrix applied as `x · Wᵀ + b`.
enum Weight {
    /// Kept in 4 bits; candle quantises the activations to 8 bits per block
    /// and runs an integer dot product (as the reference engine does).
    Q4(QMatMul),
    /// Dequantised once at load, stored transposed (`in × out`) for the f32 GEMM.
    F32(Tensor),
}

struct Linear {
    w: Weight,
    b: Tensor,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let y = match &self.w {
            Weight::Q4(m) => m.forward(x)?,
            Weight::F32(wt) => x.matmul(wt)?,
        };
        y.broadcast_add(&self.b)
    }
}

struct Norm {
    w: Tensor,
    b: Tensor,
}

impl Norm {
    fn forward(&self, x: &Tensor, eps: f32) -> CResult<Tensor> {
        candle_nn::ops::layer_norm(x, &self.w, &self.b, eps)
    }
}

struct Layer {
    /// Query, key and value stacked into one `3h × h` matrix: one pass over x.
    qkv: Linear,
    out: Linear,
    attn_norm: Norm,
    ff_in: Linear,
    ff_out: Linear,
    ff_norm: Norm,
}

/// The word-embedding table stays in its Q4_0 blocks (250k × 384 would be
/// 384 MB as f32); rows are dequantised per token.
struct WordTable {
    blocks: Vec<u8>,
    row_bytes: usize,
    rows: usize,
}

impl WordTable {
    /// Adds row `id` to `out` (length `hidden`).
    fn add_row(&self, id: usize, out: &mut [f32]) {
        let id = id.min(self.rows - 1);
        add_q4_row(&self.blocks[id * self.row_bytes..(id + 1) * self.row_bytes], out);
    }
}

/// Adds one row of Q4_0 blocks to `out`: block byte j holds weight j in its
/// low nibble and weight j + 16 in its high one, both offset by 8.
fn add_q4_row(row: &[u8], out: &mut [f32]) {
    for (block, o) in row.chunks_exact(Q4_BLOCK_BYTES).zip(out.chunks_exact_mut(Q4_BLOCK)) {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        let (lo, hi) = o.split_at_mut(Q4_BLOCK / 2);
        for ((q, l), h) in block[2..].iter().zip(lo).zip(hi) {
            *l += (f32::from(q & 0x0f) - 8.0) * d;
            *h += (f32::from(q >> 4) - 8.0) * d;
        }
    }
}

pub(super) struct Encoder {
    dims: Dims,
    word: WordTable,
    /// Position rows with the token-type-0 row already added.
    positions: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
    device: Device,
}

fn dequantize(blocks: &[u8], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    let row_bytes = cols / Q4_BLOCK * Q4_BLOCK_BYTES;
    for (row, o) in blocks.chunks_exact(row_bytes).zip(out.chunks_exact_mut(cols)) {
        add_q4_row(row, o);
    }
    out
}

impl Encoder {
    /// Builds the encoder from a checked file; `quantized` keeps matrices in 4 bits.
    pub fn load(file: ModelFile, weights: E5Weights) -> Result<Self, String> {
        let quantized = match weights {
            E5Weights::Auto => E5Weights::q4_is_fast(),
            E5Weights::Q4 => true,
            E5Weights::F32 => false,
        };
        let device = Device::Cpu;
        let d = file.dims;
        let (h, f) = (d.hidden, d.ffn);
        let err = |e: candle_core::Error| e.to_string();
        let vec1 = |v: Vec<f32>| Tensor::from_vec(v, h, &device).map_err(err);
        let linear = |names: &[&str], rows: usize, cols: usize| -> Result<Linear, String> {
            let mut blocks = Vec::with_capacity(names.len() * rows * cols / Q4_BLOCK * Q4_BLOCK_BYTES);
            let mut bias = Vec::with_capacity(names.len() * rows);
            for n in names {
                blocks.extend_from_slice(file.q4(&format!("{n}.w"), rows, cols)?);
                bias.extend(file.f32s(&format!("{n}.b"), rows)?);
            }
            let out = names.len() * rows;
            let w = if quantized {
                Weight::Q4(q4_matmul(blocks, out, cols)?)
            } else {
                let w = Tensor::from_vec(dequantize(&blocks, out, cols), (out, cols), &device).map_err(err)?;
                Weight::F32(w.t().and_then(|t| t.contiguous()).map_err(err)?)
            };
            let b = Tensor::from_vec(bias, out, &device).map_err(err)?;
            Ok(Linear { w, b })
        };
        let norm = |name: &str| -> Result<Norm, String> {
            Ok(Norm {
                w: vec1(file.f32s(&format!("{name}.w"), h)?)?,
                b: vec1(file.f32s(&format!("{name}.b"), h)?)?,
            })
        };
        let mut layers = Vec::with_capacity(d.layers);
        for l in 0..d.layers {
            let p = |m: &str| format!("l{l}.{m}");
            layers.push(Layer {
                qkv: linear(&[&p("q"), &p("k"), &p("v")], h, h)?,
                out: linear(&[&p("ao")], h, h)?,
                attn_norm: norm(&p("aln"))?,
                ff_in: linear(&[&p("fi")], f, h)?,
                ff_out: linear(&[&p("fo")], h, f)?,
                ff_norm: norm(&p("oln"))?,
            });
        }
        let emb_norm = norm("emb.ln")?;
        let types = file.f32s("emb.type", d.type_rows * h)?;
        let mut positions = file.f32s("emb.pos", d.max_positions * h)?;
        for row in positions.chunks_exact_mut(h) {
            row.iter_mut().zip(&types[..h]).for_each(|(p, t)| *p += t);
        }
        let word = WordTable {
            blocks: file.into_q4("emb.word", d.vocab_rows, h)?,
            row_bytes: h / Q4_BLOCK * Q4_BLOCK_BYTES,
            rows: d.vocab_rows,
        };
        Ok(Encoder {
            dims: d,
            word,
            positions,
            emb_norm,
            layers,
            device,
        })
    }

    pub fn dims(&self) -> &Dims {
        &self.dims
    }

    pub fn is_quantized(&self) -> bool {
        self.layers
            .first()
            .is_some_and(|l| matches!(l.qkv.w, Weight::Q4(_)))
    }

    /// Mean-pooled (not yet normalised) states of each sequence; every
    /// sequence already holds `<s>` … `</s>` and fits the position table.
    pub fn forward(&self, seqs: &[&[u32]]) -> CResult<Vec<Vec<f32>>> {
        let h = self.dims.hidden;
        let heads = self.dims.heads;
        let hd = h / heads;
        let b = seqs.len();
        let len = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        if b == 0 || len == 0 {
            return Ok(vec![vec![0.0; h]; b]);
        }
        if len > self.dims.max_positions {
            candle_core::bail!("sequence of {len} tokens exceeds {} positions", self.dims.max_positions);
        }

        let mut x = vec![0f32; b * len * h];
        for (s, seq) in seqs.iter().enumerate() {
            for (t, &id) in seq.iter().enumerate() {
                let row = &mut x[(s * len + t) * h..(s * len + t + 1) * h];
                row.copy_from_slice(&self.positions[t * h..(t + 1) * h]);
                self.word.add_row(id as usize, row);
            }
        }
        let x = Tensor::from_vec(x, (b * len, h), &self.device)?;
        let mut x = self.emb_norm.forward(&x, self.dims.eps)?;

        // Additive attention mask over keys: 0 for tokens, -inf for padding.
        let mask = if seqs.iter().all(|s| s.len() == len) {
            None
        } else {
            let m: Vec<f32> = seqs
                .iter()
                .flat_map(|s| (0..len).map(move |t| if t < s.len() { 0.0 } else { f32::NEG_INFINITY }))
                .collect();
            Some(Tensor::from_vec(m, (b, 1, 1, len), &self.device)?)
        };
        let scale = 1.0 / (hd as f64).sqrt();

        for layer in &self.layers {
            // (b·len, 3h) → (b, 3·heads, len, hd): q, k, v are head ranges of dim 1.
            let qkv = layer
                .qkv
                .forward(&x)?
                .reshape((b, len, 3 * heads, hd))?
                .transpose(1, 2)?;
            let q = (qkv.narrow(1, 0, heads)?.contiguous()? * scale)?;
            let k = qkv.narrow(1, heads, heads)?.contiguous()?;
            let v = qkv.narrow(1, 2 * heads, heads)?.contiguous()?;
            let mut scores = q.matmul(&k.t()?)?;
            if let Some(m) = &mask {
                scores = scores.broadcast_add(m)?;
            }
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b * len, h))?;
            let attn = layer.out.forward(&ctx)?;
            x = layer.attn_norm.forward(&(x + attn)?, self.dims.eps)?;
            let ff = layer.ff_in.forward(&x)?.gelu_erf()?;
            let ff = layer.ff_out.forward(&ff)?;
            x = layer.ff_norm.forward(&(x + ff)?, self.dims.eps)?;
        }

        let states = x.flatten_all()?.to_vec1::<f32>()?;
        Ok(seqs
            .iter()
            .enumerate()
            .map(|(s, seq)| {
                let mut mean = vec![0f32; h];
                for t in 0..seq.len() {
                    let row = &states[(s * len + t) * h..(s * len + t + 1) * h];
                    mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
                }
                let inv = 1.0 / seq.len().max(1) as f32;
                mean.iter_mut().for_each(|m| *m *= inv);
                mean
            })
            .collect())
    }
}

/// A candle 4-bit matrix over raw Q4_0 blocks (`rows × cols`, row-major).
fn q4_matmul(blocks: Vec<u8>, rows: usize, cols: usize) -> Result<QMatMul, String> {
    // candle reads the bytes as its 18-byte Q4_0 blocks (f16 scale first), the
    // file's own layout; it asserts 2-byte alignment, which a heap buffer has.
    if blocks.as_ptr() as usize % std::mem::align_of::<u16>() != 0 {
        return Err("weight buffer is not 2-byte aligned".into());
    }
    let storage = QStorage::from_data(Cow::Owned(blocks), &Device::Cpu, GgmlDType::Q4_0).map_err(|e| e.to_string())?;
    let t = QTensor::new(storage, (rows, cols)).map_err(|e| e.to_string())?;
    QMatMul::from_qtensor(t).map_err(|e| e.to_string())
}
