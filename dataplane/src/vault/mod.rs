//! Encryption at rest with a data key per child (DESIGN.md §7).
//!
//! Each scoped user gets one random AES-256 data key the first time
//! something of theirs is written. It is stored only wrapped by the active
//! key-encryption key ([`kek`]), in the keyring ([`DataKeyStore`]), apart
//! from the data. Sealed values name their data key, so any replica opens
//! any row without being told whose it is. Erasing a child deletes its key:
//! every copy of its sealed data, in backups too, becomes noise
//! (crypto-shredding).
//!
//! The stores never see this module: [`SealedMeta`] and [`SealedGraph`]
//! wrap the metadata store and the graph, seal on the way in and open on the
//! way out, and blind what must stay searchable (keyword terms, episode
//! dedup keys, entity names) with a keyed hash from the child's key.

pub mod kek;
mod sealed_graph;
mod sealed_meta;

pub use sealed_graph::SealedGraph;
pub use sealed_meta::SealedMeta;

use crate::ports::{DataKeyStore, StoreError, WrappedKey};
use kek::{KekRing, KekSource};
use pika_common::seal::{self, BlindIndex, SealError, SecretKey};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Why the vault could not seal or open.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("key-encryption key: {0}")]
    Kek(String),
}

impl From<VaultError> for StoreError {
    fn from(e: VaultError) -> StoreError {
        match e {
            VaultError::Store(e) => e,
            other => StoreError::Corrupt(other.to_string()),
        }
    }
}

/// One child's data key, unwrapped, with the blind index derived from it.
pub struct DataKey {
    pub id: String,
    pub owner: String,
    key: SecretKey,
    blind: BlindIndex,
}

impl DataKey {
    /// Seals text for this key's owner.
    pub fn seal(&self, plain: &str) -> Result<String, SealError> {
        seal::seal_text(&self.id, &self.key, &self.owner, plain)
    }

    /// The blind token of an index term (or of any string that is looked
    /// up by equality: a dedup key, an entity name), under a purpose label
    /// so tokens of different kinds never collide.
    pub fn blind(&self, purpose: &str, term: &str) -> String {
        let mut s = String::with_capacity(purpose.len() + 1 + term.len());
        s.push_str(purpose);
        s.push('\u{1f}');
        s.push_str(term);
        self.blind.token(&s)
    }
}

/// What a KEK rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rotation {
    pub kek_id: String,
    pub rewrapped: u64,
    pub already: u64,
}

/// Data keys: created, unwrapped (and kept a short while), destroyed.
pub struct Vault {
    keks: RwLock<Arc<KekRing>>,
    store: Arc<dyn DataKeyStore>,
    /// Unwrapped keys by data-key id, for opening (an erased key may stay
    /// here up to the TTL on other replicas; it opens only rows that the
    /// erasure deleted).
    by_id: moka::sync::Cache<String, Arc<DataKey>>,
    /// The current key id by owner, for blinding reads.
    current: moka::sync::Cache<String, String>,
}

const WRAP_AAD: &str = "pika/dek/v1";

