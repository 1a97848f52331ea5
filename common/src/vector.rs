//! Small vector helpers: cosine on unit vectors and the header encoding used to
//! forward a query embedding from the sidecar to the dataplane.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Dot product. Embeddings are L2-normalised, so this is the cosine.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Scales `v` to unit length in place (a zero vector is left as is).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > f32::EPSILON {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Encodes a vector as base64 of little-endian f32s (`X-Pika-Query-Embedding`).
pub fn encode_f32_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    STANDARD.encode(bytes)
}

/// Decodes [`encode_f32_base64`]; `None` when the text is not a whole number of f32s.
pub fn decode_f32_base64(s: &str) -> Option<Vec<f32>> {
    let bytes = STANDARD.decode(s.trim()).ok()?;
    if bytes.len() % 4 != 0 || bytes.is_empty() {
        return None;
    }
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    v.iter().all(|x| x.is_finite()).then_some(v)
}

/// Bytes of a vector for storage (little-endian f32s).
pub fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Inverse of [`to_bytes`]; trailing partial values are ignored.
pub fn from_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        let v = vec![0.5f32, -1.25, 3.0];
        assert_eq!(decode_f32_base64(&encode_f32_base64(&v)), Some(v));
        assert_eq!(decode_f32_base64("AAA"), None);
        assert_eq!(decode_f32_base64("not base64!"), None);
    }

    #[test]
    fn normalize_gives_unit_length() {
        let mut v = vec![3.0f32, 4.0];
        normalize(&mut v);
        assert!((dot(&v, &v) - 1.0).abs() < 1e-6);
    }
}
