//! L1: the Redis cache shared by every sidecar of a service.
//!
//! Keys carry the user's generation (`pika:gen:{user}`, bumped by the
//! dataplane after every write), read in the same round trip as the entry by
//! a script, so L1 never serves an answer older than the last write even when
//! this sidecar missed the invalidation message. Per user and generation a
//! bounded list holds the recent queries with their embeddings for semantic
//! matching. Redis is optional: every call has a deadline, and after a failure
//! L1 is skipped for a second instead of slowing each request (fail open).
//!
//! Values are sealed (AES-256-GCM) under a key per user derived from the
//! configured L1 key, bound to their Redis key name: a Redis dump holds no
//! answer or query text, and an entry copied under another user's name does
//! not open. A value that does not open is a miss.

use super::key::{Digest128, SearchKeys};
use super::semantic::SemanticEntry;
use bytes::Bytes;
use pika_common::seal::{SecretKey, open_bytes, seal_bytes};
use pika_common::signals::generation_key;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum L1Error {
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    #[error("redis call timed out")]
    Timeout,
    #[error("L1 skipped after a recent failure")]
    Skipped,
}

/// The user's generation and, if present, the exact entry.
#[derive(Debug)]
pub struct Lookup {
    pub generation: u64,
    pub body: Option<Bytes>,
}

const LOOKUP_SCRIPT: &str = r"
local g = redis.call('GET', KEYS[1]) or '0'
return {g, redis.call('GET', ARGV[1] .. g .. ':' .. ARGV[2])}
";

/// How long L1 is skipped after a failure.
const BACKOFF: Duration = Duration::from_secs(1);

pub struct L1 {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    lookup_script: redis::Script,
    timeout: Duration,
    ttl_seconds: u64,
    max_per_user: u64,
    started: Instant,
    /// Milliseconds since `started` before which L1 is skipped.
    skip_until_ms: AtomicU64,
    seal_key: SecretKey,
}

/// The user's L1 sealing key.
fn user_key(root: &SecretKey, user: &str) -> SecretKey {
    root.derive(&format!("pika/l1/v1/{user}"))
}

fn entry_prefix(user: &str) -> String {
    format!("pika:sc:{user}:")
}

fn entry_key(user: &str, generation: u64, exact: Digest128) -> String {
    pika_common::signals::l1_entry_key(user, generation, &exact.hex())
}

fn index_key(user: &str, generation: u64) -> String {
    pika_common::signals::l1_index_key(user, generation)
}

/// params (16) + exact (16) + query length (u16 LE) + query + f32 LE vector.
fn pack(e: &SemanticEntry) -> Vec<u8> {
    let q = e.query.as_bytes();
    let q = &q[..q.len().min(u16::MAX as usize)];
    let mut out = Vec::with_capacity(34 + q.len() + e.embedding.len() * 4);
    out.extend_from_slice(&e.params.0);
    out.extend_from_slice(&e.exact.0);
    out.extend_from_slice(&(q.len() as u16).to_le_bytes());
    out.extend_from_slice(q);
    out.extend_from_slice(&pika_common::vector::to_bytes(&e.embedding));
    out
}

fn unpack(b: &[u8]) -> Option<SemanticEntry> {
    let params: [u8; 16] = b.get(0..16)?.try_into().ok()?;
    let exact: [u8; 16] = b.get(16..32)?.try_into().ok()?;
    let qlen = u16::from_le_bytes(b.get(32..34)?.try_into().ok()?) as usize;
    let query = std::str::from_utf8(b.get(34..34 + qlen)?).ok()?.to_string();
    let rest = b.get(34 + qlen..)?;
    if rest.len() % 4 != 0 {
        return None;
    }
    Some(SemanticEntry {
        params: Digest128(params),
        exact: Digest128(exact),
        query,
        embedding: Arc::from(pika_common::vector::from_bytes(rest)),
    })
}

