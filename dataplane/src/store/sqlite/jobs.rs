//! `JobStore` on SQLite: the jobs table is also the embedded queue's durable
//! record; claims are atomic `queued → processing` updates guarded by a token,
//! and completing a job writes its whole plan in the same transaction.

use super::*;

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
