//! The metadata store with a child's text sealed on the way in and opened on
//! the way out: the adapters below store and return sealed strings in the
//! columns that held plain text, and never hold a key.
//!
//! Sealed: conversation messages, the caller's user name, metadata and Mem0
//! scope (agent, run, app ids) of a job's request; a memory's attributes; content, answered turn, entities and tags of facts and
//! episodes; history text; the names a child is known by. Blinded (keyed
//! hashes, see [`super::DataKey::blind`]): keyword index terms and episode
//! dedup keys. Left visible: ids, scoped user keys, categories, predicates,
//! polarity, language, confidence, counts and every timestamp.

use super::{DataKey, Vault};
use crate::domain::{
    ApiKeyRecord, AuditEntry, Claim, Consent, ExtractionPlan, Fact, GraphRepair, HistoryEntry, IndexKeys,
    Job, JobFilter, JobSummary, MemoryKind, RepairOp, Tenant,
};
use crate::ports::{
    AuditRow, AuditStore, Expired, FactPage, FactStore, JobStore, KeyStore, KeywordMatches, MetaErasure,
    MetaStore, NewJob, StoreError, UserSummary,
};
use crate::service::forget::pseudonym;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pika_common::wire::{ExtractRequest, JobState, MemoryAttrs};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Purpose labels of blind tokens.
const TERM: &str = "term";
const DEDUP: &str = "dedup";
/// Key of the JSON object that holds sealed request metadata.
const SEALED_METADATA: &str = "pika_sealed";

/// [`MetaStore`] over another, sealing as described in the module docs.
pub struct SealedMeta {
    inner: Arc<dyn MetaStore>,
    vault: Arc<Vault>,
}

impl SealedMeta {
    pub fn new(inner: Arc<dyn MetaStore>, vault: Arc<Vault>) -> SealedMeta {
        SealedMeta { inner, vault }
    }

    async fn open_all(&self, list: &mut [String]) -> Result<(), StoreError> {
        for s in list.iter_mut() {
            *s = self.vault.open(s).await?;
        }
        Ok(())
    }

    async fn open_opt(&self, s: &mut Option<String>) -> Result<(), StoreError> {
        if let Some(text) = s {
            *text = self.vault.open(text).await?;
        }
        Ok(())
    }

