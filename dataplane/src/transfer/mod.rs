//! Moving memories in and out in Mem0's format (`pika-dataplane import`
//! and `export`), so a Mem0 user keeps what Mem0 knew. An import keeps each
//! memory's id, text, timestamps, metadata, scope and (mapped) category,
//! re-embeds it with our embedder, and is idempotent: ids already stored
//! are skipped before anything is embedded. Progress is reported through a
//! callback; the binary draws it.

pub mod format;

use crate::ports::MetaStore;
use crate::service::ServiceError;
use crate::service::audit::Actor;
use crate::service::memories::{ImportCount, Imported, MemoryEdits};
use format::{ExportedMemory, Rejected};
use pika_common::tenancy::{Reach, scoped_user};
use pika_common::wire::MemoryAttrs;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Format(#[from] format::FormatError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("{0} memories name no user: pass --user to import them for one user")]
    NoUser(usize),
    #[error("writing the export: {0}")]
    Write(#[from] std::io::Error),
}

impl From<crate::ports::StoreError> for TransferError {
    fn from(e: crate::ports::StoreError) -> Self {
        TransferError::Service(e.into())
    }
}

#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub tenant: String,
    /// The user of memories whose export names none (history.db); with
    /// `force_user`, of every memory.
    pub user: Option<String>,
    pub force_user: bool,
    /// Count what would happen; write nothing.
    pub dry_run: bool,
    /// Memories embedded and committed together.
    pub batch: usize,
}

/// What an import did (or, dry, would do).
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    pub read: usize,
    pub rejected: Vec<Rejected>,
    pub inserted: usize,
    /// Already stored (an earlier run) or repeated in the input.
    pub skipped: usize,
    pub users: usize,
    pub elapsed: Duration,
}

impl ImportReport {
    /// Memories stored per second of the run.
    pub fn rate(&self) -> f64 {
        self.inserted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The actor an offline tool writes as: the tenant's whole reach, audited
/// under a request id of its own.
pub fn tool_actor(tenant: &str, what: &str) -> Actor {
    Actor {
        key_id: None,
        request_id: format!("{what}-{}", uuid::Uuid::now_v7().simple()),
        reach: Reach::tenant(tenant),
    }
}

/// Imports `memories` (with the `rejected` ones found while reading),
/// calling `progress(done)` after each batch with the number handled so far.
pub async fn import(
    edits: &MemoryEdits,
    meta: &dyn MetaStore,
    memories: Vec<ExportedMemory>,
    rejected: Vec<Rejected>,
    opts: &ImportOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<ImportReport, TransferError> {
    let started = Instant::now();
    let mut report = ImportReport {
        read: memories.len() + rejected.len(),
        rejected,
        ..ImportReport::default()
    };
    let mut by_user: BTreeMap<String, Vec<ExportedMemory>> = BTreeMap::new();
    let mut unowned = 0;
    for m in memories {
        let user = if opts.force_user {
            opts.user.clone()
        } else {
            m.user_id.clone().or_else(|| opts.user.clone())
        };
        match user {
            Some(u) => by_user.entry(u).or_default().push(m),
            None => unowned += 1,
        }
    }
    if unowned > 0 {
        return Err(TransferError::NoUser(unowned));
    }
    report.users = by_user.len();
    let actor = tool_actor(&opts.tenant, "import");
    let mut done = 0;
    for (user, list) in by_user {
        let scoped = scoped_user(&opts.tenant, &user);
        for chunk in list.chunks(opts.batch.max(1)) {
            let count = if opts.dry_run {
                dry_count(meta, chunk).await?
            } else {
                let batch = chunk.iter().cloned().map(imported).collect();
                edits.import(&actor, &scoped, batch).await?
            };
            report.inserted += count.inserted;
            report.skipped += count.skipped;
            done += chunk.len();
            progress(done);
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

async fn dry_count(meta: &dyn MetaStore, chunk: &[ExportedMemory]) -> Result<ImportCount, TransferError> {
    let ids: Vec<String> = chunk.iter().map(|m| m.id.clone()).collect();
    let known: HashSet<String> = meta.known_fact_ids(&ids).await?.into_iter().collect();
    let mut seen = HashSet::new();
    let inserted = ids
        .iter()
        .filter(|id| !known.contains(*id) && seen.insert((*id).clone()))
        .count();
    Ok(ImportCount {
        inserted,
        skipped: ids.len() - inserted,
    })
}

fn imported(m: ExportedMemory) -> Imported {
    let attrs = MemoryAttrs {
        metadata: m.metadata,
        scope: m.scope,
    };
    Imported {
        id: m.id,
        text: m.text,
        category: m.category,
        attrs: Some(attrs),
        created_at: m.created_at,
        updated_at: m.updated_at,
        history: m.history,
    }
}

/// Writes every active memory of `users` (unscoped ids of `tenant`; all of
/// the tenant's when empty) as JSON Lines in Mem0's `get_all` shape.
/// Returns how many were written.
pub async fn export(
    meta: &dyn MetaStore,
    tenant: &str,
    users: &[String],
    out: &mut dyn Write,
) -> Result<usize, TransferError> {
    let scoped: Vec<String> = if users.is_empty() {
        meta.tenant_users(tenant, usize::MAX >> 1)
            .await?
            .into_iter()
            .map(|u| u.user_id)
            .collect()
    } else {
        users.iter().map(|u| scoped_user(tenant, u)).collect()
    };
    let request_id = tool_actor(tenant, "export").request_id;
    let mut n = 0;
    for user in scoped {
        // Recorded before the first line, like the API's export.
        let entry = crate::domain::AuditEntry {
            key_id: None,
            action: "export_mem0".into(),
            user_id: Some(user.clone()),
            target: None,
            request_id: request_id.clone(),
        };
        meta.append_audit(&[entry]).await?;
        let mut cursor: Option<String> = None;
        loop {
            let page = meta.list_facts(&user, cursor.as_deref(), 500, None).await?;
            for f in &page.facts {
                serde_json::to_writer(&mut *out, &format::export_line(f)).map_err(std::io::Error::other)?;
                out.write_all(b"\n")?;
                n += 1;
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    out.flush()?;
    Ok(n)
}
