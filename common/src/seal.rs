//! Sealing of stored text (DESIGN.md §7): AES-256-GCM from `ring`, a blind
//! keyword index from HMAC-SHA-256, and the text form sealed values take in
//! a database column or a Redis value.
//!
//! Why a text form: sealed values go into the same `TEXT` columns and JSON
//! fields the plaintext used, so the stores need no second schema, and a
//! value says which data key opens it (`pk1:{key id}:{base64}`), so a reader
//! finds the key without being told whose row it reads. Plain text written
//! before sealing was turned on stays readable ([`is_sealed`] is false).
//!
//! Nothing here is a new primitive: ring's AEAD with a fresh random 96-bit
//! nonce per value (a per-child key seals far fewer than the 2^32 values
//! where random nonces start to matter) and ring's HMAC for key derivation
//! and blind terms.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;
use zeroize::Zeroize;

/// Length of every key here (AES-256, HMAC-SHA-256).
pub const KEY_LEN: usize = 32;
/// The prefix of a sealed text value; the version of this format.
pub const PREFIX: &str = "pk1:";
/// Bytes of HMAC output kept per blind term (96 bits: collisions between a
/// child's terms are out of reach, and the index stays small).
const BLIND_LEN: usize = 12;

/// Why a value could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the value is not sealed text")]
    NotSealed,
    #[error("the sealed value is malformed")]
    Malformed,
    #[error("the value was sealed under data key {0}, which no longer exists (erased)")]
    KeyGone(String),
    #[error("the sealed value does not open with this key (wrong key, or tampered)")]
    Tampered,
    #[error("a key must be {KEY_LEN} bytes")]
    KeyLength,
    #[error("the system random generator failed")]
    Random,
}

/// 32 secret bytes, wiped from memory when dropped, never printed.
#[derive(Clone)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<SecretKey, SealError> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SealError::Random)?;
        Ok(SecretKey(bytes))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<SecretKey, SealError> {
        let arr: [u8; KEY_LEN] = bytes.try_into().map_err(|_| SealError::KeyLength)?;
        Ok(SecretKey(arr))
    }

    /// Parses the base64 (standard or URL-safe, padded or not) form.
    pub fn from_base64(text: &str) -> Result<SecretKey, SealError> {
        let text = text.trim().trim_end_matches('=');
        let mut bytes = B64
            .decode(text.replace('+', "-").replace('/', "_"))
            .map_err(|_| SealError::Malformed)?;
        let key = SecretKey::from_bytes(&bytes);
        bytes.zeroize();
        key
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A sub-key for one purpose: HMAC-SHA-256(self, label), the
    /// single-block HKDF-expand. Keys for different labels are independent.
    pub fn derive(&self, label: &str) -> SecretKey {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &self.0), label.as_bytes());
        let mut out = [0u8; KEY_LEN];
        out.copy_from_slice(tag.as_ref());
        SecretKey(out)
    }

    fn aead(&self) -> LessSafeKey {
        // Cannot fail: the length is AES-256's by construction.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("32-byte AES-256 key"))
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

/// Seals `plain` under `key`, bound to `aad` (opening with another `aad`
/// fails): `nonce || ciphertext || tag`.
pub fn seal_bytes(key: &SecretKey, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SealError::Random)?;
    let mut body = plain.to_vec();
    key.aead()
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body)
        .map_err(|_| SealError::Tampered)?;
    let mut out = Vec::with_capacity(NONCE_LEN + body.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens what [`seal_bytes`] made with the same key and `aad`.
pub fn open_bytes(key: &SecretKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(SealError::Malformed);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Malformed)?;
    let mut body = body.to_vec();
    let plain_len = key
        .aead()
        .open_in_place(nonce, Aad::from(aad), &mut body)
        .map_err(|_| SealError::Tampered)?
        .len();
    body.truncate(plain_len);
    Ok(body)
}

/// Whether `text` is in the sealed text form.
pub fn is_sealed(text: &str) -> bool {
    text.starts_with(PREFIX)
}

/// The id of the key that opens a sealed text value.
pub fn sealed_key_id(text: &str) -> Result<&str, SealError> {
    let rest = text.strip_prefix(PREFIX).ok_or(SealError::NotSealed)?;
    let (id, _) = rest.split_once(':').ok_or(SealError::Malformed)?;
    if id.is_empty() {
        return Err(SealError::Malformed);
    }
    Ok(id)
}

/// Seals text: `pk1:{key_id}:{base64url(nonce || ciphertext || tag)}`.
/// `key_id` must not contain `:`.
pub fn seal_text(key_id: &str, key: &SecretKey, aad: &str, plain: &str) -> Result<String, SealError> {
    if key_id.is_empty() || key_id.contains(':') {
        return Err(SealError::Malformed);
    }
    let sealed = seal_bytes(key, aad.as_bytes(), plain.as_bytes())?;
    Ok(format!("{PREFIX}{key_id}:{}", B64.encode(sealed)))
}

