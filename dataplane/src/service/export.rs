//! The complete export of one child's data, streamed: read page by page from
//! the metadata store and handed on as records through a small bounded
//! channel, so an export of any size holds a few pages in memory and a slow
//! client slows the reads instead of filling memory.
//!
//! Records, in this order: every memory item (facts and episodes, any
//! status) with its history; the graph as the store holds it (each item's
//! `mentions` of entities and `supersedes` links, then each entity with its
//! item count); the stored conversations (the jobs that carried them); the
//! audit of the child's data. A final `End` carries the counts: a client
//! that does not see it knows the export was cut short.

use crate::domain::{Fact, HistoryEntry, Job};
use crate::ports::{AuditRow, MetaStore, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Items, jobs or audit rows read per store call.
const PAGE: usize = 200;
/// Records waiting for the client at most.
const BUFFERED: usize = 64;

/// One record of the export.
#[derive(Debug)]
pub enum ExportRecord {
    Item(Fact),
    History(HistoryEntry),
    /// The item names the entity (a `MENTIONS` edge of the graph).
    Mention {
        fact_id: String,
        entity: String,
    },
    /// The item replaced an older one.
    Supersedes {
        fact_id: String,
        supersedes: String,
    },
    Entity {
        name: String,
        items: u64,
    },
    Conversation(Job),
    Audit(AuditRow),
    End(ExportCounts),
    /// The export stopped here (a store failed); no `End` follows.
    Failed(String),
}

/// What an export held.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExportCounts {
    pub items: u64,
    pub history: u64,
    pub mentions: u64,
    pub supersedes: u64,
    pub entities: u64,
    pub conversations: u64,
    pub audit: u64,
}

/// Starts streaming `user_id`'s (a scoped key) export; records arrive on the
/// returned channel. Dropping the receiver stops the reads.
pub fn start(meta: Arc<dyn MetaStore>, user_id: String) -> mpsc::Receiver<ExportRecord> {
    let (tx, rx) = mpsc::channel(BUFFERED);
    tokio::spawn(async move {
        let out = Sender(tx.clone());
        match produce(meta.as_ref(), &user_id, &out).await {
            Ok(Some(counts)) => {
                let _ = tx.send(ExportRecord::End(counts)).await;
            }
            Ok(None) => {} // the client went away
            Err(e) => {
                tracing::warn!(error = %e, "export cut short");
                let _ = tx.send(ExportRecord::Failed(e.to_string())).await;
            }
        }
    });
    rx
}

struct Sender(mpsc::Sender<ExportRecord>);

impl Sender {
    /// `false` when the client is gone.
    async fn send(&self, r: ExportRecord) -> bool {
        self.0.send(r).await.is_ok()
    }
}

/// Sends every record but the last; `None` when the client went away.
async fn produce(meta: &dyn MetaStore, user: &str, out: &Sender) -> Result<Option<ExportCounts>, StoreError> {
    let mut counts = ExportCounts::default();
    // Entities with their item counts: bounded by the child's distinct
    // entity names, not by the size of the export.
    let mut entities: BTreeMap<String, u64> = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = meta.export_items(user, after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.fact_id.clone());
        let ids: Vec<String> = page.iter().map(|f| f.fact_id.clone()).collect();
        let history = meta.history_of(&ids).await?;
        let mut links = Vec::new();
        for f in &page {
            for e in &f.entities {
                *entities.entry(e.clone()).or_default() += 1;
                links.push(ExportRecord::Mention {
                    fact_id: f.fact_id.clone(),
                    entity: e.clone(),
                });
            }
            if let Some(old) = &f.supersedes {
                links.push(ExportRecord::Supersedes {
                    fact_id: f.fact_id.clone(),
                    supersedes: old.clone(),
                });
            }
        }
        for f in page {
            counts.items += 1;
            if !out.send(ExportRecord::Item(f)).await {
                return Ok(None);
            }
        }
        for h in history {
            counts.history += 1;
            if !out.send(ExportRecord::History(h)).await {
                return Ok(None);
            }
        }
        for l in links {
            match &l {
                ExportRecord::Mention { .. } => counts.mentions += 1,
                _ => counts.supersedes += 1,
            }
            if !out.send(l).await {
                return Ok(None);
            }
        }
    }
    for (name, items) in entities {
        counts.entities += 1;
        if !out.send(ExportRecord::Entity { name, items }).await {
            return Ok(None);
        }
    }
    let mut after: Option<String> = None;
    loop {
        let page = meta.export_jobs(user, after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.job_id.clone());
        for j in page {
            counts.conversations += 1;
            if !out.send(ExportRecord::Conversation(j)).await {
                return Ok(None);
            }
        }
    }
    let mut after = 0i64;
    loop {
        let page = meta.audit_of(user, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for a in page {
            counts.audit += 1;
            if !out.send(ExportRecord::Audit(a)).await {
                return Ok(None);
            }
        }
    }
    Ok(Some(counts))
}
