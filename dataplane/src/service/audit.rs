//! Who did what to which child's data: every service records its use case
//! here (DESIGN.md §7). Reads are batched through the [`Bookkeeper`];
//! deletions and exports are written before the caller is answered, since
//! they must never go unrecorded.

use crate::domain::AuditEntry;
use crate::ports::{MetaStore, StoreError};
use crate::service::ServiceError;
use crate::service::bookkeeping::Bookkeeper;
use pika_common::tenancy::Reach;
use std::sync::Arc;

/// The caller of a use case: whose data it reaches, and how the audit log
/// names it. Services turn a user id into a scoped key only through
/// [`Actor::scope`], and check data they found by id with [`Actor::owns`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// `None` with `--insecure-dev`.
    pub key_id: Option<String>,
    pub request_id: String,
    pub reach: Reach,
}

impl Actor {
    /// The scoped key of `user_id` in the caller's tenant; a device key asking
    /// for a user outside its list is refused (whether that user exists or not).
    pub fn scope(&self, user_id: &str) -> Result<String, ServiceError> {
        self.reach.scope(user_id).ok_or(ServiceError::OutsideKeyScope)
    }

    /// Whether data stored under the scoped key `scoped` is the caller's to see;
    /// data of anyone else is answered as not found.
    pub fn owns(&self, scoped: &str) -> bool {
        self.reach.owns_scoped(scoped)
    }
}

/// What is recorded, besides the actor.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub action: &'a str,
    pub user_id: Option<&'a str>,
    pub target: Option<&'a str>,
}

#[derive(Clone)]
pub struct AuditLog {
    meta: Arc<dyn MetaStore>,
    bookkeeper: Bookkeeper,
}

impl AuditLog {
    pub fn new(meta: Arc<dyn MetaStore>, bookkeeper: Bookkeeper) -> Self {
        AuditLog { meta, bookkeeper }
    }

    fn entry(actor: &Actor, access: Access<'_>) -> AuditEntry {
        AuditEntry {
            key_id: actor.key_id.clone(),
            action: access.action.to_string(),
            user_id: access.user_id.map(str::to_string),
            target: access.target.map(str::to_string),
            request_id: actor.request_id.clone(),
        }
    }

    /// Queues a read (batched; waits when the queue is full, never drops).
    pub async fn read(&self, actor: &Actor, access: Access<'_>) {
        self.bookkeeper.audit(Self::entry(actor, access)).await;
    }

    /// Writes a destructive or bulk action now.
    pub async fn write_now(&self, actor: &Actor, access: Access<'_>) -> Result<(), StoreError> {
        self.meta.append_audit(&[Self::entry(actor, access)]).await
    }

    /// Writes every queued read before returning.
    pub async fn flush(&self) {
        self.bookkeeper.flush().await;
    }

    /// Audit and access entries waiting to be written.
    pub fn queued(&self) -> usize {
        self.bookkeeper.queued()
    }

    /// Queues access-counter bumps for facts a search returned.
    pub fn accessed(&self, fact_ids: Vec<String>) {
        self.bookkeeper.accessed(fact_ids);
    }
}
