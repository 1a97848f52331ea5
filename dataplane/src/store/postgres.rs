//! `MetaStore` on PostgreSQL (sqlx): the production metadata store.
//!
//! Same contract as the SQLite adapter (the shared adapter suite runs against
//! both). Batches use array parameters (`= ANY($1)`), so every service query is
//! one round trip. Keyword candidates use a GIN index over the index terms
//! (`terms`, with repeats: BM25's term frequencies; see `service::bm25`).

use super::to_ms;
use crate::domain::{
    ApiKeyRecord, AuditEntry, Claim, ExtractionPlan, Fact, FactStatus, HistoryEntry, HistoryEvent, Job,
    MemoryKind, Permission, Polarity,
};
use crate::ports::{FactPage, KeywordMatches, MetaStore, NewJob, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pika_common::wire::{Category, JobState};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use std::str::FromStr;
use std::time::Duration;

/// Pooled PostgreSQL metadata store.
#[derive(Clone)]
pub struct PostgresMetaStore {
    pool: PgPool,
}

fn db_err(e: sqlx::Error) -> StoreError {
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
     accessed_count, last_accessed_at, kind, context, occurred_at, said_at";

const JOB_COLUMNS: &str = "job_id, user_id, conversation_id, idempotency_key, request, state, attempts, \
     result, error, created_at, updated_at";

impl PostgresMetaStore {
    /// Connects (pool of `max_connections`), optionally inside `schema`, and migrates.
    pub async fn connect(url: &str, schema: Option<&str>, max_connections: u32) -> Result<Self, StoreError> {
        let mut opts = PgConnectOptions::from_str(url).map_err(db_err)?;
        if let Some(s) = schema {
            opts = opts.options([("search_path", s)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await
            .map_err(db_err)?;
        if let Some(s) = schema {
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", s.replace('"', "")))
                .execute(&pool)
                .await
                .map_err(db_err)?;
        }
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        Ok(PostgresMetaStore { pool })
    }

    pub fn pool(&self) -> PgPool {
        self.pool.clone()
    }

    /// History rows where `column` (`fact_id` or `user_id`, never user input) equals `value`, oldest first.
    async fn history_where(&self, column: &str, value: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        sqlx::query(&format!(
            "SELECT fact_id, event, old_content, new_content, related_fact_id, job_id, created_at
             FROM fact_history WHERE {column} = $1 ORDER BY id"
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

fn fact_from_row(r: &PgRow) -> Result<Fact, StoreError> {
    let category: String = r.try_get("category").map_err(db_err)?;
    let status: String = r.try_get("status").map_err(db_err)?;
    let polarity: String = r.try_get("polarity").map_err(db_err)?;
    Ok(Fact {
        fact_id: r.try_get("fact_id").map_err(db_err)?,
        user_id: r.try_get("user_id").map_err(db_err)?,
        conversation_id: r.try_get("conversation_id").map_err(db_err)?,
        content: r.try_get("content").map_err(db_err)?,
        category: Category::parse(&category).unwrap_or(Category::Other),
        confidence: r.try_get::<f32, _>("confidence").map_err(db_err)?,
        entities: r.try_get::<Json<Vec<String>>, _>("entities").map_err(db_err)?.0,
        tags: r.try_get::<Json<Vec<String>>, _>("tags").map_err(db_err)?.0,
        source_turns: r.try_get::<Json<Vec<u32>>, _>("source_turns").map_err(db_err)?.0,
        language: r.try_get("language").map_err(db_err)?,
        status: FactStatus::parse(&status).ok_or_else(|| corrupt(format!("fact status {status:?}")))?,
        kind: {
            let kind: String = r.try_get("kind").map_err(db_err)?;
            MemoryKind::parse(&kind).ok_or_else(|| corrupt(format!("memory kind {kind:?}")))?
        },
        context: r.try_get("context").map_err(db_err)?,
        occurred_at: r.try_get("occurred_at").map_err(db_err)?,
        said_at: r.try_get("said_at").map_err(db_err)?,
        polarity: if polarity == "negative" {
            Polarity::Negative
        } else {
            Polarity::Positive
        },
        predicate: r.try_get("predicate").map_err(db_err)?,
        supersedes: r.try_get("supersedes").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        updated_at: r.try_get("updated_at").map_err(db_err)?,
        accessed_count: r.try_get::<i32, _>("accessed_count").map_err(db_err)?.max(0) as u32,
        last_accessed_at: r.try_get("last_accessed_at").map_err(db_err)?,
    })
}

fn job_from_row(r: &PgRow) -> Result<Job, StoreError> {
    let state: String = r.try_get("state").map_err(db_err)?;
    let result: Option<Json<pika_common::wire::ExtractResult>> = r.try_get("result").map_err(db_err)?;
    Ok(Job {
        job_id: r.try_get("job_id").map_err(db_err)?,
        user_id: r.try_get("user_id").map_err(db_err)?,
        conversation_id: r.try_get("conversation_id").map_err(db_err)?,
        idempotency_key: r.try_get("idempotency_key").map_err(db_err)?,
        request: r
            .try_get::<Json<pika_common::wire::ExtractRequest>, _>("request")
            .map_err(db_err)?
            .0,
        state: JobState::parse(&state).ok_or_else(|| corrupt(format!("job state {state}")))?,
        attempts: r.try_get::<i32, _>("attempts").map_err(db_err)?.max(0) as u32,
        result: result.map(|j| j.0),
        error: r.try_get("error").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        updated_at: r.try_get("updated_at").map_err(db_err)?,
    })
}

fn key_from_row(r: &PgRow) -> Result<ApiKeyRecord, StoreError> {
    let perms: String = r.try_get("permissions").map_err(db_err)?;
    Ok(ApiKeyRecord {
        key_id: r.try_get("key_id").map_err(db_err)?,
        name: r.try_get("name").map_err(db_err)?,
        prefix: r.try_get("prefix").map_err(db_err)?,
        permissions: perms.split(',').filter_map(Permission::parse).collect(),
        created_at: r.try_get("created_at").map_err(db_err)?,
        expires_at: r.try_get("expires_at").map_err(db_err)?,
        revoked_at: r.try_get("revoked_at").map_err(db_err)?,
    })
}

fn history_from_row(r: &PgRow) -> Result<HistoryEntry, StoreError> {
    let event: String = r.try_get("event").map_err(db_err)?;
    Ok(HistoryEntry {
        fact_id: r.try_get("fact_id").map_err(db_err)?,
        event: HistoryEvent::parse(&event).ok_or_else(|| corrupt(format!("history event {event:?}")))?,
        old_content: r.try_get("old_content").map_err(db_err)?,
        new_content: r.try_get("new_content").map_err(db_err)?,
        related_fact_id: r.try_get("related_fact_id").map_err(db_err)?,
        job_id: r.try_get("job_id").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
    })
}

/// Postgres keeps microseconds; round to milliseconds so values read back equal what was written.
fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    super::from_ms(to_ms(t))
}

async fn insert_history(
    tx: &mut sqlx::PgConnection,
    user_id: &str,
    h: &HistoryEntry,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO fact_history (fact_id, user_id, event, old_content, new_content, related_fact_id, job_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&h.fact_id)
    .bind(user_id)
    .bind(h.event.as_str())
    .bind(&h.old_content)
    .bind(&h.new_content)
    .bind(&h.related_fact_id)
    .bind(&h.job_id)
    .bind(ms(h.created_at))
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl MetaStore for PostgresMetaStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn create_job(&self, job: NewJob) -> Result<(Job, bool), StoreError> {
        let now = ms(Utc::now());
        let inserted = sqlx::query(
            "INSERT INTO jobs (job_id, user_id, conversation_id, idempotency_key, request, state, attempts, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $6) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(&job.job_id)
        .bind(&job.request.user_id)
        .bind(&job.request.conversation_id)
        .bind(&job.idempotency_key)
        .bind(Json(&job.request))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected()
            == 1;
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = $1"
        ))
        .bind(&job.idempotency_key)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok((job_from_row(&row)?, inserted))
    }

    async fn get_job(&self, job_id: &str) -> Result<Option<Job>, StoreError> {
        sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = $1"))
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    async fn queued_job_ids(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT job_id FROM jobs WHERE state = 'queued' ORDER BY updated_at LIMIT $1")
            .bind(limit.min(i64::MAX as usize) as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn stale_queued_job_ids(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        // Touch them (SKIP LOCKED: several sweepers never fight), so the next
        // sweep waits another interval before republishing.
        sqlx::query_scalar(
            "UPDATE jobs SET updated_at = $1 WHERE job_id IN
             (SELECT job_id FROM jobs WHERE state = 'queued' AND updated_at < $2
              ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING job_id",
        )
        .bind(ms(Utc::now()))
        .bind(ms(cutoff))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)
    }

    async fn requeue_processing(&self) -> Result<u64, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET state = 'queued', claim_token = NULL, updated_at = $1 WHERE state = 'processing'",
        )
        .bind(ms(Utc::now()))
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(n)
    }

    async fn claim_job(&self, job_id: &str, take_over: bool) -> Result<Option<(Claim, Job)>, StoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = 'processing', attempts = attempts + 1, claim_token = $1, updated_at = $2
             WHERE job_id = $3 AND (state = 'queued' OR ($4 AND state = 'processing')) RETURNING {JOB_COLUMNS}"
        ))
        .bind(&token)
        .bind(ms(Utc::now()))
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
        let now = ms(Utc::now());
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let user_id: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM jobs WHERE job_id = $1 AND claim_token = $2 AND state = 'processing' FOR UPDATE",
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
            sqlx::query(&format!(
                "INSERT INTO facts ({FACT_COLUMNS}, terms, dedup_key)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                         $19, $20, $21, $22, $23, $24)
                 ON CONFLICT (fact_id) DO NOTHING"
            ))
            .bind(&f.fact_id)
            .bind(&f.user_id)
            .bind(&f.conversation_id)
            .bind(&f.content)
            .bind(f.category.as_str())
            .bind(f.confidence)
            .bind(Json(&f.entities))
            .bind(Json(&f.tags))
            .bind(Json(&f.source_turns))
            .bind(&f.language)
            .bind(f.status.as_str())
            .bind(if f.polarity == Polarity::Negative {
                "negative"
            } else {
                "positive"
            })
            .bind(&f.predicate)
            .bind(&f.supersedes)
            .bind(ms(f.created_at))
            .bind(ms(f.updated_at))
            .bind(f.accessed_count as i32)
            .bind(f.last_accessed_at.map(ms))
            .bind(f.kind.as_str())
            .bind(&f.context)
            .bind(f.occurred_at.map(ms))
            .bind(f.said_at.map(ms))
            .bind(f.index_terms())
            .bind(f.dedup_key())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        let mut old: Vec<String> = plan.superseded.iter().map(|(o, _)| o.clone()).collect();
        old.extend(plan.retired.iter().cloned());
        if !plan.user_names.is_empty() {
            sqlx::query(
                "INSERT INTO user_names (user_id, name) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
            )
            .bind(&user_id)
            .bind(&plan.user_names)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        if !old.is_empty() {
            sqlx::query(
                "UPDATE facts SET status = 'superseded', updated_at = $1 WHERE fact_id = ANY($2) AND status = 'active'",
            )
            .bind(now)
            .bind(&old)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        for (fact_id, confidence) in &plan.refreshed {
            sqlx::query(
                "UPDATE facts SET updated_at = $1, confidence = GREATEST(confidence, $2) WHERE fact_id = $3 AND status = 'active'",
            )
            .bind(now)
            .bind(*confidence)
            .bind(fact_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        for h in &plan.history {
            insert_history(&mut tx, &user_id, h).await?;
        }
        sqlx::query(
            "UPDATE jobs SET state = 'completed', result = $1, error = NULL, claim_token = NULL, updated_at = $2 WHERE job_id = $3",
        )
        .bind(Json(&plan.result))
        .bind(now)
        .bind(&claim.job_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn fail_job(&self, claim: &Claim, error: &str, retry: bool) -> Result<(), StoreError> {
        let state = if retry { "queued" } else { "failed" };
        let n = sqlx::query(
            "UPDATE jobs SET state = $1, error = $2, claim_token = NULL, updated_at = $3 WHERE job_id = $4 AND claim_token = $5",
        )
        .bind(state)
        .bind(error)
        .bind(ms(Utc::now()))
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
        sqlx::query(&format!(
            "SELECT {FACT_COLUMNS} FROM facts WHERE status = 'active' AND fact_id = ANY($1)"
        ))
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(fact_from_row)
        .collect()
    }

    async fn get_fact(&self, fact_id: &str) -> Result<Option<Fact>, StoreError> {
        sqlx::query(&format!("SELECT {FACT_COLUMNS} FROM facts WHERE fact_id = $1"))
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
            "SELECT {FACT_COLUMNS} FROM facts WHERE status = 'active' AND fact_id > $1 ORDER BY fact_id LIMIT $2"
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
            "SELECT {FACT_COLUMNS} FROM facts WHERE user_id = $1 AND status = 'active' AND fact_id > $2
             AND ($4::text IS NULL OR kind = $4) ORDER BY fact_id LIMIT $3"
        ))
        .bind(user_id)
        .bind(cursor.unwrap_or(""))
        .bind(limit as i64 + 1)
        .bind(kind.map(MemoryKind::as_str))
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
        let row: Option<(String, String)> = sqlx::query_as(
            "UPDATE facts f SET status = 'deleted', updated_at = $2, terms = '{}'
             FROM (SELECT fact_id, content AS old_content FROM facts WHERE fact_id = $1 AND status != 'deleted' FOR UPDATE) o
             WHERE f.fact_id = o.fact_id RETURNING f.user_id, o.old_content",
        )
        .bind(fact_id)
        .bind(ms(Utc::now()))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some((user_id, content)) = row else {
            return Ok(false);
        };
        let entry = HistoryEntry {
            fact_id: fact_id.to_string(),
            event: HistoryEvent::Delete,
            old_content: Some(content),
            new_content: None,
            related_fact_id: None,
            job_id: None,
            created_at: Utc::now(),
        };
        insert_history(&mut tx, &user_id, &entry).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn delete_user(&self, user_id: &str) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let n = sqlx::query("DELETE FROM facts WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        for table in ["fact_history", "jobs", "user_names"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
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
            "SELECT {FACT_COLUMNS} FROM facts WHERE user_id = $1 ORDER BY fact_id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(fact_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let jobs = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE user_id = $1 ORDER BY created_at"
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
        if terms.is_empty() {
            return Ok(KeywordMatches::default());
        }
        // Candidates and the user's BM25 statistics in one round trip.
        let rows = sqlx::query(&format!(
            "WITH stats AS (
                 SELECT COUNT(*) AS total, AVG(cardinality(terms))::float8 AS mean
                 FROM facts WHERE user_id = $1 AND status = 'active')
             SELECT {FACT_COLUMNS}, terms AS index_terms, stats.total, stats.mean
             FROM facts, stats
             WHERE user_id = $1 AND status = 'active' AND terms && $2
             ORDER BY cardinality(ARRAY(SELECT unnest(terms) INTERSECT SELECT unnest($2::text[]))) DESC, fact_id DESC
             LIMIT $3"
        ))
        .bind(user_id)
        .bind(terms)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut out = KeywordMatches::default();
        for r in &rows {
            out.total_items = r.try_get::<i64, _>("total").map_err(db_err)?.max(0) as u64;
            out.mean_terms = r
                .try_get::<Option<f64>, _>("mean")
                .map_err(db_err)?
                .unwrap_or(0.0) as f32;
            out.items.push((
                fact_from_row(r)?,
                r.try_get::<Vec<String>, _>("index_terms").map_err(db_err)?,
            ));
        }
        Ok(out)
    }

    async fn conversation_items(
        &self,
        user_id: &str,
        conversation_id: &str,
    ) -> Result<Vec<Fact>, StoreError> {
        sqlx::query(&format!(
            "SELECT {FACT_COLUMNS} FROM facts WHERE user_id = $1 AND conversation_id = $2 AND status = 'active' ORDER BY fact_id"
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
        sqlx::query_scalar(
            "SELECT DISTINCT dedup_key FROM facts WHERE user_id = $1 AND status = 'active' AND dedup_key = ANY($2)",
        )
        .bind(user_id)
        .bind(keys)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)
    }

    async fn user_names(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT name FROM user_names WHERE user_id = $1 ORDER BY name")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn record_access(&self, fact_ids: &[String]) -> Result<(), StoreError> {
        if fact_ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE facts SET accessed_count = accessed_count + 1, last_accessed_at = $1 WHERE fact_id = ANY($2)",
        )
        .bind(ms(Utc::now()))
        .bind(fact_ids)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn insert_key(&self, k: &ApiKeyRecord, hash: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (key_id, hash, name, prefix, permissions, created_at, expires_at, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&k.key_id)
        .bind(hash)
        .bind(&k.name)
        .bind(&k.prefix)
        .bind(k.permissions.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(","))
        .bind(ms(k.created_at))
        .bind(k.expires_at.map(ms))
        .bind(k.revoked_at.map(ms))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        sqlx::query("SELECT * FROM api_keys WHERE hash = $1")
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
        let n = sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE key_id = $2")
            .bind(ms(Utc::now()))
            .bind(key_id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        // One statement for the batch: parallel arrays unnested into rows.
        let col = |f: fn(&AuditEntry) -> Option<String>| entries.iter().map(f).collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO audit_log (at, key_id, action, user_id, target, request_id)
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])",
        )
        .bind(ms(Utc::now()))
        .bind(col(|e| e.key_id.clone()))
        .bind(col(|e| Some(e.action.clone())))
        .bind(col(|e| e.user_id.clone()))
        .bind(col(|e| e.target.clone()))
        .bind(col(|e| Some(e.request_id.clone())))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn user_history(&self, user_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        self.history_where("user_id", user_id).await
    }
}
