//! `FactStore` on PostgreSQL: facts and episodes, their history, the per-user
//! keyword index (a GIN index over terms, for BM25), erasure and export.

use super::*;

#[async_trait]
impl FactStore for PostgresMetaStore {
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
        let row: Option<String> = sqlx::query_scalar(
            "UPDATE facts f SET status = 'deleted', updated_at = $2, terms = '{}', content = '', attrs = NULL,
                 entities = '[]', tags = '[]', context = NULL, dedup_key = NULL, predicate = NULL
             FROM (SELECT fact_id FROM facts WHERE fact_id = $1 AND status != 'deleted' FOR UPDATE) o
             WHERE f.fact_id = o.fact_id RETURNING f.user_id",
        )
        .bind(fact_id)
        .bind(ms(Utc::now()))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(user_id) = row else {
            return Ok(false);
        };
        // The text goes everywhere: history keeps that the fact existed.
        sqlx::query(
            "UPDATE fact_history SET old_content = NULL, new_content = NULL WHERE fact_id = $1 OR related_fact_id = $1",
        )
        .bind(fact_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let entry = HistoryEntry {
            fact_id: fact_id.to_string(),
            event: HistoryEvent::Delete,
            old_content: None,
            new_content: None,
            related_fact_id: None,
            job_id: None,
            created_at: Utc::now(),
        };
        insert_history(&mut tx, &user_id, &entry).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn known_fact_ids(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        self.known_ids(ids).await
    }

    async fn tenant_users(&self, tenant_id: &str, limit: usize) -> Result<Vec<UserSummary>, StoreError> {
        self.users_of(tenant_id, limit).await
    }

    async fn import_facts(&self, plan: &ExtractionPlan) -> Result<usize, StoreError> {
        self.import(plan).await
    }

    async fn rewrite_facts(&self, plan: &ExtractionPlan) -> Result<usize, StoreError> {
        self.rewrite(plan).await
    }

    async fn delete_user(&self, user_id: &str, pseudonym: &str) -> Result<MetaErasure, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let mut out = MetaErasure::default();
        let kinds: Vec<(String, i64)> =
            sqlx::query_as("DELETE FROM facts WHERE user_id = $1 RETURNING kind, 1::BIGINT")
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
        for (kind, _) in kinds {
            match kind.as_str() {
                "episode" => out.episodes += 1,
                _ => out.facts += 1,
            }
        }
        for table in ["fact_history", "jobs", "user_names", "graph_repairs"] {
            let n = sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
            match table {
                "fact_history" => out.history = n,
                "jobs" => out.jobs = n,
                "user_names" => out.names = n,
                // Pending graph writes name the user's facts: gone with them.
                _ => {}
            }
        }
        out.audit_pseudonymised = sqlx::query("UPDATE audit_log SET user_id = $1 WHERE user_id = $2")
            .bind(pseudonym)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(out)
    }

    async fn export_items(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Fact>, StoreError> {
        sqlx::query(&format!(
            "SELECT {FACT_COLUMNS} FROM facts WHERE user_id = $1 AND fact_id > $2 ORDER BY fact_id LIMIT $3"
        ))
        .bind(user_id)
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(fact_from_row)
        .collect()
    }

    async fn export_jobs(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE user_id = $1 AND job_id > $2 ORDER BY job_id LIMIT $3"
        ))
        .bind(user_id)
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(job_from_row)
        .collect()
    }

    async fn history_of(&self, fact_ids: &[String]) -> Result<Vec<HistoryEntry>, StoreError> {
        sqlx::query(
            "SELECT fact_id, event, old_content, new_content, related_fact_id, job_id, created_at
             FROM fact_history WHERE fact_id = ANY($1) ORDER BY id",
        )
        .bind(fact_ids)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(history_from_row)
        .collect()
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
        // Matches (ids and terms only) and the user's BM25 statistics (one
        // row kept by triggers, migration 0007) in one round trip. The
        // statistics used to be a COUNT/AVG over the user's whole memory on
        // every search: the cost that grew with the data in the soak.
        let rows = sqlx::query(
            "WITH stats AS (
                 SELECT active_items, active_terms FROM user_term_stats WHERE user_id = $1)
             SELECT f.fact_id, f.terms,
                    (SELECT active_items FROM stats) AS total,
                    (SELECT active_terms FROM stats) AS total_terms
             FROM facts f
             WHERE f.user_id = $1 AND f.status = 'active' AND f.terms && $2
             ORDER BY (SELECT count(*) FROM unnest($2::text[]) q WHERE q = ANY(f.terms)) DESC, f.fact_id DESC
             LIMIT $3",
        )
        .bind(user_id)
        .bind(terms)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut out = KeywordMatches::default();
        for r in &rows {
            let total = r.try_get::<Option<i64>, _>("total").map_err(db_err)?.unwrap_or(0);
            let total_terms = r
                .try_get::<Option<i64>, _>("total_terms")
                .map_err(db_err)?
                .unwrap_or(0);
            out.total_items = total.max(0) as u64;
            out.mean_terms = if total > 0 {
                (total_terms.max(0) as f64 / total as f64) as f32
            } else {
                0.0
            };
            out.items.push(KeywordItem {
                fact_id: r.try_get("fact_id").map_err(db_err)?,
                terms: r.try_get("terms").map_err(db_err)?,
            });
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

    async fn user_history(&self, user_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        self.history_where("user_id", user_id).await
    }

    async fn expire_before(
        &self,
        tenant_id: &str,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Expired, StoreError> {
        let (needle, pos) = super::super::tenant_match(tenant_id);
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let items: Vec<(String, String)> = sqlx::query_as(&format!(
            "DELETE FROM facts WHERE fact_id IN (
                 SELECT fact_id FROM facts WHERE strpos(user_id, $1) = {pos} AND created_at < $2
                 ORDER BY created_at LIMIT $3 FOR UPDATE)
             RETURNING user_id, fact_id"
        ))
        .bind(&needle)
        .bind(cutoff)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let ids: Vec<&str> = items.iter().map(|(_, id)| id.as_str()).collect();
        let history = sqlx::query("DELETE FROM fact_history WHERE fact_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        let mut out = Expired {
            history,
            ..Expired::default()
        };
        out.jobs = sqlx::query(&format!(
            "DELETE FROM jobs WHERE strpos(user_id, $1) = {pos} AND created_at < $2 AND state IN ('completed', 'failed')"
        ))
        .bind(&needle)
        .bind(cutoff)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        out.history += sqlx::query(&format!(
            "DELETE FROM fact_history WHERE strpos(user_id, $1) = {pos} AND created_at < $2"
        ))
        .bind(&needle)
        .bind(cutoff)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        // Audit lines of no user (key management) and of erased users (named
        // by pseudonym) are the default tenant's.
        let audit_clause = if pos == 0 {
            "(user_id IS NULL OR strpos(user_id, $1) = 0)"
        } else {
            "strpos(user_id, $1) = 1"
        };
        out.audit = sqlx::query(&format!("DELETE FROM audit_log WHERE {audit_clause} AND at < $2"))
            .bind(&needle)
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        tx.commit().await.map_err(db_err)?;
        out.items = items;
        Ok(out)
    }
}

