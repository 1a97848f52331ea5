//! `JobStore` on PostgreSQL: claims are atomic `queued → processing` updates
//! guarded by a token (several workers and sweepers never fight: `SKIP
//! LOCKED`), and completing a job writes its whole plan in one transaction.

use super::*;
use crate::domain::{GraphRepair, JobFilter, JobSummary, RepairOp};
use crate::store::tenant_match;

#[async_trait]
impl JobStore for PostgresMetaStore {
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

    async fn count_unfinished_jobs(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'processing')")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn requeue_processing(&self) -> Result<u64, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET state = 'queued', claim_token = NULL, lease_until = NULL, updated_at = $1
             WHERE state = 'processing'",
        )
        .bind(ms(Utc::now()))
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
            "UPDATE jobs SET state = 'processing', attempts = attempts + 1, claim_token = $1, updated_at = $2,
                 lease_until = $5
             WHERE job_id = $3 AND (state = 'queued' OR ($4 AND state = 'processing')) RETURNING {JOB_COLUMNS}"
        ))
        .bind(&token)
        .bind(ms(now))
        .bind(job_id)
        .bind(take_over)
        .bind(ms(now + lease_of(lease)))
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
        let ids: Vec<&str> = claims.iter().map(|c| c.job_id.as_str()).collect();
        let tokens: Vec<&str> = claims.iter().map(|c| c.token.as_str()).collect();
        let n = sqlx::query(
            "UPDATE jobs SET lease_until = $1 FROM unnest($2::text[], $3::text[]) AS held(job_id, token)
             WHERE jobs.job_id = held.job_id AND jobs.claim_token = held.token AND jobs.state = 'processing'",
        )
        .bind(ms(Utc::now() + lease_of(lease)))
        .bind(&ids)
        .bind(&tokens)
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
        sqlx::query_scalar(
            "UPDATE jobs SET state = 'queued', claim_token = NULL, lease_until = NULL, updated_at = $1
             WHERE job_id IN (SELECT job_id FROM jobs WHERE state = 'processing'
                 AND (lease_until IS NULL OR lease_until < $1) ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING job_id",
        )
        .bind(ms(now))
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)
    }

    async fn release_job(&self, claim: &Claim) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE jobs SET state = 'queued', claim_token = NULL, lease_until = NULL,
                 attempts = GREATEST(attempts - 1, 0), updated_at = $1
             WHERE job_id = $2 AND claim_token = $3 AND state = 'processing'",
        )
        .bind(ms(Utc::now()))
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
        sqlx::query(
            "SELECT job_id, user_id, conversation_id, state, attempts, error, created_at, updated_at FROM jobs
             WHERE ($1::text IS NULL OR state = $1)
               AND ($2::text IS NULL OR strpos(user_id, $2) = $3)
               AND ($4::text[] IS NULL OR job_id = ANY($4))
               AND ($5::text IS NULL OR job_id < $5)
             ORDER BY job_id DESC LIMIT $6",
        )
        .bind(filter.state.map(JobState::as_str))
        .bind(needle)
        .bind(pos.unwrap_or(0))
        .bind(&filter.job_ids)
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
        sqlx::query_scalar(
            "UPDATE jobs SET state = 'queued', attempts = 0, retry_since = $1, updated_at = $1,
                 claim_token = NULL, lease_until = NULL
             WHERE job_id IN (SELECT job_id FROM jobs WHERE state = 'failed'
                 AND ($2::text IS NULL OR strpos(user_id, $2) = $3)
                 AND ($4::text[] IS NULL OR job_id = ANY($4))
                 AND ($5::text IS NULL OR job_id < $5)
                 ORDER BY job_id LIMIT $6 FOR UPDATE SKIP LOCKED)
             RETURNING job_id",
        )
        .bind(ms(Utc::now()))
        .bind(needle)
        .bind(pos.unwrap_or(0))
        .bind(&filter.job_ids)
        .bind(&filter.before)
        .bind(filter.limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)
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
            "UPDATE graph_repairs SET next_at = $2 WHERE id IN
             (SELECT id FROM graph_repairs WHERE next_at <= $1 ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING id, user_id, op, fact_ids, attempts, created_at",
        )
        .bind(ms(now))
        .bind(ms(now + lease_of(hold)))
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
                fact_ids: r.try_get::<Json<Vec<String>>, _>("fact_ids").map_err(db_err)?.0,
                attempts: r.try_get::<i32, _>("attempts").map_err(db_err)?.max(0) as u32,
                created_at: r.try_get("created_at").map_err(db_err)?,
            })
        })
        .collect()
    }

    async fn finish_graph_repair(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM graph_repairs WHERE id = $1")
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
            "UPDATE graph_repairs SET attempts = attempts + 1, last_error = $2, next_at = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(error)
        .bind(ms(next_at))
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
            insert_fact(&mut tx, plan, f).await?;
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
        if !plan.graph_pending.is_empty() {
            insert_graph_repair(&mut tx, &user_id, RepairOp::Upsert, &plan.graph_pending).await?;
        }
        sqlx::query(
            "UPDATE jobs SET state = 'completed', result = $1, error = NULL, claim_token = NULL, lease_until = NULL,
                 updated_at = $2 WHERE job_id = $3",
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
            "UPDATE jobs SET state = $1, error = $2, claim_token = NULL, lease_until = NULL, updated_at = $3
             WHERE job_id = $4 AND claim_token = $5",
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

    async fn record_erasure(&self, pseudonym: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO erasures (pseudonym, erased_at) VALUES ($1, $2)
             ON CONFLICT (pseudonym) DO UPDATE SET erased_at = excluded.erased_at",
        )
        .bind(pseudonym)
        .bind(ms(at))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn erased_since(&self, pseudonym: &str, since: DateTime<Utc>) -> Result<bool, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM erasures WHERE pseudonym = $1 AND erased_at >= $2")
                .bind(pseudonym)
                .bind(ms(since))
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(n > 0)
    }
}

