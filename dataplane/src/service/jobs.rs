//! The jobs use case: reading a job's state, and waiting (bounded) for it to
//! finish for callers that asked for the synchronous shape (`?wait=true`).

use crate::domain::Job;
use crate::ports::MetaStore;
use crate::service::ServiceError;
use crate::service::audit::Actor;
use pika_common::wire::JobState;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

pub struct JobService {
    pub meta: Arc<dyn MetaStore>,
    /// Job ids announced by in-process workers when a job reaches a final state.
    pub job_done: broadcast::Sender<String>,
    /// Bounds on `?wait=true` holders.
    pub waits: Arc<WaitSlots>,
}

/// How many callers may hold a request open waiting for a job, in all and
/// per API key: a flood of `?wait=true` would otherwise hold every
/// connection and task. A caller past the bound gets the 202 at once.
pub struct WaitSlots {
    total: usize,
    per_key: usize,
    held: Mutex<HashMap<String, usize>>,
}

/// One held wait; released on drop.
pub struct WaitSlot {
    slots: Arc<WaitSlots>,
    key: String,
}

impl WaitSlots {
    pub fn new(total: usize, per_key: usize) -> Arc<Self> {
        Arc::new(WaitSlots {
            total,
            per_key,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `key` (an API key id; `""` without auth), if one is free.
    pub fn try_hold(self: &Arc<Self>, key: &str) -> Option<WaitSlot> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let all: usize = held.values().sum();
        let mine = held.get(key).copied().unwrap_or(0);
        if all >= self.total || mine >= self.per_key {
            return None;
        }
        held.insert(key.to_string(), mine + 1);
        Some(WaitSlot {
            slots: Arc::clone(self),
            key: key.to_string(),
        })
    }
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

impl JobService {
    /// A job of a user within the caller's reach (anyone else's: not found).
    pub async fn get(&self, actor: &Actor, job_id: &str) -> Result<Job, ServiceError> {
        self.meta
            .get_job(job_id)
            .await?
            .filter(|j| actor.owns(&j.user_id))
            .ok_or_else(|| ServiceError::NotFound(format!("job {job_id}")))
    }

    /// Waits until the job reaches a final state or `timeout` passes; returns
    /// its latest row either way.
    pub async fn wait_for(
        &self,
        actor: &Actor,
        job_id: &str,
        timeout: Duration,
    ) -> Result<Job, ServiceError> {
        let mut done = self.job_done.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = self.get(actor, job_id).await?;
            if matches!(job.state, JobState::Completed | JobState::Failed)
                || tokio::time::Instant::now() >= deadline
            {
                return Ok(job);
            }
            // Wake on this job's completion, or every 250 ms for workers in
            // other processes (their announcements do not reach this one).
            let next_look = deadline.min(tokio::time::Instant::now() + Duration::from_millis(250));
            let _ = tokio::time::timeout_at(next_look, async {
                loop {
                    match done.recv().await {
                        Ok(id) if id == job_id => break,
                        Ok(_) => continue,
                        Err(_) => break,
                    }
                }
            })
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_slots_are_bounded_in_all_and_per_key() {
        let slots = WaitSlots::new(3, 2);
        let a1 = slots.try_hold("a").expect("a1");
        let _a2 = slots.try_hold("a").expect("a2");
        assert!(slots.try_hold("a").is_none(), "per-key bound");
        let _b1 = slots.try_hold("b").expect("b1");
        assert!(slots.try_hold("c").is_none(), "total bound");
        drop(a1);
        assert!(slots.try_hold("c").is_some(), "a released slot is free again");
    }
}
