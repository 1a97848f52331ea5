//! `CacheSignals` on Redis: after every write for a user, `INCR pika:gen:{user}`
//! and `PUBLISH pika:invalidate "{user} {generation}"`, in one atomic script.
//! Sidecars key their L1 entries by generation and drop L0 entries on the
//! message (DESIGN.md §5). Every call has a short deadline: a slow or dead
//! Redis delays no write by more than that, and the caller treats failures as
//! "no signal" (caches then expire by TTL).

use crate::ports::{CacheSignals, StoreError};
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use std::time::Duration;

use pika_common::signals::BUMP_SCRIPT;
use pika_common::signals::{
    ERASED, INVALIDATE_CHANNEL, Invalidation, generation_key, is_l1_key_of, l1_patterns,
};

/// Redis-backed generations and invalidation messages. Connects lazily: the
/// service starts and serves while Redis is down (writes then go unannounced
/// and caches fall back to their TTL), and reconnects when Redis returns.
pub struct RedisSignals {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    timeout: Duration,
}

fn unavailable(e: impl Into<crate::ports::BoxError>) -> StoreError {
    StoreError::unavailable("redis", e)
}

impl RedisSignals {
    /// Checks the URL; the connection is made on first use.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        Ok(RedisSignals::from_client(
            super::redis_client(url, std::path::Path::new(""), "redis")?,
            timeout,
        ))
    }

    /// Over a client already made (TLS settings included).
    pub fn from_client(client: redis::Client, timeout: Duration) -> Self {
        RedisSignals {
            client,
            conn: tokio::sync::Mutex::new(None),
            timeout,
        }
    }

    /// Like [`RedisSignals::new`], then connects once (fails when Redis is down).
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let s = RedisSignals::new(url, timeout)?;
        s.connection().await?;
        Ok(s)
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(self.timeout, self.client.get_connection_manager())
            .await
            .map_err(|_| unavailable("connect timed out"))?
            .map_err(unavailable)?;
        *guard = Some(c.clone());
        Ok(c)
    }

    async fn within<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .map_err(|_| unavailable("timed out"))?
            .map_err(unavailable)
    }
}

#[async_trait]
impl CacheSignals for RedisSignals {
    async fn bump(&self, user_id: &str) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        let key = generation_key(user_id);
        let script = redis::Script::new(BUMP_SCRIPT);
        let generation: u64 = self
            .within(
                script
                    .key(&key)
                    .arg(INVALIDATE_CHANNEL)
                    .arg(user_id)
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(generation)
    }

    async fn generation(&self, user_id: &str) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        let g: Option<u64> = self
            .within(
                redis::cmd("GET")
                    .arg(generation_key(user_id))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(g.unwrap_or(0))
    }

    async fn forget(&self, user_id: &str) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        let mut removed = 0u64;
        for pattern in l1_patterns(user_id) {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = self
                    .within(
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(1000)
                            .query_async(&mut conn),
                    )
                    .await?;
                let mine: Vec<String> = keys.into_iter().filter(|k| is_l1_key_of(k, user_id)).collect();
                if !mine.is_empty() {
                    let n: u64 = self
                        .within(redis::cmd("UNLINK").arg(&mine).query_async(&mut conn))
                        .await?;
                    removed += n;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        let announce = Invalidation {
            user_id: user_id.to_string(),
            generation: ERASED,
        };
        let _: () = self
            .within(
                redis::pipe()
                    .cmd("DEL")
                    .arg(generation_key(user_id))
                    .ignore()
                    .cmd("PUBLISH")
                    .arg(INVALIDATE_CHANNEL)
                    .arg(announce.encode())
                    .ignore()
                    .query_async(&mut conn),
            )
            .await?;
        Ok(removed)
    }
}