/// A lease or hold as a chrono duration (at least 1 ms).
fn lease_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d.max(Duration::from_millis(1))).unwrap_or(chrono::Duration::MAX)
}

fn summary_from_row(r: &sqlx::postgres::PgRow) -> Result<JobSummary, StoreError> {
    let state: String = r.try_get("state").map_err(db_err)?;
    Ok(JobSummary {
        job_id: r.try_get("job_id").map_err(db_err)?,
        user_id: r.try_get("user_id").map_err(db_err)?,
        conversation_id: r.try_get("conversation_id").map_err(db_err)?,
        state: JobState::parse(&state).ok_or_else(|| corrupt(format!("job state {state}")))?,
        attempts: r.try_get::<i32, _>("attempts").map_err(db_err)?.max(0) as u32,
        error: r.try_get("error").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        updated_at: r.try_get("updated_at").map_err(db_err)?,
    })
}

/// Queues a graph repair on `conn` (inside a job's commit, or alone).
async fn insert_graph_repair(
    conn: &mut sqlx::PgConnection,
    user_id: &str,
    op: RepairOp,
    fact_ids: &[String],
) -> Result<(), StoreError> {
    let now = ms(Utc::now());
    sqlx::query(
        "INSERT INTO graph_repairs (user_id, op, fact_ids, attempts, created_at, next_at) VALUES ($1, $2, $3, 0, $4, $4)",
    )
    .bind(user_id)
    .bind(op.as_str())
    .bind(Json(fact_ids))
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Inserts one of the plan's new facts unless its id exists; 1 if inserted.
pub(super) async fn insert_fact(
    tx: &mut sqlx::PgConnection,
    plan: &ExtractionPlan,
    f: &Fact,
) -> Result<u64, StoreError> {
    let n = sqlx::query(&format!(
        "INSERT INTO facts ({FACT_COLUMNS}, terms, dedup_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                     $19, $20, $21, $22, $23, $24, $25)
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
    .bind(f.polarity.as_str())
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
    // `attrs` ends FACT_COLUMNS; terms and dedup_key follow it.
    .bind(f.attrs.as_ref().map(Json))
    .bind(plan.index_terms_of(f))
    .bind(plan.dedup_key_of(f))
    .execute(&mut *tx)
    .await
    .map_err(db_err)?
    .rows_affected();
    Ok(n)
}
