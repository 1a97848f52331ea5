//! `MetaStore` on SQLite (sqlx): the embedded default.
//!
//! WAL mode lets searches read while the worker writes. Every multi-row change
//! of an extraction is one transaction together with the job's completion, so
//! a crash leaves either all of it or none of it.

use super::{from_ms, to_ms};
use crate::domain::{
    ApiKeyRecord, AuditEntry, Claim, ExtractionPlan, Fact, FactStatus, HistoryEntry, HistoryEvent, Job,
    MemoryKind, Permission, Polarity,
};
use crate::ports::{FactPage, KeywordMatches, MetaStore, NewJob, StoreError};
use async_trait::async_trait;
use chrono::Utc;
use pika_common::wire::{Category, JobState};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

/// The embedded metadata store; also hands its pool to the embedded vector index and graph.
#[derive(Clone)]
pub struct SqliteMetaStore {
    pool: SqlitePool,
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound { what: "row".into() },
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(d.to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

const FACT_COLUMNS: &str = "fact_id, user_id, conversation_id, content, category, confidence, entities, tags, \
     source_turns, language, status, polarity, predicate, supersedes, created_at, updated_at, \
     accessed_count, last_accessed_at, kind, context, occurred_at, said_at, term_count, dedup_key";

const JOB_COLUMNS: &str = "job_id, user_id, conversation_id, idempotency_key, request, state, attempts, \
     result, error, created_at, updated_at";

impl SqliteMetaStore {
    /// Opens (creating if needed) the database at `url` and applies migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(db_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(false);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await
            .map_err(db_err)?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
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
        category: Category::parse(&category).unwrap_or(Category::Other),
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
        polarity: if r.try_get::<&str, _>("polarity").map_err(db_err)? == "negative" {
            Polarity::Negative
        } else {
            Polarity::Positive
        },
        predicate: r.try_get("predicate").map_err(db_err)?,
        supersedes: r.try_get("supersedes").map_err(db_err)?,
        created_at: from_ms(r.try_get("created_at").map_err(db_err)?),
        updated_at: from_ms(r.try_get("updated_at").map_err(db_err)?),
        accessed_count: r.try_get::<i64, _>("accessed_count").map_err(db_err)? as u32,
        last_accessed_at: r
            .try_get::<Option<i64>, _>("last_accessed_at")
            .map_err(db_err)?
            .map(from_ms),
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
    })
}