/// `s` with LIKE's wildcards escaped (tenant ids are `[a-z0-9_-]`: `_` is one).
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// Mem0 compatibility: imports and in-place updates (issue 13).
impl PostgresMetaStore {
    pub(super) async fn known_ids(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT fact_id FROM facts WHERE fact_id = ANY($1)")
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)
    }

    pub(super) async fn users_of(
        &self,
        tenant_id: &str,
        limit: usize,
    ) -> Result<Vec<UserSummary>, StoreError> {
        // Users of the default tenant are stored unprefixed (`tenancy::scoped_user`).
        let (filter, pattern) = if tenant_id == pika_common::tenancy::DEFAULT_TENANT {
            ("user_id NOT LIKE $1", "%/%".to_string())
        } else {
            ("user_id LIKE $1", format!("{}/%", like_escape(tenant_id)))
        };
        let rows: Vec<(String, i64, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(&format!(
            "SELECT user_id, COUNT(*), MIN(created_at), MAX(updated_at) FROM facts
             WHERE status = 'active' AND {filter} GROUP BY user_id ORDER BY user_id LIMIT $2"
        ))
        .bind(pattern)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|(user_id, n, first_at, last_at)| UserSummary {
                user_id,
                memories: n.max(0) as u64,
                first_at,
                last_at,
            })
            .collect())
    }

    pub(super) async fn import(&self, plan: &ExtractionPlan) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let mut inserted = std::collections::HashSet::new();
        for f in &plan.new_facts {
            if super::jobs::insert_fact(&mut tx, plan, f).await? > 0 {
                inserted.insert(f.fact_id.as_str());
            }
        }
        // History only for what this import inserted: a second run adds nothing.
        for h in plan
            .history
            .iter()
            .filter(|h| inserted.contains(h.fact_id.as_str()))
        {
            insert_history(&mut tx, &plan.user_id, h).await?;
        }
        if !plan.user_names.is_empty() {
            sqlx::query(
                "INSERT INTO user_names (user_id, name) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
            )
            .bind(&plan.user_id)
            .bind(&plan.user_names)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(inserted.len())
    }

    pub(super) async fn rewrite(&self, plan: &ExtractionPlan) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let mut rewritten = std::collections::HashSet::new();
        for f in &plan.new_facts {
            let n = sqlx::query(
                "UPDATE facts SET content = $2, entities = $3, tags = $4, attrs = $5, language = $6,
                        updated_at = $7, terms = $8, context = $10, predicate = $11, dedup_key = $12
                 WHERE fact_id = $1 AND user_id = $9 AND status = 'active'",
            )
            .bind(&f.fact_id)
            .bind(&f.content)
            .bind(Json(&f.entities))
            .bind(Json(&f.tags))
            .bind(f.attrs.as_ref().map(Json))
            .bind(&f.language)
            .bind(ms(f.updated_at))
            .bind(plan.index_terms_of(f))
            .bind(&f.user_id)
            .bind(&f.context)
            .bind(&f.predicate)
            .bind(plan.dedup_key_of(f))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            if n > 0 {
                rewritten.insert(f.fact_id.as_str());
            }
        }
        for h in plan
            .history
            .iter()
            .filter(|h| rewritten.contains(h.fact_id.as_str()))
        {
            insert_history(&mut tx, &plan.user_id, h).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(rewritten.len())
    }
}