impl L1 {
    /// Over `client`; connects on first use.
    pub fn new(
        client: redis::Client,
        timeout: Duration,
        ttl_seconds: u64,
        max_per_user: u64,
        seal_key: SecretKey,
    ) -> Self {
        L1 {
            seal_key,
            client,
            conn: Mutex::new(None),
            lookup_script: redis::Script::new(LOOKUP_SCRIPT),
            timeout,
            ttl_seconds,
            max_per_user,
            started: Instant::now(),
            skip_until_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// False while L1 is being skipped after a failure.
    pub fn usable(&self) -> bool {
        self.now_ms() >= self.skip_until_ms.load(Ordering::Relaxed)
    }

    async fn connection(&self) -> Result<ConnectionManager, L1Error> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(0);
        let c = tokio::time::timeout(
            self.timeout * 4,
            self.client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| L1Error::Timeout)?
        .map_err(|e| L1Error::Unavailable(e.to_string()))?;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Runs one Redis exchange with the deadline; a failure starts the skip window.
    async fn call<T>(
        &self,
        f: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, L1Error> {
        if !self.usable() {
            return Err(L1Error::Skipped);
        }
        let result = async {
            let mut conn = self.connection().await?;
            tokio::time::timeout(self.timeout, f(&mut conn))
                .await
                .map_err(|_| L1Error::Timeout)?
                .map_err(|e| L1Error::Unavailable(e.to_string()))
        }
        .await;
        if result.is_err() {
            self.skip_until_ms
                .store(self.now_ms() + BACKOFF.as_millis() as u64, Ordering::Relaxed);
            // A fresh connection after the pause rather than a broken one.
            *self.conn.lock().await = None;
        }
        result
    }

    pub async fn ping(&self) -> Result<(), L1Error> {
        self.call(async |c| redis::cmd("PING").query_async::<String>(c).await)
            .await
            .map(|_| ())
    }

    /// The user's generation and the exact entry under it, in one round trip.
    pub async fn lookup(&self, keys: &SearchKeys) -> Result<Lookup, L1Error> {
        let gen_key = generation_key(&keys.user_id);
        let prefix = entry_prefix(&keys.user_id);
        let exact = keys.exact.hex();
        let (generation, body): (String, Option<Vec<u8>>) = self
            .call(async |c| {
                self.lookup_script
                    .key(&gen_key)
                    .arg(&prefix)
                    .arg(&exact)
                    .invoke_async(c)
                    .await
            })
            .await?;
        let generation = generation.parse().unwrap_or(0);
        let body = body.and_then(|b| {
            let name = entry_key(&keys.user_id, generation, keys.exact);
            self.open(&keys.user_id, &name, &b)
        });
        Ok(Lookup { generation, body })
    }

    /// The user's recent queries under `generation`, newest first.
    pub async fn candidates(&self, user: &str, generation: u64) -> Result<Vec<SemanticEntry>, L1Error> {
        let key = index_key(user, generation);
        let max = self.max_per_user as isize;
        let raw: Vec<Vec<u8>> = self
            .call(async |c| {
                redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(max - 1)
                    .query_async(c)
                    .await
            })
            .await?;
        Ok(raw
            .iter()
            .filter_map(|b| self.open(user, &key, b))
            .filter_map(|b| unpack(&b))
            .collect())
    }

    pub async fn body(
        &self,
        user: &str,
        generation: u64,
        exact: Digest128,
    ) -> Result<Option<Bytes>, L1Error> {
        let key = entry_key(user, generation, exact);
        let body: Option<Vec<u8>> = self
            .call(async |c| redis::cmd("GET").arg(&key).query_async(c).await)
            .await?;
        Ok(body.and_then(|b| self.open(user, &key, &b)))
    }

    /// Seals a value stored under the Redis key `name`.
    fn seal(&self, user: &str, name: &str, plain: &[u8]) -> Result<Vec<u8>, L1Error> {
        seal_bytes(&user_key(&self.seal_key, user), name.as_bytes(), plain)
            .map_err(|e| L1Error::Unavailable(e.to_string()))
    }

    /// Opens a value read from `name`; `None` (a miss) when it does not open.
    fn open(&self, user: &str, name: &str, sealed: &[u8]) -> Option<Bytes> {
        open_bytes(&user_key(&self.seal_key, user), name.as_bytes(), sealed)
            .ok()
            .map(Bytes::from)
    }

    /// Stores an answer under `generation` and lists its query for matching.
    pub async fn store(
        &self,
        user: &str,
        generation: u64,
        entry: &SemanticEntry,
        body: &Bytes,
    ) -> Result<(), L1Error> {
        let ekey = entry_key(user, generation, entry.exact);
        let ikey = index_key(user, generation);
        let packed = self.seal(user, &ikey, &pack(entry))?;
        let body = self.seal(user, &ekey, body)?;
        let ttl = self.ttl_seconds;
        let keep = self.max_per_user as isize;
        self.call(async |c| {
            redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(&ekey)
                .arg(&body)
                .arg("EX")
                .arg(ttl)
                .ignore()
                .cmd("LPUSH")
                .arg(&ikey)
                .arg(&packed)
                .ignore()
                .cmd("LTRIM")
                .arg(&ikey)
                .arg(0)
                .arg(keep - 1)
                .ignore()
                .cmd("EXPIRE")
                .arg(&ikey)
                .arg(ttl)
                .ignore()
                .query_async::<()>(c)
                .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_entries_round_trip() {
        let e = SemanticEntry {
            params: Digest128([3; 16]),
            exact: Digest128([9; 16]),
            query: "bé thích ăn gì".into(),
            embedding: vec![0.5, -0.25, 1.0].into(),
        };
        let back = unpack(&pack(&e)).expect("unpack");
        assert_eq!(back.params, e.params);
        assert_eq!(back.exact, e.exact);
        assert_eq!(back.query, e.query);
        assert_eq!(&*back.embedding, &*e.embedding);
        assert!(unpack(&[1, 2, 3]).is_none());
    }
}
