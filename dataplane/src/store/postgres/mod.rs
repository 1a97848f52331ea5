//! `MetaStore` on PostgreSQL (sqlx): the production metadata store.
//!
//! Same contract as the SQLite adapter (the shared adapter suite runs against
//! both). Batches use array parameters (`= ANY($1)`), so every service query is
//! one round trip. Keyword candidates use a GIN index over the index terms
//! (`terms`, with repeats: BM25's term frequencies; see `service::bm25`).

use super::{parse_permissions, parse_stored, to_ms};
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
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use std::str::FromStr;
use std::time::Duration;

mod facts;
mod jobs;
mod keys;

/// Pooled PostgreSQL metadata store.
#[derive(Clone)]
pub struct PostgresMetaStore {
    pool: PgPool,
}

fn db_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound { what: "row".into() },
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(d.to_string()),
        other => StoreError::unavailable("postgres", other),
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

const FACT_COLUMNS: &str = "fact_id, user_id, conversation_id, content, category, confidence, entities, tags, \
     source_turns, language, status, polarity, predicate, supersedes, created_at, updated_at, \
     accessed_count, last_accessed_at, kind, context, occurred_at, said_at, attrs";

const JOB_COLUMNS: &str = "job_id, user_id, conversation_id, idempotency_key, request, state, attempts, \
     result, error, created_at, updated_at, COALESCE(retry_since, created_at) AS retry_since";

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
            .map_err(|e| StoreError::unavailable("postgres", e))?;
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
        category: parse_stored("fact category", &category, Category::parse)?,
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
        polarity: parse_stored("fact polarity", &polarity, Polarity::parse)?,
        predicate: r.try_get("predicate").map_err(db_err)?,
        supersedes: r.try_get("supersedes").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        updated_at: r.try_get("updated_at").map_err(db_err)?,
        accessed_count: r.try_get::<i32, _>("accessed_count").map_err(db_err)?.max(0) as u32,
        last_accessed_at: r.try_get("last_accessed_at").map_err(db_err)?,
        attrs: r
            .try_get::<Option<Json<pika_common::wire::MemoryAttrs>>, _>("attrs")
            .map_err(db_err)?
            .map(|j| j.0),
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
        retry_since: r.try_get("retry_since").map_err(db_err)?,
    })
}

fn key_from_row(r: &PgRow) -> Result<ApiKeyRecord, StoreError> {
    let perms: String = r.try_get("permissions").map_err(db_err)?;
    Ok(ApiKeyRecord {
        key_id: r.try_get("key_id").map_err(db_err)?,
        tenant_id: r.try_get("tenant_id").map_err(db_err)?,
        users: r
            .try_get::<Option<serde_json::Value>, _>("users")
            .map_err(db_err)?
            .map(|v| serde_json::from_value(v).map_err(|e| corrupt(format!("key users: {e}"))))
            .transpose()?,
        name: r.try_get("name").map_err(db_err)?,
        prefix: r.try_get("prefix").map_err(db_err)?,
        permissions: parse_permissions(&perms)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        expires_at: r.try_get("expires_at").map_err(db_err)?,
        revoked_at: r.try_get("revoked_at").map_err(db_err)?,
    })
}

fn tenant_from_row(r: &PgRow) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        tenant_id: r.try_get("tenant_id").map_err(db_err)?,
        name: r.try_get("name").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        require_consent: r.try_get("require_consent").map_err(db_err)?,
        retention_days: r.try_get::<i32, _>("retention_days").map_err(db_err)?.max(1) as u32,
    })
}

fn consent_from_row(r: &PgRow) -> Result<Consent, StoreError> {
    let state: String = r.try_get("state").map_err(db_err)?;
    Ok(Consent {
        state: parse_stored("consent state", &state, ConsentState::parse)?,
        set_by: r.try_get("set_by").map_err(db_err)?,
        set_at: r.try_get("set_at").map_err(db_err)?,
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
}