impl Vault {
    pub fn new(keks: KekRing, store: Arc<dyn DataKeyStore>, cache_ttl: Duration) -> Vault {
        Vault {
            keks: RwLock::new(Arc::new(keks)),
            store,
            by_id: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cache_ttl)
                .build(),
            current: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cache_ttl)
                .build(),
        }
    }

    fn ring(&self) -> Arc<KekRing> {
        self.keks.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The owner's key for writing: read from the keyring every time (never
    /// a cached key another replica may have destroyed), created on first
    /// use.
    pub async fn writing_key(&self, owner: &str) -> Result<Arc<DataKey>, VaultError> {
        let stored = match self.store.data_key(owner).await? {
            Some(k) => k,
            None => {
                let fresh = self.new_wrapped(owner)?;
                self.store.insert_data_key(&fresh).await?
            }
        };
        let key = self.unwrap(&stored)?;
        self.current.insert(owner.to_string(), key.id.clone());
        Ok(key)
    }

    /// The owner's key as the keyring holds it now (not cached), without
    /// creating one: writes that must not bring an erased child back use it.
    pub async fn existing_key(&self, owner: &str) -> Result<Option<Arc<DataKey>>, VaultError> {
        match self.store.data_key(owner).await? {
            None => Ok(None),
            Some(stored) => Ok(Some(self.unwrap(&stored)?)),
        }
    }

    /// The owner's key for blinding a query; `None` when the owner has none
    /// (nothing of theirs was sealed).
    pub async fn reading_key(&self, owner: &str) -> Result<Option<Arc<DataKey>>, VaultError> {
        if let Some(id) = self.current.get(owner)
            && let Some(key) = self.by_id.get(&id)
        {
            return Ok(Some(key));
        }
        match self.store.data_key(owner).await? {
            None => Ok(None),
            Some(stored) => {
                let key = self.unwrap(&stored)?;
                self.current.insert(owner.to_string(), key.id.clone());
                Ok(Some(key))
            }
        }
    }

    /// Opens a stored value: sealed text with its key, plain text (written
    /// before sealing was on) as it is.
    pub async fn open(&self, text: &str) -> Result<String, VaultError> {
        if !seal::is_sealed(text) {
            return Ok(text.to_string());
        }
        let id = seal::sealed_key_id(text)?;
        let key = self.key_by_id(id).await?;
        Ok(seal::open_text(&key.key, &key.owner, text)?)
    }

    async fn key_by_id(&self, id: &str) -> Result<Arc<DataKey>, VaultError> {
        if let Some(key) = self.by_id.get(id) {
            return Ok(key);
        }
        let stored = self
            .store
            .data_key_by_id(id)
            .await?
            .ok_or_else(|| SealError::KeyGone(id.to_string()))?;
        self.unwrap(&stored)
    }

    /// Destroys the owner's data key (crypto-shredding); `true` when one existed.
    pub async fn destroy(&self, owner: &str) -> Result<bool, VaultError> {
        let existing = self.store.data_key(owner).await?;
        let removed = self.store.delete_data_key(owner).await?;
        if let Some(k) = existing {
            self.by_id.invalidate(&k.dek_id);
        }
        self.current.invalidate(owner);
        Ok(removed)
    }

    /// Re-wraps every data key not wrapped by the active KEK with it. The
    /// data is not touched: only keys are sealed with KEKs.
    pub async fn rotate(&self) -> Result<Rotation, VaultError> {
        let ring = self.ring();
        let (active_id, active) = ring.active();
        let mut out = Rotation {
            kek_id: active_id.to_string(),
            ..Rotation::default()
        };
        let mut after: Option<String> = None;
        loop {
            let page = self.store.data_keys_after(after.as_deref(), 500).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.owner.clone());
            for stored in page {
                if stored.kek_id == active_id {
                    out.already += 1;
                    continue;
                }
                let plain = self.unwrap_bytes(&ring, &stored)?;
                let rewrapped = WrappedKey {
                    kek_id: active_id.to_string(),
                    wrapped: wrap(active, &stored.owner, &stored.dek_id, plain.as_bytes())?,
                    ..stored.clone()
                };
                if self.store.rewrap_data_key(&rewrapped, &stored.kek_id).await? {
                    out.rewrapped += 1;
                }
            }
        }
        Ok(out)
    }

    fn new_wrapped(&self, owner: &str) -> Result<WrappedKey, VaultError> {
        let ring = self.ring();
        let (kek_id, kek) = ring.active();
        let key = SecretKey::generate()?;
        let id_bytes = SecretKey::generate()?;
        let dek_id = format!("dk{}", hex::encode(&id_bytes.as_bytes()[..12]));
        Ok(WrappedKey {
            wrapped: wrap(kek, owner, &dek_id, key.as_bytes())?,
            dek_id,
            owner: owner.to_string(),
            kek_id: kek_id.to_string(),
        })
    }

    fn unwrap(&self, stored: &WrappedKey) -> Result<Arc<DataKey>, VaultError> {
        let mut ring = self.ring();
        if ring.get(&stored.kek_id).is_none() {
            ring = self.reload_for(&stored.kek_id)?;
        }
        let key = self.unwrap_bytes(&ring, stored)?;
        let key = Arc::new(DataKey {
            id: stored.dek_id.clone(),
            owner: stored.owner.clone(),
            blind: BlindIndex::new(&key),
            key,
        });
        self.by_id.insert(stored.dek_id.clone(), key.clone());
        Ok(key)
    }

    fn unwrap_bytes(&self, ring: &KekRing, stored: &WrappedKey) -> Result<SecretKey, VaultError> {
        let kek = ring.get(&stored.kek_id).ok_or_else(|| {
            VaultError::Kek(format!(
                "data key {} is wrapped by KEK {}, which is not configured (known: {})",
                stored.dek_id,
                stored.kek_id,
                ring.ids().join(", ")
            ))
        })?;
        let sealed = base64_decode(&stored.wrapped)?;
        let aad = wrap_aad(&stored.owner, &stored.dek_id);
        let mut plain = seal::open_bytes(kek, aad.as_bytes(), &sealed)?;
        let key = SecretKey::from_bytes(&plain);
        zeroize::Zeroize::zeroize(&mut plain);
        Ok(key?)
    }

    /// A KEK file may have gained a KEK (rotation run elsewhere): read it again.
    fn reload_for(&self, kek_id: &str) -> Result<Arc<KekRing>, VaultError> {
        let current = self.ring();
        let KekSource::File(path) = &current.source else {
            return Ok(current);
        };
        let mut fresh = kek::read_file(path)?;
        // A KEK pinned by configuration stays active; otherwise the file's
        // last one (the one a rotation just added) wraps new keys.
        if current.is_pinned() {
            fresh.pin(current.active().0)?;
        }
        if fresh.get(kek_id).is_some() {
            tracing::info!(kek_id, path = %path.display(), "KEK file re-read: a new KEK appeared");
        }
        let fresh = Arc::new(fresh);
        *self.keks.write().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        Ok(fresh)
    }
}

fn wrap_aad(owner: &str, dek_id: &str) -> String {
    format!("{WRAP_AAD}/{owner}/{dek_id}")
}

fn wrap(kek: &SecretKey, owner: &str, dek_id: &str, key: &[u8]) -> Result<String, VaultError> {
    use base64::Engine;
    let sealed = seal::seal_bytes(kek, wrap_aad(owner, dek_id).as_bytes(), key)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
}

fn base64_decode(text: &str) -> Result<Vec<u8>, VaultError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| VaultError::Seal(SealError::Malformed))
}
