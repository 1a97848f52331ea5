//! `MetaStore` on SQLite (sqlx): the embedded default.
//!
//! WAL mode lets searches read while the worker writes. Every multi-row change
//! of an extraction is one transaction together with the job's completion, so
//! a crash leaves either all of it or none of it.

use super::{from_ms, parse_permissions, parse_stored, to_ms};
use crate::domain::{
    ApiKeyRecord, AuditEntry, Claim, Consent, ConsentState, ExtractionPlan, Fact, FactStatus, HistoryEntry,
    HistoryEvent, Job, MemoryKind, Polarity, Tenant,
};
use crate::ports::{
    AuditRow, Expired, FactPage, KeywordItem, KeywordMatches, MetaErasure, MetaStore, NewJob, StoreError,
};
use crate::ports::{AuditStore, FactStore, JobStore, KeyStore, UserSummary};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pika_common::wire::{Category, JobState};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

mod facts;
mod jobs;
mod keys;

/// The embedded metadata store; also hands its pool to the embedded vector index and graph.
#[derive(Clone)]
pub struct SqliteMetaStore {
    pool: SqlitePool,
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound { what: "row".into() },
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(d.to_string()),
        other => StoreError::unavailable("sqlite", other),
    }
}

/// How every write transaction on SQLite begins: taking the write lock up
/// front, so a busy database waits out `busy_timeout`. A deferred
/// transaction that reads first and then writes fails at once with
/// SQLITE_BUSY when another connection committed in between (WAL cannot
/// upgrade a stale snapshot), which under concurrent erasures and
/// extractions answered 503.
pub(crate) const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

const FACT_COLUMNS: &str = "fact_id, user_id, conversation_id, content, category, confidence, entities, tags, \
     source_turns, language, status, polarity, predicate, supersedes, created_at, updated_at, \
     accessed_count, last_accessed_at, kind, context, occurred_at, said_at, term_count, dedup_key, attrs";

const JOB_COLUMNS: &str = "job_id, user_id, conversation_id, idempotency_key, request, state, attempts, \
     result, error, created_at, updated_at, COALESCE(retry_since, created_at) AS retry_since";

/// Whether a connection handed back to the pool can serve the next caller.
///
/// On some errors (`SQLITE_FULL` on a full disk, I/O errors) SQLite rolls a
/// transaction back by itself. sqlx does not see that: the `ROLLBACK` it
/// sends when the transaction is dropped then fails ("no transaction is
/// active"), its transaction depth stays at 1, and every later `BEGIN
/// IMMEDIATE` on that connection fails ("attempted to call begin_with at
/// non-zero transaction depth") until the process restarts, so the jobs that
/// draw it fail however long the disk has been free again (the chaos suite's
/// full-disk fault). Such a connection is closed instead; the pool opens a
/// fresh one.
async fn still_usable(conn: &mut sqlx::SqliteConnection) -> bool {
    use sqlx::Connection;
    // The rollback of a dropped transaction is queued on the connection's
    // worker; a ping after it returns once it has run.
    if conn.ping().await.is_err() {
        return false;
    }
    if conn.is_in_transaction() {
        tracing::warn!("closing an SQLite connection left inside a transaction it cannot roll back");
        return false;
    }
    true
}

impl SqliteMetaStore {
    /// Opens (creating if needed) the database at `url` and applies
    /// migrations, every commit durable (see [`Self::connect_with`]).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, true).await
    }

    /// With `durable`, every commit is on disk before it returns
    /// (`synchronous=FULL`: an fsync of the WAL per commit), so a job
    /// answered 202 survives an OS crash or power loss. Without, WAL's
    /// `synchronous=NORMAL`: a process crash loses nothing, an OS crash may
    /// lose the last commits (`storage.durable_commits`).
    pub async fn connect_with(url: &str, durable: bool) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(db_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if durable {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(Duration::from_secs(10))
            // Deleted content is overwritten with zeros, not left in free
            // pages of the file (erasure must leave nothing to recover).
            .pragma("secure_delete", "ON")
            .foreign_keys(false);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .after_release(|conn, _| Box::pin(async move { Ok(still_usable(conn).await) }))
            .connect_with(opts)
            .await
            .map_err(db_err)?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::unavailable("sqlite", e))?;
        Ok(SqliteMetaStore { pool })
    }

    pub fn pool(&self) -> SqlitePool {
        self.pool.clone()
    }

    /// History rows where `column` (`fact_id` or `user_id`, never user input) equals `value`, oldest first.
    async fn history_where(&self, column: &str, value: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        sqlx::query(&format!(
            "SELECT fact_id, event, old_content, new_content, related_fact_id, job_id, created_at
             FROM fact_history WHERE {column} = ? ORDER BY id"
        ))
        .bind(value)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(history_from_row)
        .collect()
    }
}

