//! The facts use case: read one fact, page through a user's memories, read a
//! fact's history, delete a fact. Every read is audited.

use crate::domain::{Fact, FactStatus, HistoryEntry, MemoryKind};
use crate::ports::{FactPage, MetaStore};
use crate::service::ServiceError;
use crate::service::audit::{Access, Actor, AuditLog};
use crate::service::forget::{Deleted, Forget};
use std::sync::Arc;

pub struct FactService {
    pub meta: Arc<dyn MetaStore>,
    pub forget: Forget,
    pub audit: AuditLog,
}

/// One page request of a user's memories.
#[derive(Debug, Clone)]
pub struct PageQuery<'a> {
    pub user_id: &'a str,
    pub cursor: Option<&'a str>,
    /// 1..=200 (the handler validates).
    pub limit: usize,
    /// `None`: facts and episodes.
    pub kind: Option<MemoryKind>,
}

impl FactService {
    /// A fact or episode that is not deleted.
    pub async fn get(&self, actor: &Actor, fact_id: &str) -> Result<Fact, ServiceError> {
        let fact = self.visible(actor, fact_id).await?;
        let access = Access {
            action: "get_fact",
            user_id: Some(&fact.user_id),
            target: Some(fact_id),
        };
        self.audit.read(actor, access).await;
        Ok(fact)
    }

    pub async fn list(&self, actor: &Actor, q: PageQuery<'_>) -> Result<FactPage, ServiceError> {
        let user = actor.scope(q.user_id)?;
        let page = self.meta.list_facts(&user, q.cursor, q.limit, q.kind).await?;
        let access = Access {
            action: "list_facts",
            user_id: Some(&user),
            target: None,
        };
        self.audit.read(actor, access).await;
        Ok(page)
    }

    /// The fact as it is now (deleted ones too: history outlives the text's
    /// visibility) and its ADD/UPDATE/DELETE entries.
    pub async fn history(
        &self,
        actor: &Actor,
        fact_id: &str,
    ) -> Result<(Fact, Vec<HistoryEntry>), ServiceError> {
        let fact = self
            .meta
            .get_fact(fact_id)
            .await?
            .filter(|f| actor.owns(&f.user_id))
            .ok_or_else(|| ServiceError::NotFound(format!("fact {fact_id}")))?;
        let history = self.meta.fact_history(fact_id).await?;
        let access = Access {
            action: "fact_history",
            user_id: Some(&fact.user_id),
            target: Some(fact_id),
        };
        self.audit.read(actor, access).await;
        Ok((fact, history))
    }

    /// Deletes a fact and the episodes holding its words; audited before the answer.
    pub async fn delete(&self, actor: &Actor, fact_id: &str) -> Result<Deleted, ServiceError> {
        // Not found for a fact of anyone outside the caller's reach.
        self.visible(actor, fact_id).await?;
        let deleted = self.forget.delete_fact(fact_id).await?;
        let access = Access {
            action: "delete_fact",
            user_id: Some(&deleted.fact.user_id),
            target: Some(fact_id),
        };
        self.audit.write_now(actor, access).await?;
        Ok(deleted)
    }

    /// Records a client's verdict on one of its memories (Mem0's feedback)
    /// in the audit log; nothing else changes yet.
    pub async fn feedback(
        &self,
        actor: &Actor,
        fact_id: &str,
        verdict: Option<&str>,
    ) -> Result<(), ServiceError> {
        let fact = self.visible(actor, fact_id).await?;
        let action = match verdict {
            Some("POSITIVE") => "feedback_positive",
            Some("NEGATIVE") => "feedback_negative",
            Some("VERY_NEGATIVE") => "feedback_very_negative",
            _ => "feedback_cleared",
        };
        let access = Access {
            action,
            user_id: Some(&fact.user_id),
            target: Some(fact_id),
        };
        self.audit.write_now(actor, access).await?;
        Ok(())
    }

    /// A fact that is not deleted and is the caller's to see.
    async fn visible(&self, actor: &Actor, fact_id: &str) -> Result<Fact, ServiceError> {
        self.meta
            .get_fact(fact_id)
            .await?
            .filter(|f| f.status != FactStatus::Deleted && actor.owns(&f.user_id))
            .ok_or_else(|| ServiceError::NotFound(format!("fact {fact_id}")))
    }
}
