//! The XLM-R (BERT-style) encoder of multilingual-e5-small.
//!
//! Embeddings (word + position + token type 0, then layer norm), then per
//! layer: self-attention with a residual layer norm, and an exact-erf GELU
//! feed-forward block with its own residual layer norm; the output is the mean
//! of the token states. Positions count from 0 at `<s>`: the file's position
//! table already starts at XLM-R's first real position (`padding_idx + 1`),
//! which is how the reference engine indexes it.
//!
//! The weight matrices run through our Q4 kernel (`q4.rs`) or, dequantised,
//! candle's f32 GEMM; attention's two batched products and softmax run on
//! candle; the element-wise steps (layer norm, GELU, residuals) are plain
//! loops over buffers reused from layer to layer. A batch's tokens are packed
//! end to end for all of these; attention alone pads the batch to its longest
//! member, with an additive mask keeping padding out.
//!
//! Slightly over 400 lines: the encoder's layers in forward order.

use super::E5Weights;
use super::file::{Dims, ModelFile, Q4_BLOCK, Q4_BLOCK_BYTES};
use super::q4::{Q4Matrix, QuantizedActs};
use candle_core::{Device, Tensor};

type CResult<T> = candle_core::Result<T>;

/// A weight matrix applied as `x · Wᵀ + b`.
enum Weight {
    /// Kept in 4 bits; activations quantised to 8 bits per block.
    Q4(Q4Matrix),
    /// Dequantised once at load, stored transposed (`in × out`) for the f32 GEMM.
    F32(Tensor),
}

struct Linear {
    w: Weight,
    b: Vec<f32>,
    rows: usize,
    cols: usize,
}

/// Buffers one forward pass reuses from layer to layer.
#[derive(Default)]
struct Scratch {
    acts: QuantizedActs,
    tiles: Vec<f32>,
}

impl Linear {
    /// `out = x · Wᵀ + b` for `x` of `tokens × cols`.
    fn forward(&self, x: &[f32], s: &mut Scratch, out: &mut Vec<f32>, device: &Device) -> CResult<()> {
        match &self.w {
            Weight::Q4(m) => {
                s.acts.quantize(x, self.cols);
                m.matmul(&s.acts, &self.b, &mut s.tiles, out);
            }
            Weight::F32(wt) => {
                let t = x.len() / self.cols;
                let xt = Tensor::from_slice(x, (t, self.cols), device)?;
                let y = xt.matmul(wt)?.flatten_all()?.to_vec1::<f32>()?;
                out.clear();
                out.extend(y);
                for row in out.chunks_exact_mut(self.rows) {
                    row.iter_mut().zip(&self.b).for_each(|(o, b)| *o += b);
                }
            }
        }
        Ok(())
    }
}

struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Norm {
    /// `x = layer_norm(x + add)` row by row (`add` may be empty).
    fn apply(&self, x: &mut [f32], add: &[f32], eps: f32) {
        let h = self.w.len();
        for (t, row) in x.chunks_exact_mut(h).enumerate() {
            if !add.is_empty() {
                row.iter_mut()
                    .zip(&add[t * h..(t + 1) * h])
                    .for_each(|(r, a)| *r += a);
            }
            let mean = row.iter().sum::<f32>() / h as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((r, w), b) in row.iter_mut().zip(&self.w).zip(&self.b) {
                *r = (*r - mean) * inv * w + b;
            }
        }
    }
}

