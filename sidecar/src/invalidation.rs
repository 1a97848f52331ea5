//! Listens on `pika:invalidate` and drops the named user's L0 entries that
//! were fetched before the announced generation.
//!
//! Messages sent while this sidecar is not listening are lost (Redis pub/sub
//! keeps nothing), so every (re)subscription starts by clearing L0, and while
//! the subscription is down L0 serves only entries younger than
//! `l0.unsubscribedTtlSeconds`. A silent connection is found by a ping every
//! few seconds.

use crate::state::State;
use crate::warmup;
use futures::StreamExt;
use pika_common::signals::{ERASED, INVALIDATE_CHANNEL, Invalidation};
use std::time::Duration;

const PING_EVERY: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs until the process ends, reconnecting with back-off.
pub async fn run(state: State, client: redis::Client) {
    let mut pause = Duration::from_millis(100);
    loop {
        match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => {
                let (mut sink, mut stream) = pubsub.split();
                if let Err(e) = sink.subscribe(INVALIDATE_CHANNEL).await {
                    tracing::warn!(error = %e, "cannot subscribe to invalidations");
                } else {
                    state.cache.l0.clear();
                    state.set_subscribed(true);
                    tracing::info!("listening for cache invalidations");
                    pause = Duration::from_millis(100);
                    let mut ping = tokio::time::interval(PING_EVERY);
                    ping.tick().await;
                    loop {
                        tokio::select! {
                            msg = stream.next() => {
                                let Some(msg) = msg else { break };
                                let payload: String = msg.get_payload().unwrap_or_default();
                                match Invalidation::parse(&payload) {
                                    Some(m) if m.generation == ERASED => {
                                        state.cache.l0.forget_user(&m.user_id).await;
                                    }
                                    Some(m) => {
                                        state.cache.l0.invalidate_user_before(&m.user_id, m.generation).await;
                                        warmup::schedule(&state, &m.user_id);
                                    }
                                    None => {}
                                }
                            }
                            _ = ping.tick() => {
                                // In subscribed mode Redis answers PING with an
                                // array, not a string: any reply means alive.
                                let alive = tokio::time::timeout(CONNECT_TIMEOUT, sink.ping::<redis::Value>()).await;
                                if !matches!(alive, Ok(Ok(_))) {
                                    break;
                                }
                            }
                        }
                    }
                    tracing::warn!(
                        "invalidation subscription lost; L0 serves only young entries until it is back"
                    );
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "redis unavailable for invalidations"),
            Err(_) => tracing::debug!("redis connect timed out"),
        }
        state.set_subscribed(false);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}
