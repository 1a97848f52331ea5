//! `JobStore` on PostgreSQL: claims are atomic `queued → processing` updates
//! guarded by a token (several workers and sweepers never fight: `SKIP
//! LOCKED`), and completing a job writes its whole plan in one transaction.

use super::*;

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
