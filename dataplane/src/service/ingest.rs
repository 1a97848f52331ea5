//! Accepting an extract request: store a `queued` job (the conversation with
//! it) and publish its id. The job row is written before publishing, so an
//! accepted job survives a crash between the two (the queue recovers queued
//! jobs at start-up).

use crate::domain::{ConsentState, Job};
use crate::ports::{JobQueue, MetaStore, NewJob};
use crate::service::ServiceError;
use crate::service::audit::{Access, Actor, AuditLog};
use crate::service::forget::pseudonym;
use pika_common::tenancy::split_scoped;
use pika_common::wire::ExtractRequest;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Default idempotency key: user, conversation and a hash of the turns.
pub fn default_idempotency_key(req: &ExtractRequest) -> String {
    let mut h = Sha256::new();
    for m in &req.conversation {
        h.update(serde_json::to_vec(&m.role).unwrap_or_default());
        h.update([0]);
        h.update(m.content.as_bytes());
        h.update([0]);
    }
    format!(
        "{}/{}/{}",
        req.user_id,
        req.conversation_id,
        hex::encode(&h.finalize()[..16])
    )
}

/// The extract use case (accepting; the worker does the extraction).
pub struct ExtractService {
    pub meta: Arc<dyn MetaStore>,
    pub queue: Arc<dyn JobQueue>,
    pub audit: AuditLog,
}

impl ExtractService {
    /// Stores and publishes the job; returns it and whether it is new. The
    /// same idempotency key again returns the same job.
    pub async fn accept(
        &self,
        actor: &Actor,
        req: ExtractRequest,
        idempotency_key: Option<String>,
    ) -> Result<(Job, bool), ServiceError> {
        // From here on, and in the worker, the user is the scoped key: the job,
        // its episodes, facts, vectors, graph nodes and cache signals are all
        // keyed by tenant + user.
        let mut req = req;
        req.user_id = actor.scope(&req.user_id)?;
        self.check_consent(&req.user_id).await?;
        let key = match idempotency_key {
            // Scope client keys by user so two tenants' keys can never collide.
            Some(k) => format!("{}/client/{k}", req.user_id),
            None => default_idempotency_key(&req),
        };
        let user_id = req.user_id.clone();
        let new = NewJob {
            job_id: uuid::Uuid::now_v7().to_string(),
            idempotency_key: key,
            request: req,
        };
        let (job, created) = self.meta.create_job(new).await?;
        if created {
            // If publishing fails the job stays queued in the store and the
            // sweeper (or the embedded queue at start-up) recovers it.
            if let Err(e) = self.queue.publish(&job.job_id).await {
                tracing::error!(job_id = %job.job_id, error = %e, "publish failed; job stays queued for recovery");
            }
        }
        let access = Access {
            action: "extract",
            user_id: Some(&user_id),
            target: Some(&job.job_id),
        };
        self.audit.read(actor, access).await;
        Ok((job, created))
    }

    /// Withdrawn consent refuses extraction; so does no consent, when the
    /// user's tenant requires it.
    async fn check_consent(&self, scoped: &str) -> Result<(), ServiceError> {
        match self.meta.consent(&pseudonym(scoped)).await? {
            Some(c) if c.state == ConsentState::Withdrawn => Err(ServiceError::ConsentWithdrawn),
            Some(_) => Ok(()),
            None => {
                let tenant = split_scoped(scoped).0;
                let required = self.meta.tenant(tenant).await?.is_some_and(|t| t.require_consent);
                if required {
                    Err(ServiceError::ConsentRequired)
                } else {
                    Ok(())
                }
            }
        }
    }
}
