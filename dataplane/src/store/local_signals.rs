//! `CacheSignals` embedded: per-user generations in process memory, announced
//! on a broadcast channel. Used when no Redis is configured (no sidecar to tell).

use crate::ports::{CacheSignals, StoreError};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::broadcast;

/// In-process generations.
pub struct LocalSignals {
    generations: Mutex<HashMap<String, u64>>,
    tx: broadcast::Sender<(String, u64)>,
}

impl Default for LocalSignals {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(1024);
        LocalSignals {
            generations: Mutex::new(HashMap::new()),
            tx,
        }
    }
}

impl LocalSignals {
    /// Receives `(user_id, generation)` after every bump.
    pub fn subscribe(&self) -> broadcast::Receiver<(String, u64)> {
        self.tx.subscribe()
    }
}

#[async_trait]
impl CacheSignals for LocalSignals {
    async fn bump(&self, user_id: &str) -> Result<u64, StoreError> {
        let generation = {
            let mut map = self
                .generations
                .lock()
                .map_err(|_| StoreError::unavailable("local signals", "generation map poisoned"))?;
            let g = map.entry(user_id.to_string()).or_insert(0);
            *g += 1;
            *g
        };
        let _ = self.tx.send((user_id.to_string(), generation));
        Ok(generation)
    }

    async fn generation(&self, user_id: &str) -> Result<u64, StoreError> {
        let map = self
            .generations
            .lock()
            .map_err(|_| StoreError::unavailable("local signals", "generation map poisoned"))?;
        Ok(map.get(user_id).copied().unwrap_or(0))
    }

    /// No cache lives outside this process; the generation goes.
    async fn forget(&self, user_id: &str) -> Result<u64, StoreError> {
        self.generations
            .lock()
            .map_err(|_| StoreError::unavailable("local signals", "generation map poisoned"))?
            .remove(user_id);
        let _ = self.tx.send((user_id.to_string(), pika_common::signals::ERASED));
        Ok(0)
    }
}
