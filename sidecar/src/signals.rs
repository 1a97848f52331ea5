//! The sidecar's one write to Redis: bumping a user's generation when it
//! relays a job completion (see `layers`), with the same script the
//! dataplane runs (`pika_common::signals`), so every sidecar's L0 and every
//! L1 key moves on at once. Connects lazily and gives up after a deadline:
//! a missed bump only means caches expire by TTL.

use pika_common::signals::{BUMP_SCRIPT, INVALIDATE_CHANNEL, generation_key};
use redis::aio::ConnectionManager;
use std::time::Duration;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum BumpError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

pub struct GenerationBumper {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    script: redis::Script,
    timeout: Duration,
}

impl GenerationBumper {
    /// Over `client`; the connection is made on first use.
    pub fn new(client: redis::Client, timeout: Duration) -> Self {
        GenerationBumper {
            client,
            conn: Mutex::new(None),
            script: redis::Script::new(BUMP_SCRIPT),
            timeout,
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, BumpError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(self.timeout, self.client.get_connection_manager())
            .await
            .map_err(|_| BumpError::Timeout(self.timeout))??;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Increments the user's generation and announces it; returns the new one.
    pub async fn bump(&self, user_id: &str) -> Result<u64, BumpError> {
        let mut conn = self.connection().await?;
        let mut invocation = self.script.key(generation_key(user_id));
        invocation.arg(INVALIDATE_CHANNEL).arg(user_id);
        let call = invocation.invoke_async(&mut conn);
        Ok(tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| BumpError::Timeout(self.timeout))??)
    }
}