fn fact_from_row(r: &SqliteRow) -> Result<Fact, StoreError> {
    let json_vec = |col: &str| -> Result<Vec<String>, StoreError> {
        serde_json::from_str(r.try_get::<&str, _>(col).map_err(db_err)?).map_err(corrupt)
    };
    let category: String = r.try_get("category").map_err(db_err)?;
    Ok(Fact {
        fact_id: r.try_get("fact_id").map_err(db_err)?,
        user_id: r.try_get("user_id").map_err(db_err)?,
        conversation_id: r.try_get("conversation_id").map_err(db_err)?,
        content: r.try_get("content").map_err(db_err)?,
        category: parse_stored("fact category", &category, Category::parse)?,
        confidence: r.try_get::<f64, _>("confidence").map_err(db_err)? as f32,
        entities: json_vec("entities")?,
        tags: json_vec("tags")?,
        source_turns: serde_json::from_str(r.try_get::<&str, _>("source_turns").map_err(db_err)?)
            .map_err(corrupt)?,
        language: r.try_get("language").map_err(db_err)?,
        status: {
            let s = r.try_get::<&str, _>("status").map_err(db_err)?;
            FactStatus::parse(s).ok_or_else(|| corrupt(format!("fact status {s:?}")))?
        },
        kind: {
            let s = r.try_get::<&str, _>("kind").map_err(db_err)?;
            MemoryKind::parse(s).ok_or_else(|| corrupt(format!("memory kind {s:?}")))?
        },
        context: r.try_get("context").map_err(db_err)?,
        occurred_at: r
            .try_get::<Option<i64>, _>("occurred_at")
            .map_err(db_err)?
            .map(from_ms),
        said_at: r
            .try_get::<Option<i64>, _>("said_at")
            .map_err(db_err)?
            .map(from_ms),
        polarity: parse_stored(
            "fact polarity",
            r.try_get::<&str, _>("polarity").map_err(db_err)?,
            Polarity::parse,
        )?,
        predicate: r.try_get("predicate").map_err(db_err)?,
        supersedes: r.try_get("supersedes").map_err(db_err)?,
        created_at: from_ms(r.try_get("created_at").map_err(db_err)?),
        updated_at: from_ms(r.try_get("updated_at").map_err(db_err)?),
        accessed_count: r.try_get::<i64, _>("accessed_count").map_err(db_err)? as u32,
        last_accessed_at: r
            .try_get::<Option<i64>, _>("last_accessed_at")
            .map_err(db_err)?
            .map(from_ms),
        attrs: r
            .try_get::<Option<&str>, _>("attrs")
            .map_err(db_err)?
            .map(serde_json::from_str)
            .transpose()
            .map_err(corrupt)?,
    })
}

fn job_from_row(r: &SqliteRow) -> Result<Job, StoreError> {
    let state: String = r.try_get("state").map_err(db_err)?;
    let result: Option<String> = r.try_get("result").map_err(db_err)?;
    Ok(Job {
        job_id: r.try_get("job_id").map_err(db_err)?,
        user_id: r.try_get("user_id").map_err(db_err)?,
        conversation_id: r.try_get("conversation_id").map_err(db_err)?,
        idempotency_key: r.try_get("idempotency_key").map_err(db_err)?,
        request: serde_json::from_str(r.try_get::<&str, _>("request").map_err(db_err)?).map_err(corrupt)?,
        state: JobState::parse(&state).ok_or_else(|| corrupt(format!("job state {state}")))?,
        attempts: r.try_get::<i64, _>("attempts").map_err(db_err)? as u32,
        result: result
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(corrupt)?,
        error: r.try_get("error").map_err(db_err)?,
        created_at: from_ms(r.try_get("created_at").map_err(db_err)?),
        updated_at: from_ms(r.try_get("updated_at").map_err(db_err)?),
        retry_since: from_ms(r.try_get("retry_since").map_err(db_err)?),
    })
}

