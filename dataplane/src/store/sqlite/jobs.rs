//! `JobStore` on SQLite: the jobs table is also the embedded queue's durable
//! record; claims are atomic `queued → processing` updates guarded by a token,
//! and completing a job writes its whole plan in the same transaction.

use super::*;
use crate::domain::{GraphRepair, JobFilter, JobSummary, RepairOp};
use crate::store::tenant_match;

#[async_trait]
impl JobStore for SqliteMetaStore {
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

    async fn count_unfinished_jobs(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'processing')")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn requeue_processing(&self) -> Result<u64, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET state = 'queued', claim_token = NULL, lease_until = NULL, updated_at = ?
             WHERE state = 'processing'",
        )
        .bind(to_ms(Utc::now()))
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(n)
    }

    async fn claim_job(
        &self,
        job_id: &str,
        take_over: bool,
        lease: Duration,
    ) -> Result<Option<(Claim, Job)>, StoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let now = Utc::now();
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = 'processing', attempts = attempts + 1, claim_token = ?, updated_at = ?,
                 lease_until = ?
             WHERE job_id = ? AND (state = 'queued' OR (? AND state = 'processing')) RETURNING {JOB_COLUMNS}"
        ))
        .bind(&token)
        .bind(to_ms(now))
        .bind(lease_end(now, lease))
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

    async fn renew_leases(&self, claims: &[Claim], lease: Duration) -> Result<u64, StoreError> {
        if claims.is_empty() {
            return Ok(0);
        }
        // Claim tokens are unique (v4 UUIDs): they name the held jobs alone.
        let tokens: Vec<&str> = claims.iter().map(|c| c.token.as_str()).collect();
        let n = sqlx::query(
            "UPDATE jobs SET lease_until = ?
             WHERE state = 'processing' AND claim_token IN (SELECT value FROM json_each(?))",
        )
        .bind(lease_end(Utc::now(), lease))
        .bind(serde_json::to_string(&tokens).map_err(corrupt)?)
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(n)
    }

    async fn requeue_expired_leases(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        // A job claimed before leases existed has none: it is expired too.
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'queued', claim_token = NULL, lease_until = NULL, updated_at = ?1
             WHERE job_id IN (SELECT job_id FROM jobs WHERE state = 'processing'
                 AND (lease_until IS NULL OR lease_until < ?1) ORDER BY updated_at LIMIT ?2)
             RETURNING job_id",
        )
        .bind(to_ms(now))
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(|r| r.try_get("job_id").map_err(db_err)).collect()
    }

    async fn release_job(&self, claim: &Claim) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET state = 'queued', claim_token = NULL, lease_until = NULL,
                 attempts = MAX(attempts - 1, 0), updated_at = ?
             WHERE job_id = ? AND claim_token = ? AND state = 'processing'",
        )
        .bind(to_ms(Utc::now()))
        .bind(&claim.job_id)
        .bind(&claim.token)
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobSummary>, StoreError> {
        let (needle, pos) = filter.tenant_id.as_deref().map(tenant_match).unzip();
        let ids = filter
            .job_ids
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(corrupt)?;
        sqlx::query(
            "SELECT job_id, user_id, conversation_id, state, attempts, error, created_at, updated_at FROM jobs
             WHERE (?1 IS NULL OR state = ?1)
               AND (?2 IS NULL OR instr(user_id, ?2) = ?3)
               AND (?4 IS NULL OR job_id IN (SELECT value FROM json_each(?4)))
               AND (?5 IS NULL OR job_id < ?5)
             ORDER BY job_id DESC LIMIT ?6",
        )
        .bind(filter.state.map(JobState::as_str))
        .bind(needle)
        .bind(pos.unwrap_or(0))
        .bind(ids)
        .bind(&filter.before)
        .bind(filter.limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(summary_from_row)
        .collect()
    }

    async fn count_jobs_by_state(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM jobs WHERE state <> 'completed' GROUP BY state")
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        rows.into_iter()
            .map(|(state, n)| {
                let state = JobState::parse(&state).ok_or_else(|| corrupt(format!("job state {state}")))?;
                Ok((state, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    async fn redrive_jobs(&self, filter: &JobFilter) -> Result<Vec<String>, StoreError> {
        let (needle, pos) = filter.tenant_id.as_deref().map(tenant_match).unzip();
        let ids = filter
            .job_ids
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(corrupt)?;
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = 0, retry_since = ?1, updated_at = ?1,
                 claim_token = NULL, lease_until = NULL
             WHERE job_id IN (SELECT job_id FROM jobs WHERE state = 'failed'
                 AND (?2 IS NULL OR instr(user_id, ?2) = ?3)
                 AND (?4 IS NULL OR job_id IN (SELECT value FROM json_each(?4)))
                 AND (?5 IS NULL OR job_id < ?5)
                 ORDER BY job_id LIMIT ?6)
             RETURNING job_id",
        )
        .bind(to_ms(Utc::now()))
        .bind(needle)
        .bind(pos.unwrap_or(0))
        .bind(ids)
        .bind(&filter.before)
        .bind(filter.limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(|r| r.try_get("job_id").map_err(db_err)).collect()
    }

    async fn queue_graph_repair(
        &self,
        user_id: &str,
        op: RepairOp,
        fact_ids: &[String],
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        insert_graph_repair(&mut conn, user_id, op, fact_ids).await
    }

    async fn take_graph_repairs(
        &self,
        now: DateTime<Utc>,
        hold: Duration,
        limit: usize,
    ) -> Result<Vec<GraphRepair>, StoreError> {
        sqlx::query(
            "UPDATE graph_repairs SET next_at = ?2 WHERE id IN
             (SELECT id FROM graph_repairs WHERE next_at <= ?1 ORDER BY next_at LIMIT ?3)
             RETURNING id, user_id, op, fact_ids, attempts, created_at",
        )
        .bind(to_ms(now))
        .bind(lease_end(now, hold))
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| {
            let op: String = r.try_get("op").map_err(db_err)?;
            Ok(GraphRepair {
                id: r.try_get("id").map_err(db_err)?,
                user_id: r.try_get("user_id").map_err(db_err)?,
                op: RepairOp::parse(&op).ok_or_else(|| corrupt(format!("graph repair op {op}")))?,
                fact_ids: serde_json::from_str(r.try_get::<&str, _>("fact_ids").map_err(db_err)?)
                    .map_err(corrupt)?,
                attempts: r.try_get::<i64, _>("attempts").map_err(db_err)?.max(0) as u32,
                created_at: from_ms(r.try_get("created_at").map_err(db_err)?),
            })
        })
        .collect()
    }

    async fn finish_graph_repair(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM graph_repairs WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn postpone_graph_repair(
        &self,
        id: i64,
        error: &str,
        next_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE graph_repairs SET attempts = attempts + 1, last_error = ?, next_at = ? WHERE id = ?",
        )
        .bind(error)
        .bind(to_ms(next_at))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn count_graph_repairs(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM graph_repairs")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn complete_job(&self, claim: &Claim, plan: &ExtractionPlan) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(db_err)?;
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
            insert_fact(&mut tx, plan, f).await?;
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
        if !plan.graph_pending.is_empty() {
            insert_graph_repair(&mut tx, &user_id, RepairOp::Upsert, &plan.graph_pending).await?;
        }
        sqlx::query(
            "UPDATE jobs SET state = 'completed', result = ?, error = NULL, claim_token = NULL, lease_until = NULL,
                 updated_at = ? WHERE job_id = ?",
        )
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
        let n = sqlx::query(
            "UPDATE jobs SET state = ?, error = ?, claim_token = NULL, lease_until = NULL, updated_at = ? \
             WHERE job_id = ? AND claim_token = ?",
        )
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

    async fn record_erasure(&self, pseudonym: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO erasures (pseudonym, erased_at) VALUES (?, ?)
             ON CONFLICT (pseudonym) DO UPDATE SET erased_at = excluded.erased_at",
        )
        .bind(pseudonym)
        .bind(to_ms(at))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn erased_since(&self, pseudonym: &str, since: DateTime<Utc>) -> Result<bool, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM erasures WHERE pseudonym = ? AND erased_at >= ?")
                .bind(pseudonym)
                .bind(to_ms(since))
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(n > 0)
    }
}

/// Inserts one of the plan's new facts and its keyword terms unless its id
/// exists; 1 if inserted.
pub(super) async fn insert_fact(
    tx: &mut sqlx::SqliteConnection,
    plan: &ExtractionPlan,
    f: &Fact,
) -> Result<u64, StoreError> {
    let terms = plan.index_terms_of(f);
    let n = sqlx::query(&format!(
            "INSERT INTO facts ({FACT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
        .bind(f.polarity.as_str())
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
        .bind(plan.dedup_key_of(f))
        .bind(f.attrs.as_ref().map(serde_json::to_string).transpose().map_err(corrupt)?)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
    if n == 0 {
        return Ok(0);
    }
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
    Ok(n)
}

/// Unix milliseconds `lease` after `now` (at least 1 ms).
fn lease_end(now: DateTime<Utc>, lease: Duration) -> i64 {
    to_ms(now).saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1))
}

fn summary_from_row(r: &SqliteRow) -> Result<JobSummary, StoreError> {
    let state: String = r.try_get("state").map_err(db_err)?;
    Ok(JobSummary {
        job_id: r.try_get("job_id").map_err(db_err)?,
        user_id: r.try_get("user_id").map_err(db_err)?,
        conversation_id: r.try_get("conversation_id").map_err(db_err)?,
        state: JobState::parse(&state).ok_or_else(|| corrupt(format!("job state {state}")))?,
        attempts: r.try_get::<i64, _>("attempts").map_err(db_err)?.max(0) as u32,
        error: r.try_get("error").map_err(db_err)?,
        created_at: from_ms(r.try_get("created_at").map_err(db_err)?),
        updated_at: from_ms(r.try_get("updated_at").map_err(db_err)?),
    })
}

/// Queues a graph repair on `conn` (inside a job's commit, or alone).
async fn insert_graph_repair(
    conn: &mut sqlx::SqliteConnection,
    user_id: &str,
    op: RepairOp,
    fact_ids: &[String],
) -> Result<(), StoreError> {
    let now = to_ms(Utc::now());
    sqlx::query(
        "INSERT INTO graph_repairs (user_id, op, fact_ids, attempts, created_at, next_at) VALUES (?, ?, ?, 0, ?, ?)",
    )
    .bind(user_id)
    .bind(op.as_str())
    .bind(serde_json::to_string(fact_ids).map_err(corrupt)?)
    .bind(now)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}