fn key_from_row(r: &SqliteRow) -> Result<ApiKeyRecord, StoreError> {
    let perms: String = r.try_get("permissions").map_err(db_err)?;
    Ok(ApiKeyRecord {
        key_id: r.try_get("key_id").map_err(db_err)?,
        name: r.try_get("name").map_err(db_err)?,
        prefix: r.try_get("prefix").map_err(db_err)?,
        permissions: perms.split(',').filter_map(Permission::parse).collect(),
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

    async fn create_job(&self, job: NewJob) -> Result<(Job, bool), StoreError> {
        let now = to_ms(Utc::now());
        let request = serde_json::to_string(&job.request).map_err(corrupt)?;
        let inserted = sqlx::query(
            "INSERT INTO jobs (job_id, user_id, conversation_id, idempotency_key, request, state, attempts, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(&job.job_id)
        .bind(&job.request.user_id)
        .bind(&job.request.conversation_id)
        .bind(&job.idempotency_key)
        .bind(request)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected()
            == 1;
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = ?"
        ))
        .bind(&job.idempotency_key)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok((job_from_row(&row)?, inserted))
    }

    async fn get_job(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?"))
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    async fn queued_job_ids(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT job_id FROM jobs WHERE state = 'queued' ORDER BY created_at LIMIT ?")
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| r.try_get("job_id").map_err(db_err)).collect()
    }

    async fn stale_queued_job_ids(
        &self,
        cutoff: chrono::DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        // Touch them, so the next sweep waits another interval before republishing.
        let rows = sqlx::query(
            "UPDATE jobs SET updated_at = ? WHERE job_id IN
             (SELECT job_id FROM jobs WHERE state = 'queued' AND updated_at < ? ORDER BY updated_at LIMIT ?)
             RETURNING job_id",
        )
        .bind(to_ms(Utc::now()))
        .bind(to_ms(cutoff))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(|r| r.try_get("job_id").map_err(db_err)).collect()
    }

    async fn requeue_processing(&self) -> Result<u64, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET state = 'queued', claim_token = NULL, updated_at = ? WHERE state = 'processing'",
        )
        .bind(to_ms(Utc::now()))
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(n)
    }

    async fn claim_job(&self, job_id: &str, take_over: bool) -> Result<Option<(Claim, Job)>, StoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = 'processing', attempts = attempts + 1, claim_token = ?, updated_at = ?
             WHERE job_id = ? AND (state = 'queued' OR (? AND state = 'processing')) RETURNING {JOB_COLUMNS}"
        ))
        .bind(&token)
        .bind(to_ms(Utc::now()))
        .bind(job_id)
        .bind(take_over)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((
                Claim {
                    job_id: job_id.to_string(),
                    token,
                },
                job_from_row(&r)?,
            ))),
        }
    }

    async fn complete_job(&self, claim: &Claim, plan: &ExtractionPlan) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let user_id: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM jobs WHERE job_id = ? AND claim_token = ? AND state = 'processing'",
        )
        .bind(&claim.job_id)
        .bind(&claim.token)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(user_id) = user_id else {
            return Err(StoreError::ClaimLost);
        };
        for f in &plan.new_facts {
            let terms = f.index_terms();
            sqlx::query(&format!(
                "INSERT INTO facts ({FACT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (fact_id) DO NOTHING"
            ))
            .bind(&f.fact_id)
            .bind(&f.user_id)
            .bind(&f.conversation_id)
            .bind(&f.content)
            .bind(f.category.as_str())
            .bind(f.confidence as f64)
            .bind(serde_json::to_string(&f.entities).map_err(corrupt)?)
            .bind(serde_json::to_string(&f.tags).map_err(corrupt)?)
            .bind(serde_json::to_string(&f.source_turns).map_err(corrupt)?)
            .bind(&f.language)
            .bind(f.status.as_str())
            .bind(if f.polarity == Polarity::Negative { "negative" } else { "positive" })
            .bind(&f.predicate)
            .bind(&f.supersedes)
            .bind(to_ms(f.created_at))
            .bind(to_ms(f.updated_at))
            .bind(f.accessed_count as i64)
            .bind(f.last_accessed_at.map(to_ms))
            .bind(f.kind.as_str())
            .bind(&f.context)
            .bind(f.occurred_at.map(to_ms))
            .bind(f.said_at.map(to_ms))
            .bind(terms.len() as i64)
            .bind(f.dedup_key())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query("DELETE FROM fact_terms WHERE fact_id = ?")
                .bind(&f.fact_id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            sqlx::query("INSERT INTO fact_terms (fact_id, user_id, owner, terms) VALUES (?, ?, ?, ?)")
                .bind(&f.fact_id)
                .bind(&f.user_id)
                .bind(keyword_owner(&f.user_id))
                .bind(terms.join(" "))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        for (old, new) in &plan.superseded {
            sqlx::query("UPDATE facts SET status = 'superseded', updated_at = ? WHERE fact_id = ? AND status = 'active'")
                .bind(to_ms(now))
                .bind(old)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            sqlx::query("DELETE FROM fact_terms WHERE fact_id = ?")
                .bind(old)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            let _ = new;
        }
        for old in &plan.retired {
            sqlx::query("UPDATE facts SET status = 'superseded', updated_at = ? WHERE fact_id = ? AND status = 'active'")
                .bind(to_ms(now))
                .bind(old)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            sqlx::query("DELETE FROM fact_terms WHERE fact_id = ?")
                .bind(old)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        for name in &plan.user_names {
            sqlx::query("INSERT INTO user_names (user_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING")
                .bind(&user_id)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        for (fact_id, confidence) in &plan.refreshed {
            sqlx::query("UPDATE facts SET updated_at = ?, confidence = MAX(confidence, ?) WHERE fact_id = ? AND status = 'active'")
                .bind(to_ms(now))
                .bind(*confidence as f64)
                .bind(fact_id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        for h in &plan.history {
            insert_history(&mut tx, &user_id, h).await?;
        }
        sqlx::query("UPDATE jobs SET state = 'completed', result = ?, error = NULL, claim_token = NULL, updated_at = ? WHERE job_id = ?")
            .bind(serde_json::to_string(&plan.result).map_err(corrupt)?)
            .bind(to_ms(now))
            .bind(&claim.job_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn fail_job(&self, claim: &Claim, error: &str, retry: bool) -> Result<(), StoreError> {
        let state = if retry { "queued" } else { "failed" };
        let n = sqlx::query("UPDATE jobs SET state = ?, error = ?, claim_token = NULL, updated_at = ? WHERE job_id = ? AND claim_token = ?")
            .bind(state)
            .bind(error)
            .bind(to_ms(Utc::now()))
            .bind(&claim.job_id)
            .bind(&claim.token)
            .execute(&self.pool)
            .await
            .map_err(db_err)?
            .rows_affected();
        if n == 0 {
            Err(StoreError::ClaimLost)
        } else {
            Ok(())
        }
    }

    async fn active_facts(&self, ids: &[String]) -> Result<Vec<Fact>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {FACT_COLUMNS} FROM facts WHERE status = 'active' AND fact_id IN ({})",
            sql_in_params(ids.len())
        );
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(id);
        }
        q.fetch_all(&self.pool)
            .await
            .map_err(db_err)?
            .iter()
            .map(fact_from_row)
            .collect()
    }

    async fn get_fact(&self, fact_id: &str) -> Result<Option<Fact>, StoreError> {
        sqlx::query(&format!("SELECT {FACT_COLUMNS} FROM facts WHERE fact_id = ?"))
            .bind(fact_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(fact_from_row)
            .transpose()
    }

    async fn fact_history(&self, fact_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        self.history_where("fact_id", fact_id).await
    }

    async fn scan_active_facts(&self, after: Option<&str>, limit: usize) -> Result<Vec<Fact>, StoreError> {
        sqlx::query(&format!(
            "SELECT {FACT_COLUMNS} FROM facts WHERE status = 'active' AND fact_id > ? ORDER BY fact_id LIMIT ?"
        ))
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(fact_from_row)
        .collect()
    }

    async fn list_facts(
        &self,
        user_id: &str,
        cursor: Option<&str>,
        limit: usize,
        kind: Option<MemoryKind>,
    ) -> Result<FactPage, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {FACT_COLUMNS} FROM facts WHERE user_id = ? AND status = 'active' AND fact_id > ?
             AND (? IS NULL OR kind = ?) ORDER BY fact_id LIMIT ?"
        ))
        .bind(user_id)
        .bind(cursor.unwrap_or(""))
        .bind(kind.map(MemoryKind::as_str))
        .bind(kind.map(MemoryKind::as_str))
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut facts: Vec<Fact> = rows.iter().map(fact_from_row).collect::<Result<_, _>>()?;
        let next_cursor = if facts.len() > limit {
            facts.truncate(limit);
            facts.last().map(|f| f.fact_id.clone())
        } else {
            None
        };
        Ok(FactPage { facts, next_cursor })
    }

    async fn delete_fact(&self, fact_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT user_id, content FROM facts WHERE fact_id = ? AND status != 'deleted'")
                .bind(fact_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        let Some((user_id, content)) = row else {
            return Ok(false);
        };
        let now = Utc::now();
        sqlx::query("UPDATE facts SET status = 'deleted', updated_at = ? WHERE fact_id = ?")
            .bind(to_ms(now))
            .bind(fact_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("DELETE FROM fact_terms WHERE fact_id = ?")
            .bind(fact_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let entry = HistoryEntry {
            fact_id: fact_id.to_string(),
            event: HistoryEvent::Delete,
            old_content: Some(content),
            new_content: None,
            related_fact_id: None,
            job_id: None,
            created_at: now,
        };
        insert_history(&mut tx, &user_id, &entry).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn delete_user(&self, user_id: &str) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let n = sqlx::query("DELETE FROM facts WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        for table in [
            "fact_terms",
            "fact_history",
            "jobs",
            "cache_generations",
            "user_names",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = ?"))
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(n)
    }

    async fn export_user(&self, user_id: &str) -> Result<(Vec<Fact>, Vec<Job>), StoreError> {
        let facts = sqlx::query(&format!(
            "SELECT {FACT_COLUMNS} FROM facts WHERE user_id = ? ORDER BY fact_id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(fact_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let jobs = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE user_id = ? ORDER BY created_at"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(job_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        Ok((facts, jobs))
    }

    async fn keyword_candidates(
        &self,
        user_id: &str,
        terms: &[String],
        limit: usize,
    ) -> Result<KeywordMatches, StoreError> {
        // FTS5 finds the candidates by their folded terms (every accented
        // `~mèo` is stored beside its folded `meo`, so folded terms suffice);
        // BM25 itself is computed by the caller from each item's stored terms.
        // Every term is quoted so user text is never parsed as FTS operators.
        let mut any: Vec<String> = terms
            .iter()
            .filter(|t| !t.is_empty() && !t.starts_with('~'))
            .map(|t| format!("\"{}\"", t.replace('"', "")))
            .collect();
        any.sort();
        any.dedup();
        if any.is_empty() {
            return Ok(KeywordMatches::default());
        }
        let expr = format!(
            "owner : \"{}\" AND terms : ({})",
            keyword_owner(user_id),
            any.join(" OR ")
        );
        let sql = format!(
            "SELECT {}, t.terms AS index_terms FROM fact_terms t JOIN facts f ON f.fact_id = t.fact_id
             WHERE fact_terms MATCH ? AND t.user_id = ? AND f.status = 'active' ORDER BY rank LIMIT ?",
            FACT_COLUMNS
                .split(", ")
                .map(|c| format!("f.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let items = sqlx::query(&sql)
            .bind(expr)
            .bind(user_id)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| {
                let terms: String = r.try_get("index_terms").map_err(db_err)?;
                Ok((
                    fact_from_row(r)?,
                    terms
                        .split(' ')
                        .filter(|t| !t.is_empty())
                        .map(str::to_string)
                        .collect(),
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let (total, mean): (i64, Option<f64>) = sqlx::query_as(
            "SELECT COUNT(*), AVG(term_count) FROM facts WHERE user_id = ? AND status = 'active'",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(KeywordMatches {
            items,
            total_items: total.max(0) as u64,
            mean_terms: mean.unwrap_or(0.0) as f32,
        })
    }

    async fn conversation_items(
        &self,
        user_id: &str,
        conversation_id: &str,
    ) -> Result<Vec<Fact>, StoreError> {
        sqlx::query(&format!(
            "SELECT {FACT_COLUMNS} FROM facts WHERE user_id = ? AND conversation_id = ? AND status = 'active' ORDER BY fact_id"
        ))
        .bind(user_id)
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(fact_from_row)
        .collect()
    }

    async fn known_episodes(&self, user_id: &str, keys: &[String]) -> Result<Vec<String>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT DISTINCT dedup_key FROM facts WHERE user_id = ? AND status = 'active' AND dedup_key IN ({})",
            sql_in_params(keys.len())
        );
        let mut q = sqlx::query_scalar(&sql).bind(user_id);
        for k in keys {
            q = q.bind(k);
        }
        q.fetch_all(&self.pool).await.map_err(db_err)
    }

    async fn user_names(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT name FROM user_names WHERE user_id = ? ORDER BY name")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn record_access(&self, fact_ids: &[String]) -> Result<(), StoreError> {
        if fact_ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE facts SET accessed_count = accessed_count + 1, last_accessed_at = ? WHERE fact_id IN ({})",
            sql_in_params(fact_ids.len())
        );
        let mut q = sqlx::query(&sql).bind(to_ms(Utc::now()));
        for id in fact_ids {
            q = q.bind(id);
        }
        q.execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }

    async fn insert_key(&self, k: &ApiKeyRecord, hash: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (key_id, hash, name, prefix, permissions, created_at, expires_at, revoked_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&k.key_id)
        .bind(hash)
        .bind(&k.name)
        .bind(&k.prefix)
        .bind(k.permissions.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(","))
        .bind(to_ms(k.created_at))
        .bind(k.expires_at.map(to_ms))
        .bind(k.revoked_at.map(to_ms))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        sqlx::query("SELECT * FROM api_keys WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(key_from_row)
            .transpose()
    }

    async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        sqlx::query("SELECT * FROM api_keys ORDER BY created_at")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?
            .iter()
            .map(key_from_row)
            .collect()
    }

    async fn revoke_key(&self, key_id: &str) -> Result<bool, StoreError> {
        let n = sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE key_id = ?")
            .bind(to_ms(Utc::now()))
            .bind(key_id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let at = to_ms(Utc::now());
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        for e in entries {
            sqlx::query(
                "INSERT INTO audit_log (at, key_id, action, user_id, target, request_id) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(at)
            .bind(&e.key_id)
            .bind(&e.action)
            .bind(&e.user_id)
            .bind(&e.target)
            .bind(&e.request_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn user_history(&self, user_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        self.history_where("user_id", user_id).await
    }
}