fn key_from_row(r: &SqliteRow) -> Result<ApiKeyRecord, StoreError> {
    let perms: String = r.try_get("permissions").map_err(db_err)?;
    Ok(ApiKeyRecord {
        key_id: r.try_get("key_id").map_err(db_err)?,
        tenant_id: r.try_get("tenant_id").map_err(db_err)?,
        users: r
            .try_get::<Option<String>, _>("users")
            .map_err(db_err)?
            .map(|text| serde_json::from_str(&text).map_err(|e| corrupt(format!("key users: {e}"))))
            .transpose()?,
        name: r.try_get("name").map_err(db_err)?,
        prefix: r.try_get("prefix").map_err(db_err)?,
        permissions: parse_permissions(&perms)?,
        created_at: from_ms(r.try_get("created_at").map_err(db_err)?),
        expires_at: r
            .try_get::<Option<i64>, _>("expires_at")
            .map_err(db_err)?
            .map(from_ms),
        revoked_at: r
            .try_get::<Option<i64>, _>("revoked_at")
            .map_err(db_err)?
            .map(from_ms),
    })
}

fn tenant_from_row(r: &SqliteRow) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        tenant_id: r.try_get("tenant_id").map_err(db_err)?,
        name: r.try_get("name").map_err(db_err)?,
        created_at: from_ms(r.try_get("created_at").map_err(db_err)?),
        require_consent: r.try_get::<i64, _>("require_consent").map_err(db_err)? != 0,
        retention_days: r.try_get::<i64, _>("retention_days").map_err(db_err)?.max(1) as u32,
    })
}

fn consent_from_row(r: &SqliteRow) -> Result<Consent, StoreError> {
    let state: String = r.try_get("state").map_err(db_err)?;
    Ok(Consent {
        state: parse_stored("consent state", &state, ConsentState::parse)?,
        set_by: r.try_get("set_by").map_err(db_err)?,
        set_at: from_ms(r.try_get("set_at").map_err(db_err)?),
    })
}

fn history_from_row(r: &SqliteRow) -> Result<HistoryEntry, StoreError> {
    Ok(HistoryEntry {
        fact_id: r.try_get("fact_id").map_err(db_err)?,
        event: {
            let s = r.try_get::<&str, _>("event").map_err(db_err)?;
            HistoryEvent::parse(s).ok_or_else(|| corrupt(format!("history event {s:?}")))?
        },
        old_content: r.try_get("old_content").map_err(db_err)?,
        new_content: r.try_get("new_content").map_err(db_err)?,
        related_fact_id: r.try_get("related_fact_id").map_err(db_err)?,
        job_id: r.try_get("job_id").map_err(db_err)?,
        created_at: from_ms(r.try_get("created_at").map_err(db_err)?),
    })
}

/// The user's token in the keyword index: a hash, so any id (dots, colons, @)
/// becomes one FTS token that no other user shares.
fn keyword_owner(user_id: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("u{}", hex::encode(&Sha256::digest(user_id.as_bytes())[..12]))
}

/// `?, ?, ?` for an IN list.
fn sql_in_params(n: usize) -> String {
    vec!["?"; n].join(", ")
}

async fn insert_history(
    tx: &mut sqlx::SqliteConnection,
    user_id: &str,
    h: &HistoryEntry,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO fact_history (fact_id, user_id, event, old_content, new_content, related_fact_id, job_id, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&h.fact_id)
    .bind(user_id)
    .bind(h.event.as_str())
    .bind(&h.old_content)
    .bind(&h.new_content)
    .bind(&h.related_fact_id)
    .bind(&h.job_id)
    .bind(to_ms(h.created_at))
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl MetaStore for SqliteMetaStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Connection, Executor};

    /// What a full disk does: SQLite ends the transaction itself, so sqlx's
    /// rollback on drop fails and the connection thinks it is still inside.
    async fn leave_a_connection_inside_a_dead_transaction(pool: &SqlitePool) {
        let mut conn = pool.acquire().await.expect("connection");
        let mut tx = (*conn).begin_with(BEGIN_WRITE).await.expect("begin");
        tx.execute("ROLLBACK").await.expect("rollback behind sqlx's back");
        drop(tx);
    }

    #[tokio::test]
    async fn a_connection_whose_transaction_sqlite_ended_is_not_handed_out_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("meta.db").display());
        let store = SqliteMetaStore::connect(&url).await.expect("open");
        let pool = store.pool();
        for _ in 0..3 {
            leave_a_connection_inside_a_dead_transaction(&pool).await;
            for _ in 0..10 {
                let tx = pool.begin_with(BEGIN_WRITE).await.expect("a usable connection");
                tx.commit().await.expect("commit");
            }
        }
    }
}
