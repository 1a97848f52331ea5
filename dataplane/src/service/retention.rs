//! Retention (SDD 9.5): each tenant's memories, conversations, jobs, history
//! and audit rows older than its `retention_days` (2 years by default) are
//! removed by a sweep that runs in every process running workers. Expired
//! facts and episodes leave the vector index and the graph too, and the
//! users' caches are told. Each pass that removes anything is audited, and
//! counted in `retention_expired_total{kind}`.
//!
//! Several processes may sweep at once: every step is idempotent (a row
//! deleted by one is simply not found by the other).

use crate::app::Deps;
use crate::domain::AuditEntry;
use crate::ports::Expired;
use crate::service::ServiceError;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;

/// What one sweep removed, per tenant.
pub type SweepReport = BTreeMap<String, Expired>;

pub struct Retention {
    deps: Deps,
    batch: usize,
}

impl Retention {
    pub fn new(deps: Deps, batch: usize) -> Self {
        Retention {
            deps,
            batch: batch.max(1),
        }
    }

    /// One sweep as of `now` over every tenant.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<SweepReport, ServiceError> {
        let mut report = SweepReport::new();
        for tenant in self.deps.meta.list_tenants().await? {
            let cutoff = now - chrono::Duration::days(i64::from(tenant.retention_days));
            let expired = self.expire_tenant(&tenant.tenant_id, cutoff).await?;
            if expired != Expired::default() {
                self.record(&tenant.tenant_id, &expired).await?;
                report.insert(tenant.tenant_id, expired);
            }
        }
        Ok(report)
    }

    /// Batches until a batch comes back short.
    async fn expire_tenant(&self, tenant_id: &str, cutoff: DateTime<Utc>) -> Result<Expired, ServiceError> {
        let deps = &self.deps;
        let mut total = Expired::default();
        loop {
            let batch = deps.meta.expire_before(tenant_id, cutoff, self.batch).await?;
            let mut by_user: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for (user, id) in &batch.items {
                by_user.entry(user).or_default().push(id.clone());
            }
            for (user, ids) in &by_user {
                deps.vectors.delete(user, ids).await?;
                deps.graph.delete_facts(user, ids).await?;
                if let Err(e) = deps.signals.bump(user).await {
                    tracing::warn!(error = %e, "cannot bump cache generation after retention");
                }
            }
            let full = batch.items.len() >= self.batch;
            total.items.extend(batch.items);
            total.jobs += batch.jobs;
            total.history += batch.history;
            total.audit += batch.audit;
            if !full {
                return Ok(total);
            }
        }
    }

    async fn record(&self, tenant_id: &str, e: &Expired) -> Result<(), ServiceError> {
        let m = &self.deps.metrics.retention_expired;
        m.with_label_values(&["items"]).inc_by(e.items.len() as u64);
        m.with_label_values(&["jobs"]).inc_by(e.jobs);
        m.with_label_values(&["history"]).inc_by(e.history);
        m.with_label_values(&["audit"]).inc_by(e.audit);
        let entry = AuditEntry {
            key_id: None,
            action: "retention".into(),
            user_id: None,
            target: Some(format!(
                "tenant:{tenant_id} items={} jobs={} history={} audit={}",
                e.items.len(),
                e.jobs,
                e.history,
                e.audit
            )),
            request_id: format!("retention-{}", uuid::Uuid::now_v7()),
        };
        self.deps.meta.append_audit(&[entry]).await?;
        tracing::info!(
            tenant = tenant_id,
            items = e.items.len(),
            jobs = e.jobs,
            "retention expired data"
        );
        Ok(())
    }

    /// Sweeps every `every` until shutdown (first sweep soon after start).
    pub async fn run(self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut wait = Duration::from_secs(5).min(every);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            if *shutdown.borrow() {
                break;
            }
            if let Err(e) = self.sweep(Utc::now()).await {
                tracing::warn!(error = %e, "retention sweep failed; will try again");
            }
            wait = every;
        }
    }
}