    async fn open_fact(&self, f: &mut Fact) -> Result<(), StoreError> {
        f.content = self.vault.open(&f.content).await?;
        self.open_opt(&mut f.context).await?;
        self.open_all(&mut f.entities).await?;
        self.open_all(&mut f.tags).await?;
        if let Some(sealed) = f.attrs.as_ref().and_then(sealed_attrs) {
            let text = self.vault.open(sealed).await?;
            f.attrs = Some(serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        Ok(())
    }

    async fn open_facts(&self, facts: &mut [Fact]) -> Result<(), StoreError> {
        for f in facts {
            self.open_fact(f).await?;
        }
        Ok(())
    }

    async fn open_history(&self, entries: &mut [HistoryEntry]) -> Result<(), StoreError> {
        for h in entries {
            self.open_opt(&mut h.old_content).await?;
            self.open_opt(&mut h.new_content).await?;
        }
        Ok(())
    }

    async fn open_request(&self, r: &mut ExtractRequest) -> Result<(), StoreError> {
        for m in &mut r.conversation {
            m.content = self.vault.open(&m.content).await?;
        }
        self.open_opt(&mut r.user_name).await?;
        if let Some(scope) = &mut r.scope {
            self.open_opt(&mut scope.agent_id).await?;
            self.open_opt(&mut scope.run_id).await?;
            self.open_opt(&mut scope.app_id).await?;
        }
        if let Some(sealed) = r
            .metadata
            .as_ref()
            .and_then(|m| m.get(SEALED_METADATA))
            .and_then(|v| v.as_str())
        {
            let text = self.vault.open(sealed).await?;
            r.metadata = Some(serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        Ok(())
    }

    /// The plan with its text sealed under its user's key (`None`: a plan
    /// with no text, stored as it is). A user with no key but a tombstone
    /// was erased meanwhile: the plan is refused ([`StoreError::ClaimLost`]),
    /// so a late job or import never brings an erased child's key back.
    async fn sealed_plan(&self, plan: &ExtractionPlan) -> Result<Option<ExtractionPlan>, StoreError> {
        let owner = if plan.user_id.is_empty() {
            plan.new_facts.first().map(|f| f.user_id.clone())
        } else {
            Some(plan.user_id.clone())
        };
        let Some(owner) = owner else {
            if plan.history.is_empty() && plan.user_names.is_empty() {
                return Ok(None);
            }
            return Err(StoreError::Corrupt(
                "an extraction plan with text names no user".into(),
            ));
        };
        // The key was made when the job was accepted. None now means the
        // child was erased meanwhile (the job row went with it), unless the
        // job predates sealing: only then is a key made here.
        let key = match self.vault.existing_key(&owner).await? {
            Some(k) => k,
            None if self
                .inner
                .erased_since(&pseudonym(&owner), DateTime::<Utc>::MIN_UTC)
                .await? =>
            {
                return Err(StoreError::ClaimLost);
            }
            None => self.vault.writing_key(&owner).await?,
        };
        let mut sealed = plan.clone();
        // Names are sealed with a fresh nonce each time, so the store cannot
        // see that a name is known already: keep only new ones.
        let known: HashSet<String> = self.user_names(&owner).await?.into_iter().collect();
        sealed.user_names.retain(|n| !known.contains(n));
        seal_plan(&key, &mut sealed)?;
        Ok(Some(sealed))
    }

    async fn open_job(&self, job: &mut Job) -> Result<(), StoreError> {
        self.open_request(&mut job.request).await
    }
}

fn seal_request(key: &DataKey, r: &mut ExtractRequest) -> Result<(), StoreError> {
    for m in &mut r.conversation {
        m.content = seal(key, &m.content)?;
    }
    if let Some(name) = &mut r.user_name {
        *name = seal(key, name)?;
    }
    if let Some(scope) = &mut r.scope {
        seal_opt(key, &mut scope.agent_id)?;
        seal_opt(key, &mut scope.run_id)?;
        seal_opt(key, &mut scope.app_id)?;
    }
    if let Some(meta) = &r.metadata {
        let text = seal(key, &meta.to_string())?;
        r.metadata = Some(serde_json::json!({ SEALED_METADATA: text }));
    }
    Ok(())
}

/// A memory's attributes (metadata and scope) sealed whole: the stored
/// object then holds only `{"metadata": {"pika_sealed": "..."}}`.
fn seal_attrs(key: &DataKey, attrs: &mut Option<MemoryAttrs>) -> Result<(), StoreError> {
    if let Some(a) = attrs {
        let text = serde_json::to_string(a).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        *attrs = Some(MemoryAttrs {
            metadata: Some(serde_json::json!({ SEALED_METADATA: seal(key, &text)? })),
            scope: Default::default(),
        });
    }
    Ok(())
}

/// The sealed text of attributes written by [`seal_attrs`].
fn sealed_attrs(a: &MemoryAttrs) -> Option<&str> {
    if !a.scope.is_empty() {
        return None;
    }
    let meta = a.metadata.as_ref()?.as_object()?;
    (meta.len() == 1).then_some(())?;
    meta.get(SEALED_METADATA)?.as_str()
}

fn seal(key: &DataKey, text: &str) -> Result<String, StoreError> {
    key.seal(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn seal_all(key: &DataKey, list: &mut [String]) -> Result<(), StoreError> {
    for s in list {
        *s = seal(key, s)?;
    }
    Ok(())
}

fn seal_opt(key: &DataKey, s: &mut Option<String>) -> Result<(), StoreError> {
    if let Some(text) = s {
        *text = seal(key, text)?;
    }
    Ok(())
}

/// Seals the plan's text and records each new item's blinded index terms
/// and dedup key (computed from the plain text first).
fn seal_plan(key: &DataKey, plan: &mut ExtractionPlan) -> Result<(), StoreError> {
    for f in &mut plan.new_facts {
        let keys = IndexKeys {
            terms: f.index_terms().iter().map(|t| key.blind(TERM, t)).collect(),
            dedup_key: f.dedup_key().map(|k| key.blind(DEDUP, &k)),
        };
        plan.index.insert(f.fact_id.clone(), keys);
        f.content = seal(key, &f.content)?;
        seal_opt(key, &mut f.context)?;
        seal_all(key, &mut f.entities)?;
        seal_all(key, &mut f.tags)?;
        seal_attrs(key, &mut f.attrs)?;
    }
    for h in &mut plan.history {
        seal_opt(key, &mut h.old_content)?;
        seal_opt(key, &mut h.new_content)?;
    }
    seal_all(key, &mut plan.user_names)?;
    Ok(())
}

/// `plain` with each one's blind token beside it (tokens first), so a lookup
/// finds sealed rows and rows written before sealing was on; and the map
/// from token back to plain.
fn with_tokens(
    key: Option<&DataKey>,
    purpose: &str,
    plain: &[String],
) -> (Vec<String>, HashMap<String, String>) {
    let Some(key) = key else {
        return (plain.to_vec(), HashMap::new());
    };
    let mut back = HashMap::new();
    let mut all = Vec::with_capacity(plain.len() * 2);
    for p in plain {
        let token = key.blind(purpose, p);
        back.insert(token.clone(), p.clone());
        all.push(token);
    }
    all.extend(plain.iter().cloned());
    (all, back)
}

#[async_trait]
impl JobStore for SealedMeta {
    async fn create_job(&self, mut job: NewJob) -> Result<(Job, bool), StoreError> {
        let key = self.vault.writing_key(&job.request.user_id).await?;
        seal_request(&key, &mut job.request)?;
        let (mut stored, created) = self.inner.create_job(job).await?;
        self.open_job(&mut stored).await?;
        Ok((stored, created))
    }

    async fn get_job(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        let mut job = self.inner.get_job(job_id).await?;
        if let Some(j) = &mut job {
            self.open_job(j).await?;
        }
        Ok(job)
    }

    async fn queued_job_ids(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        self.inner.queued_job_ids(limit).await
    }

    async fn stale_queued_job_ids(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.stale_queued_job_ids(cutoff, limit).await
    }

    async fn count_unfinished_jobs(&self) -> Result<u64, StoreError> {
        self.inner.count_unfinished_jobs().await
    }

    async fn requeue_processing(&self) -> Result<u64, StoreError> {
        self.inner.requeue_processing().await
    }

    // Leases, listings, re-drives and graph repairs carry no sealed text.
    async fn renew_leases(&self, claims: &[Claim], lease: Duration) -> Result<u64, StoreError> {
        self.inner.renew_leases(claims, lease).await
    }

    async fn requeue_expired_leases(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.requeue_expired_leases(now, limit).await
    }

    async fn release_job(&self, claim: &Claim) -> Result<bool, StoreError> {
        self.inner.release_job(claim).await
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobSummary>, StoreError> {
        self.inner.list_jobs(filter).await
    }

    async fn count_jobs_by_state(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        self.inner.count_jobs_by_state().await
    }

    async fn redrive_jobs(&self, filter: &JobFilter) -> Result<Vec<String>, StoreError> {
        self.inner.redrive_jobs(filter).await
    }

    async fn queue_graph_repair(
        &self,
        user_id: &str,
        op: RepairOp,
        fact_ids: &[String],
    ) -> Result<(), StoreError> {
        self.inner.queue_graph_repair(user_id, op, fact_ids).await
    }

    async fn take_graph_repairs(
        &self,
        now: DateTime<Utc>,
        hold: Duration,
        limit: usize,
    ) -> Result<Vec<GraphRepair>, StoreError> {
        self.inner.take_graph_repairs(now, hold, limit).await
    }

    async fn finish_graph_repair(&self, id: i64) -> Result<(), StoreError> {
        self.inner.finish_graph_repair(id).await
    }

    async fn postpone_graph_repair(
        &self,
        id: i64,
        error: &str,
        next_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.postpone_graph_repair(id, error, next_at).await
    }

    async fn count_graph_repairs(&self) -> Result<u64, StoreError> {
        self.inner.count_graph_repairs().await
    }

    async fn claim_job(
        &self,
        job_id: &str,
        take_over: bool,
        lease: Duration,
    ) -> Result<Option<(Claim, Job)>, StoreError> {
        let mut claimed = self.inner.claim_job(job_id, take_over, lease).await?;
        if let Some((_, job)) = &mut claimed {
            self.open_job(job).await?;
        }
        Ok(claimed)
    }

    async fn complete_job(&self, claim: &Claim, plan: &ExtractionPlan) -> Result<(), StoreError> {
        match self.sealed_plan(plan).await? {
            Some(sealed) => self.inner.complete_job(claim, &sealed).await,
            None => self.inner.complete_job(claim, plan).await,
        }
    }

    async fn fail_job(&self, claim: &Claim, error: &str, retry: bool) -> Result<(), StoreError> {
        self.inner.fail_job(claim, error, retry).await
    }

    async fn record_erasure(&self, pseudonym: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.record_erasure(pseudonym, at).await
    }

    async fn erased_since(&self, pseudonym: &str, since: DateTime<Utc>) -> Result<bool, StoreError> {
        self.inner.erased_since(pseudonym, since).await
    }
}

#[async_trait]
impl FactStore for SealedMeta {
    async fn active_facts(&self, ids: &[String]) -> Result<Vec<Fact>, StoreError> {
        let mut facts = self.inner.active_facts(ids).await?;
        self.open_facts(&mut facts).await?;
        Ok(facts)
    }

    async fn get_fact(&self, fact_id: &str) -> Result<Option<Fact>, StoreError> {
        let mut fact = self.inner.get_fact(fact_id).await?;
        if let Some(f) = &mut fact {
            self.open_fact(f).await?;
        }
        Ok(fact)
    }

    async fn fact_history(&self, fact_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut entries = self.inner.fact_history(fact_id).await?;
        self.open_history(&mut entries).await?;
        Ok(entries)
    }

    async fn scan_active_facts(&self, after: Option<&str>, limit: usize) -> Result<Vec<Fact>, StoreError> {
        let mut facts = self.inner.scan_active_facts(after, limit).await?;
        self.open_facts(&mut facts).await?;
        Ok(facts)
    }

    async fn list_facts(
        &self,
        user_id: &str,
        cursor: Option<&str>,
        limit: usize,
        kind: Option<MemoryKind>,
    ) -> Result<FactPage, StoreError> {
        let mut page = self.inner.list_facts(user_id, cursor, limit, kind).await?;
        self.open_facts(&mut page.facts).await?;
        Ok(page)
    }

    async fn delete_fact(&self, fact_id: &str) -> Result<bool, StoreError> {
        self.inner.delete_fact(fact_id).await
    }

    async fn known_fact_ids(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        self.inner.known_fact_ids(ids).await
    }

    async fn tenant_users(&self, tenant_id: &str, limit: usize) -> Result<Vec<UserSummary>, StoreError> {
        self.inner.tenant_users(tenant_id, limit).await
    }

    async fn import_facts(&self, plan: &ExtractionPlan) -> Result<usize, StoreError> {
        match self.sealed_plan(plan).await? {
            Some(sealed) => self.inner.import_facts(&sealed).await,
            None => self.inner.import_facts(plan).await,
        }
    }

    async fn rewrite_facts(&self, plan: &ExtractionPlan) -> Result<usize, StoreError> {
        match self.sealed_plan(plan).await? {
            Some(sealed) => self.inner.rewrite_facts(&sealed).await,
            None => self.inner.rewrite_facts(plan).await,
        }
    }

    async fn delete_user(&self, user_id: &str, pseudonym: &str) -> Result<MetaErasure, StoreError> {
        let mut out = self.inner.delete_user(user_id, pseudonym).await?;
        // After the rows: a failure above leaves the key, so the data stays
        // readable until the erasure is retried and completes.
        out.data_keys = u64::from(self.vault.destroy(user_id).await?);
        Ok(out)
    }

    async fn export_items(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Fact>, StoreError> {
        let mut facts = self.inner.export_items(user_id, after, limit).await?;
        self.open_facts(&mut facts).await?;
        Ok(facts)
    }

    async fn export_jobs(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let mut jobs = self.inner.export_jobs(user_id, after, limit).await?;
        for j in &mut jobs {
            self.open_job(j).await?;
        }
        Ok(jobs)
    }

    async fn history_of(&self, fact_ids: &[String]) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut entries = self.inner.history_of(fact_ids).await?;
        self.open_history(&mut entries).await?;
        Ok(entries)
    }

    async fn keyword_candidates(
        &self,
        user_id: &str,
        terms: &[String],
        limit: usize,
    ) -> Result<KeywordMatches, StoreError> {
        let key = self.vault.reading_key(user_id).await?;
        let (lookup, back) = with_tokens(key.as_deref(), TERM, terms);
        let mut found = self.inner.keyword_candidates(user_id, &lookup, limit).await?;
        for item in &mut found.items {
            // Tokens of query terms read as the terms, so ranking matches
            // them; other tokens only count towards the item's length.
            for t in item.terms.iter_mut() {
                if let Some(plain) = back.get(t) {
                    *t = plain.clone();
                }
            }
        }
        Ok(found)
    }

    async fn conversation_items(
        &self,
        user_id: &str,
        conversation_id: &str,
    ) -> Result<Vec<Fact>, StoreError> {
        let mut facts = self.inner.conversation_items(user_id, conversation_id).await?;
        self.open_facts(&mut facts).await?;
        Ok(facts)
    }

    async fn known_episodes(&self, user_id: &str, keys: &[String]) -> Result<Vec<String>, StoreError> {
        let key = self.vault.reading_key(user_id).await?;
        let (lookup, back) = with_tokens(key.as_deref(), DEDUP, keys);
        let known = self.inner.known_episodes(user_id, &lookup).await?;
        let mut out: Vec<String> = known
            .into_iter()
            .map(|k| back.get(&k).cloned().unwrap_or(k))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn user_names(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let mut names = self.inner.user_names(user_id).await?;
        self.open_all(&mut names).await?;
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn record_access(&self, fact_ids: &[String]) -> Result<(), StoreError> {
        self.inner.record_access(fact_ids).await
    }

    async fn user_history(&self, user_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut entries = self.inner.user_history(user_id).await?;
        self.open_history(&mut entries).await?;
        Ok(entries)
    }

    async fn expire_before(
        &self,
        tenant_id: &str,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Expired, StoreError> {
        self.inner.expire_before(tenant_id, cutoff, limit).await
    }
}

#[async_trait]
impl KeyStore for SealedMeta {
    async fn insert_tenant(&self, tenant: &Tenant) -> Result<bool, StoreError> {
        self.inner.insert_tenant(tenant).await
    }

    async fn tenant(&self, tenant_id: &str) -> Result<Option<Tenant>, StoreError> {
        self.inner.tenant(tenant_id).await
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.inner.list_tenants().await
    }

    async fn set_require_consent(&self, tenant_id: &str, required: bool) -> Result<bool, StoreError> {
        self.inner.set_require_consent(tenant_id, required).await
    }

    async fn set_retention_days(&self, tenant_id: &str, days: u32) -> Result<bool, StoreError> {
        self.inner.set_retention_days(tenant_id, days).await
    }

    async fn consent(&self, pseudonym: &str) -> Result<Option<Consent>, StoreError> {
        self.inner.consent(pseudonym).await
    }

    async fn set_consent(&self, pseudonym: &str, consent: &Consent) -> Result<(), StoreError> {
        self.inner.set_consent(pseudonym, consent).await
    }

    async fn insert_key(&self, record: &ApiKeyRecord, hash: &str) -> Result<(), StoreError> {
        self.inner.insert_key(record, hash).await
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.inner.key_by_hash(hash).await
    }

    async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.inner.list_keys().await
    }

    async fn revoke_key(&self, key_id: &str) -> Result<bool, StoreError> {
        self.inner.revoke_key(key_id).await
    }
}

#[async_trait]
impl AuditStore for SealedMeta {
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.inner.append_audit(entries).await
    }

    async fn audit_of(&self, user_id: &str, after: i64, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        self.inner.audit_of(user_id, after, limit).await
    }
}

#[async_trait]
impl MetaStore for SealedMeta {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}
