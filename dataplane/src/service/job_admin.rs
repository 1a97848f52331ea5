//! Operating on jobs: list them by state, and re-drive failed ones (after
//! the cause is fixed: a model endpoint back, a dependency restored). A
//! re-driven job is `queued` again with no attempts and a new retry
//! horizon, and is published at once; if that publish fails it stays
//! `queued` and the outbox sweeper publishes it. Both the admin endpoint
//! (one tenant, within the key's reach) and `pika-dataplane jobs` (every
//! tenant) go through here. Re-drives are written to the audit log.

use crate::domain::{JobFilter, JobSummary};
use crate::metrics::Metrics;
use crate::ports::{JobQueue, MetaStore};
use crate::service::ServiceError;
use crate::service::audit::{Access, Actor, AuditLog};
use std::sync::Arc;

/// Most jobs one listing or re-drive covers.
pub const MAX_JOBS: usize = 1000;

pub struct JobAdmin {
    pub meta: Arc<dyn MetaStore>,
    /// `None` where this process cannot publish (the command line on the
    /// embedded queue): the serving process's sweeper publishes instead.
    pub queue: Option<Arc<dyn JobQueue>>,
    pub metrics: Arc<Metrics>,
    /// `None` for the command line before any tenant exists (nothing to record against).
    pub audit: Option<AuditLog>,
}

/// What a re-drive did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Redriven {
    /// The jobs queued again.
    pub job_ids: Vec<String>,
    /// How many of them were published now (the rest: by the sweeper).
    pub published: usize,
}

/// Whose jobs a call covers: one caller's reach, or every tenant (the command line).
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Caller(&'a Actor),
    Everyone,
}

impl JobAdmin {
    /// Jobs matching `filter`, newest first, within `scope`.
    pub async fn list(
        &self,
        scope: Scope<'_>,
        mut filter: JobFilter,
    ) -> Result<Vec<JobSummary>, ServiceError> {
        filter.limit = filter.limit.clamp(1, MAX_JOBS);
        if let Scope::Caller(actor) = scope {
            filter.tenant_id = Some(actor.reach.tenant_id.clone());
        }
        let jobs = self.meta.list_jobs(&filter).await?;
        Ok(match scope {
            // A device key sees its own users' jobs only.
            Scope::Caller(actor) => jobs.into_iter().filter(|j| actor.owns(&j.user_id)).collect(),
            Scope::Everyone => jobs,
        })
    }

    /// Re-drives the failed jobs matching `filter` (its state is ignored).
    pub async fn redrive(&self, scope: Scope<'_>, mut filter: JobFilter) -> Result<Redriven, ServiceError> {
        filter.limit = filter.limit.clamp(1, MAX_JOBS);
        if let Scope::Caller(actor) = scope {
            filter.tenant_id = Some(actor.reach.tenant_id.clone());
            if actor.reach.users.is_some() {
                // Only the device's users: pick them by listing first.
                let mut listing = filter.clone();
                listing.state = Some(pika_common::wire::JobState::Failed);
                let mine: Vec<String> = self
                    .list(scope, listing)
                    .await?
                    .into_iter()
                    .map(|j| j.job_id)
                    .collect();
                if mine.is_empty() {
                    return Ok(Redriven::default());
                }
                filter.job_ids = Some(mine);
            }
        }
        let job_ids = self.meta.redrive_jobs(&filter).await?;
        let mut published = 0;
        if let Some(queue) = &self.queue {
            for id in &job_ids {
                match queue.publish(id).await {
                    Ok(()) => published += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot publish re-driven jobs; the sweeper will");
                        break;
                    }
                }
            }
        }
        self.metrics
            .jobs_requeued
            .with_label_values(&["redriven"])
            .inc_by(job_ids.len() as u64);
        if let (Scope::Caller(actor), Some(audit)) = (scope, &self.audit) {
            for id in &job_ids {
                audit
                    .write_now(
                        actor,
                        Access {
                            action: "job.redrive",
                            user_id: None,
                            target: Some(id),
                        },
                    )
                    .await?;
            }
        }
        Ok(Redriven { job_ids, published })
    }

    /// Moves dead-lettered messages back to the main queue (broker-wide:
    /// the command line only). Workers dead-letter them again if they still
    /// name no job.
    pub async fn redrive_dead_letters(&self, limit: usize) -> Result<usize, ServiceError> {
        let Some(queue) = &self.queue else {
            return Ok(0);
        };
        let moved = queue.redrive_dead_letters(limit.clamp(1, 100_000)).await?;
        self.metrics
            .jobs_requeued
            .with_label_values(&["dead_letter"])
            .inc_by(moved as u64);
        Ok(moved)
    }
}
