//! The users use case: export everything held about a user (streamed), and erase them
//! (the right to be forgotten). Both are audited before the answer.

use crate::domain::{Consent, ConsentState};
use crate::ports::{MetaStore, UserSummary};
use crate::service::ServiceError;
use crate::service::audit::{Access, Actor, AuditLog};
use crate::service::export::{self, ExportRecord};
use crate::service::forget::{ErasureReceipt, Forget, pseudonym};
use std::sync::Arc;

pub struct UserService {
    pub meta: Arc<dyn MetaStore>,
    pub forget: Forget,
    pub audit: AuditLog,
}

impl UserService {
    /// The users of the caller's tenant (only those a device key lists)
    /// that hold memories, at most `limit`.
    pub async fn list(&self, actor: &Actor, limit: usize) -> Result<Vec<UserSummary>, ServiceError> {
        let users = self
            .meta
            .tenant_users(&actor.reach.tenant_id, limit)
            .await?
            .into_iter()
            .filter(|u| actor.owns(&u.user_id))
            .collect();
        let access = Access {
            action: "list_users",
            user_id: None,
            target: None,
        };
        self.audit.read(actor, access).await;
        Ok(users)
    }

    /// Streams everything stored about the user (see [`export`]); the
    /// access is audited before the first record.
    pub async fn export(
        &self,
        actor: &Actor,
        user_id: &str,
    ) -> Result<tokio::sync::mpsc::Receiver<ExportRecord>, ServiceError> {
        let user_id = actor.scope(user_id)?;
        self.audit
            .write_now(actor, access("export_user", &user_id))
            .await?;
        Ok(export::start(self.meta.clone(), user_id))
    }

    /// Erases the user from every store and cache; audited (under the
    /// pseudonym: the log keeps no id of an erased user) before the answer.
    pub async fn delete(&self, actor: &Actor, user_id: &str) -> Result<ErasureReceipt, ServiceError> {
        let user_id = &actor.scope(user_id)?;
        // Reads of this user still queued go into the log first, so the
        // erasure pseudonymises them too.
        self.audit.flush().await;
        let receipt = self.forget.delete_user(user_id).await?;
        let access = Access {
            action: "delete_user",
            user_id: Some(&receipt.pseudonym),
            target: Some(&receipt.receipt_id),
        };
        self.audit.write_now(actor, access).await?;
        Ok(receipt)
    }
}

impl UserService {
    /// The user's recorded consent (`None`: never set).
    pub async fn consent(&self, actor: &Actor, user_id: &str) -> Result<Option<Consent>, ServiceError> {
        let user_id = &actor.scope(user_id)?;
        let consent = self.meta.consent(&pseudonym(user_id)).await?;
        self.audit.read(actor, access("get_consent", user_id)).await;
        Ok(consent)
    }

    /// Records consent granted or withdrawn (audited before the answer); a
    /// withdrawal with `erase` also erases the user (the record, keyed by
    /// pseudonym, outlives the erasure and keeps refusing extraction).
    pub async fn set_consent(
        &self,
        actor: &Actor,
        user_id: &str,
        state: ConsentState,
        erase: bool,
    ) -> Result<(Consent, Option<ErasureReceipt>), ServiceError> {
        let scoped = actor.scope(user_id)?;
        let consent = Consent {
            state,
            set_by: actor.key_id.clone(),
            set_at: chrono::Utc::now(),
        };
        self.meta.set_consent(&pseudonym(&scoped), &consent).await?;
        let action = match state {
            ConsentState::Granted => "grant_consent",
            ConsentState::Withdrawn => "withdraw_consent",
        };
        let receipt = if erase && state == ConsentState::Withdrawn {
            Some(self.delete(actor, user_id).await?)
        } else {
            None
        };
        // After an erasure the audit names the user by pseudonym only.
        let named = if receipt.is_some() {
            pseudonym(&scoped)
        } else {
            scoped
        };
        self.audit.write_now(actor, access(action, &named)).await?;
        Ok((consent, receipt))
    }
}

fn access<'a>(action: &'a str, user_id: &'a str) -> Access<'a> {
    Access {
        action,
        user_id: Some(user_id),
        target: None,
    }
}