/// Opens what [`seal_text`] made (the caller found the key by
/// [`sealed_key_id`]).
pub fn open_text(key: &SecretKey, aad: &str, text: &str) -> Result<String, SealError> {
    let rest = text.strip_prefix(PREFIX).ok_or(SealError::NotSealed)?;
    let (_, body) = rest.split_once(':').ok_or(SealError::Malformed)?;
    let sealed = B64.decode(body).map_err(|_| SealError::Malformed)?;
    let plain = open_bytes(key, aad.as_bytes(), &sealed)?;
    String::from_utf8(plain).map_err(|_| SealError::Malformed)
}

/// Keyed hashes of index terms: the same term under the same key always
/// gives the same token, so a keyword index works on tokens alone, and
/// without the key a token says nothing about the term (no dictionary
/// attack, unlike an unkeyed hash).
#[derive(Clone)]
pub struct BlindIndex(hmac::Key);

impl BlindIndex {
    /// The blind index of a data key (a sub-key: the data key itself never
    /// keys two algorithms).
    pub fn new(key: &SecretKey) -> BlindIndex {
        let sub = key.derive("pika/blind-index/v1");
        BlindIndex(hmac::Key::new(hmac::HMAC_SHA256, sub.as_bytes()))
    }

    /// The token of one term: 24 lower-case hex digits.
    pub fn token(&self, term: &str) -> String {
        hex::encode(&hmac::sign(&self.0, term.as_bytes()).as_ref()[..BLIND_LEN])
    }
}

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindIndex(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_names_its_key() {
        let key = SecretKey::generate().expect("test value");
        let sealed = seal_text("dk1", &key, "tenant/kid", "Bé thích con mèo").expect("test value");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("mèo"));
        assert_eq!(sealed_key_id(&sealed).expect("test value"), "dk1");
        assert_eq!(
            open_text(&key, "tenant/kid", &sealed).expect("test value"),
            "Bé thích con mèo"
        );
    }

    #[test]
    fn the_same_text_seals_differently_each_time() {
        let key = SecretKey::generate().expect("test value");
        let a = seal_text("k", &key, "u", "same").expect("test value");
        let b = seal_text("k", &key, "u", "same").expect("test value");
        assert_ne!(a, b);
    }

    #[test]
    fn another_key_another_owner_or_a_flipped_byte_does_not_open() {
        let key = SecretKey::generate().expect("test value");
        let other = SecretKey::generate().expect("test value");
        let sealed = seal_text("k", &key, "u1", "secret").expect("test value");
        assert_eq!(open_text(&other, "u1", &sealed), Err(SealError::Tampered));
        assert_eq!(open_text(&key, "u2", &sealed), Err(SealError::Tampered));
        let mut bytes = seal_bytes(&key, b"u1", b"secret").expect("test value");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(open_bytes(&key, b"u1", &bytes), Err(SealError::Tampered));
        assert_eq!(open_bytes(&key, b"u1", &bytes[..5]), Err(SealError::Malformed));
        assert_eq!(open_text(&key, "u1", "plain"), Err(SealError::NotSealed));
        assert_eq!(open_text(&key, "u1", "pk1:k:%%%"), Err(SealError::Malformed));
    }

    #[test]
    fn keys_parse_from_base64_and_reject_other_lengths() {
        let key = SecretKey::generate().expect("test value");
        let back = SecretKey::from_base64(&key.to_base64()).expect("test value");
        assert_eq!(back.as_bytes(), key.as_bytes());
        let standard = base64::engine::general_purpose::STANDARD.encode(key.as_bytes());
        assert_eq!(
            SecretKey::from_base64(&standard).expect("test value").as_bytes(),
            key.as_bytes()
        );
        assert_eq!(
            SecretKey::from_base64("c2hvcnQ").expect_err("test error"),
            SealError::KeyLength
        );
        assert_eq!(format!("{key:?}"), "SecretKey(***)");
    }

    #[test]
    fn blind_tokens_are_stable_per_key_and_differ_across_keys() {
        let a = BlindIndex::new(&SecretKey::generate().expect("test value"));
        let b = BlindIndex::new(&SecretKey::generate().expect("test value"));
        assert_eq!(a.token("meo"), a.token("meo"));
        assert_ne!(a.token("meo"), a.token("meo "));
        assert_ne!(a.token("meo"), b.token("meo"));
        assert_eq!(a.token("meo").len(), 24);
        assert!(!a.token("meo").contains("meo"));
    }

    #[test]
    fn derived_keys_differ_by_label() {
        let k = SecretKey::generate().expect("test value");
        assert_ne!(k.derive("a").as_bytes(), k.derive("b").as_bytes());
        assert_eq!(k.derive("a").as_bytes(), k.derive("a").as_bytes());
    }
}