/// GELU with the exact erf form, as the model was trained: `x·(1 + erf(x/√2))/2`.
fn gelu(x: &mut [f32]) {
    for v in x {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// erf as a rational function of x on [-4, 4] (the constant ±1 beyond, to f32
/// precision), with the coefficients of Eigen's `generic_fast_erf_float`:
/// within 1e-6 of libm's erff (see the test), and unlike libm's it is plain
/// arithmetic the compiler vectorises (no `mul_add`: without FMA in the
/// build target that is a libm call); libm's erff took 12% of a query's time.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
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

/// Adds one row of Q4_0 blocks to `out`: block byte j holds weight j in its
/// low nibble and weight j + 16 in its high one, both offset by 8.
fn add_q4_row(row: &[u8], out: &mut [f32]) {
    for (block, o) in row
        .chunks_exact(Q4_BLOCK_BYTES)
        .zip(out.chunks_exact_mut(Q4_BLOCK))
    {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        let (lo, hi) = o.split_at_mut(Q4_BLOCK / 2);
        for ((q, l), h) in block[2..].iter().zip(lo).zip(hi) {
            *l += (f32::from(q & 0x0f) - 8.0) * d;
            *h += (f32::from(q >> 4) - 8.0) * d;
        }
    }
}

fn dequantize(blocks: &[u8], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    let row_bytes = cols / Q4_BLOCK * Q4_BLOCK_BYTES;
    for (row, o) in blocks.chunks_exact(row_bytes).zip(out.chunks_exact_mut(cols)) {
        add_q4_row(row, o);
    }
    out
}

pub(super) struct Encoder {
    dims: Dims,
    /// The word-embedding table stays in its Q4_0 blocks (250k × 384 would be
    /// 384 MB as f32); rows are dequantised per token.
    word: Vec<u8>,
    /// Position rows with the token-type-0 row already added.
    positions: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
    device: Device,
}

impl Encoder {
    /// Builds the encoder from a checked file.
    pub fn load(file: ModelFile, weights: E5Weights) -> Result<Self, String> {
        let quantized = match weights {
            E5Weights::Auto => E5Weights::q4_is_fast(),
            E5Weights::Q4 => true,
            E5Weights::F32 => false,
        };
        let device = Device::Cpu;
        let d = file.dims;
        let (h, f) = (d.hidden, d.ffn);
        let linear = |names: &[&str], rows: usize, cols: usize| -> Result<Linear, String> {
            let mut blocks = Vec::with_capacity(names.len() * rows * cols / Q4_BLOCK * Q4_BLOCK_BYTES);
            let mut b = Vec::with_capacity(names.len() * rows);
            for n in names {
                blocks.extend_from_slice(file.q4(&format!("{n}.w"), rows, cols)?);
                b.extend(file.f32s(&format!("{n}.b"), rows)?);
            }
            let rows = names.len() * rows;
            let w = if quantized {
                Weight::Q4(Q4Matrix::from_blocks(&blocks, rows, cols))
            } else {
                let w = Tensor::from_vec(dequantize(&blocks, rows, cols), (rows, cols), &device)
                    .and_then(|w| w.t()?.contiguous())
                    .map_err(|e| e.to_string())?;
                Weight::F32(w)
            };
            Ok(Linear { w, b, rows, cols })
        };
        let norm = |name: &str| -> Result<Norm, String> {
            Ok(Norm {
                w: file.f32s(&format!("{name}.w"), h)?,
                b: file.f32s(&format!("{name}.b"), h)?,
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
        let word = file.into_q4("emb.word", d.vocab_rows, h)?;
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

    /// Scaled dot-product attention of each sequence over its own tokens.
    /// `qkv` holds the packed rows of all sequences (`Σ len × 3h`); `ctx`
    /// receives the packed outputs (`Σ len × h`).
    fn attention(&self, qkv: &[f32], batch: &Batch, ctx: &mut Vec<f32>) -> CResult<()> {
        let h = self.dims.hidden;
        let heads = self.dims.heads;
        let hd = h / heads;
        let (b, len) = (batch.starts.len(), batch.longest);
        // Attention alone needs the batch padded: scatter the packed rows
        // into `b × len` slots (padding rows stay zero; the mask hides them).
        let padded: Vec<f32> = if batch.mask.is_none() {
            qkv.to_vec()
        } else {
            let mut p = vec![0f32; b * len * 3 * h];
            for (s, (&start, &n)) in batch.starts.iter().zip(&batch.lens).enumerate() {
                p[s * len * 3 * h..(s * len + n) * 3 * h]
                    .copy_from_slice(&qkv[start * 3 * h..(start + n) * 3 * h]);
            }
            p
        };
        // (b, len, 3·heads, hd) → (b, 3·heads, len, hd): q, k, v are head ranges of dim 1.
        let qkv = Tensor::from_vec(padded, (b, len, 3 * heads, hd), &self.device)?.transpose(1, 2)?;
        let q = (qkv.narrow(1, 0, heads)?.contiguous()? * (1.0 / (hd as f64).sqrt()))?;
        let k = qkv.narrow(1, heads, heads)?.contiguous()?;
        let v = qkv.narrow(1, 2 * heads, heads)?.contiguous()?;
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(m) = &batch.mask {
            scores = scores.broadcast_add(m)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        ctx.clear();
        if batch.mask.is_none() {
            ctx.extend(out);
        } else {
            for (s, &n) in batch.lens.iter().enumerate() {
                ctx.extend_from_slice(&out[s * len * h..(s * len + n) * h]);
            }
        }
        Ok(())
    }

    /// Mean-pooled (not yet normalised) states of each sequence; every
    /// sequence already holds `<s>` … `</s>` and fits the position table.
    ///
    /// The token-wise steps (every matrix product, layer norm, GELU: nearly
    /// all the work) run on the sequences' tokens packed end to end, so
    /// padding costs nothing there; only attention pads.
    pub fn forward(&self, seqs: &[&[u32]]) -> CResult<Vec<Vec<f32>>> {
        let h = self.dims.hidden;
        let eps = self.dims.eps;
        let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        if seqs.is_empty() || longest == 0 {
            return Ok(vec![vec![0.0; h]; seqs.len()]);
        }
        if longest > self.dims.max_positions {
            candle_core::bail!(
                "sequence of {longest} tokens exceeds {} positions",
                self.dims.max_positions
            );
        }
        let batch = Batch::new(seqs, longest, &self.device)?;
        let row_bytes = h / Q4_BLOCK * Q4_BLOCK_BYTES;
        let vocab_rows = self.word.len() / row_bytes;

        let total: usize = batch.lens.iter().sum();
        let mut x = vec![0f32; total * h];
        let rows = seqs.iter().flat_map(|seq| seq.iter().enumerate());
        for (row, (t, &id)) in x.chunks_exact_mut(h).zip(rows) {
            row.copy_from_slice(&self.positions[t * h..(t + 1) * h]);
            let id = (id as usize).min(vocab_rows - 1);
            add_q4_row(&self.word[id * row_bytes..(id + 1) * row_bytes], row);
        }
        self.emb_norm.apply(&mut x, &[], eps);

        let mut s = Scratch::default();
        let (mut qkv, mut ctx, mut y, mut ff) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for layer in &self.layers {
            layer.qkv.forward(&x, &mut s, &mut qkv, &self.device)?;
            self.attention(&qkv, &batch, &mut ctx)?;
            layer.out.forward(&ctx, &mut s, &mut y, &self.device)?;
            layer.attn_norm.apply(&mut x, &y, eps);
            layer.ff_in.forward(&x, &mut s, &mut ff, &self.device)?;
            gelu(&mut ff);
            layer.ff_out.forward(&ff, &mut s, &mut y, &self.device)?;
            layer.ff_norm.apply(&mut x, &y, eps);
        }

        Ok(batch
            .starts
            .iter()
            .zip(&batch.lens)
            .map(|(&start, &n)| {
                let mut mean = vec![0f32; h];
                for row in x[start * h..(start + n) * h].chunks_exact(h) {
                    mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
                }
                let inv = 1.0 / n.max(1) as f32;
                mean.iter_mut().for_each(|m| *m *= inv);
                mean
            })
            .collect())
    }
}

/// Where each sequence's tokens lie in the packed rows, and the attention mask.
struct Batch {
    starts: Vec<usize>,
    lens: Vec<usize>,
    longest: usize,
    /// Additive mask over keys (`b × 1 × 1 × longest`): 0 for tokens, -inf for
    /// padding. `None` when no sequence is padded.
    mask: Option<Tensor>,
}

impl Batch {
    fn new(seqs: &[&[u32]], longest: usize, device: &Device) -> CResult<Self> {
        let lens: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let starts = lens
            .iter()
            .scan(0, |next, &n| {
                let start = *next;
                *next += n;
                Some(start)
            })
            .collect();
        let mask = if lens.iter().all(|&n| n == longest) {
            None
        } else {
            let m: Vec<f32> = lens
                .iter()
                .flat_map(|&n| (0..longest).map(move |t| if t < n { 0.0 } else { f32::NEG_INFINITY }))
                .collect();
            Some(Tensor::from_vec(m, (seqs.len(), 1, 1, longest), device)?)
        };
        Ok(Batch {
            starts,
            lens,
            longest,
            mask,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::erf;

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0f32;
        for i in -60_000..=60_000 {
            let x = i as f32 / 10_000.0;
            worst = worst.max((erf(x) - candle_core::cpu::erf::erf_f32(x)).abs());
        }
        assert!(worst < 1e-6, "largest difference {worst}");
    }
}
