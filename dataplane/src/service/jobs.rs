//! The jobs use case: reading a job's state, and waiting (bounded) for it to
//! finish for callers that asked for the synchronous shape (`?wait=true`).

use crate::domain::Job;
use crate::ports::MetaStore;
use crate::service::ServiceError;
use crate::service::audit::Actor;
use pika_common::wire::JobState;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

pub struct JobService {
    pub meta: Arc<dyn MetaStore>,
    /// Job ids announced by in-process workers when a job reaches a final state.
    pub job_done: broadcast::Sender<String>,
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
