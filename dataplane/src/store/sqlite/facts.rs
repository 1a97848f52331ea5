//! `FactStore` on SQLite: facts and episodes, their history, the per-user
//! keyword index (FTS5 for candidates, terms for BM25), erasure and export.

use super::*;

#[async_trait]
impl FactStore for SqliteMetaStore {
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
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(db_err)?;
        let row: Option<String> =
            sqlx::query_scalar("SELECT user_id FROM facts WHERE fact_id = ? AND status != 'deleted'")
                .bind(fact_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        let Some(user_id) = row else {
            return Ok(false);
        };
        let now = Utc::now();
        // The text goes everywhere: the row keeps that the fact existed (id,
        // dates, category), not what it said.
        sqlx::query(
            "UPDATE facts SET status = 'deleted', updated_at = ?, content = '', entities = '[]', tags = '[]',
             context = NULL, dedup_key = NULL, predicate = NULL, attrs = NULL WHERE fact_id = ?",
        )
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
        sqlx::query(
            "UPDATE fact_history SET old_content = NULL, new_content = NULL WHERE fact_id = ? OR related_fact_id = ?",
        )
        .bind(fact_id)
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
            created_at: now,
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
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(db_err)?;
        let mut out = MetaErasure::default();
        let kinds: Vec<(String, i64)> =
            sqlx::query_as("SELECT kind, COUNT(*) FROM facts WHERE user_id = ? GROUP BY kind")
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
        for (kind, n) in kinds {
            match kind.as_str() {
                "episode" => out.episodes += n as u64,
                _ => out.facts += n as u64,
            }
        }
        // The embedded vector and graph tables too: they share this database.
        for table in [
            "facts",
            "fact_terms",
            "fact_history",
            "jobs",
            "cache_generations",
            "user_names",
            "fact_entities",
            "fact_vectors",
            "vector_versions",
            "graph_repairs",
        ] {
            let n = sqlx::query(&format!("DELETE FROM {table} WHERE user_id = ?"))
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
            match table {
                "fact_history" => out.history = n,
                "jobs" => out.jobs = n,
                "user_names" => out.names = n,
                _ => {}
            }
        }
        out.audit_pseudonymised = sqlx::query("UPDATE audit_log SET user_id = ? WHERE user_id = ?")
            .bind(pseudonym)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        tx.commit().await.map_err(db_err)?;
        // FTS5 keeps deleted terms in its segments until they are merged, and
        // the WAL keeps old pages until a checkpoint: merge and checkpoint now
        // (best effort; an erasure is rare, and the next one retries).
        for step in [
            "INSERT INTO fact_terms (fact_terms) VALUES ('optimize')",
            "PRAGMA wal_checkpoint(TRUNCATE)",
        ] {
            if let Err(e) = sqlx::query(step).execute(&self.pool).await {
                tracing::warn!(error = %e, step, "erasure compaction step failed");
            }
        }
        Ok(out)
    }

    async fn export_items(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Fact>, StoreError> {
        sqlx::query(&format!(
            "SELECT {FACT_COLUMNS} FROM facts WHERE user_id = ? AND fact_id > ? ORDER BY fact_id LIMIT ?"
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
            "SELECT {JOB_COLUMNS} FROM jobs WHERE user_id = ? AND job_id > ? ORDER BY job_id LIMIT ?"
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
        if fact_ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; fact_ids.len()].join(", ");
        let sql = format!(
            "SELECT fact_id, event, old_content, new_content, related_fact_id, job_id, created_at
             FROM fact_history WHERE fact_id IN ({marks}) ORDER BY id"
        );
        let mut q = sqlx::query(&sql);
        for id in fact_ids {
            q = q.bind(id);
        }
        q.fetch_all(&self.pool)
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
        let items = sqlx::query(
            "SELECT f.fact_id, t.terms AS index_terms FROM fact_terms t JOIN facts f ON f.fact_id = t.fact_id
             WHERE fact_terms MATCH ? AND t.user_id = ? AND f.status = 'active' ORDER BY rank LIMIT ?",
        )
        .bind(expr)
        .bind(user_id)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| {
            let terms: String = r.try_get("index_terms").map_err(db_err)?;
            Ok(KeywordItem {
                fact_id: r.try_get("fact_id").map_err(db_err)?,
                terms: terms
                    .split(' ')
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
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
        let cut = to_ms(cutoff);
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(db_err)?;
        let items: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT user_id, fact_id FROM facts WHERE instr(user_id, ?) = {pos} AND created_at < ?
             ORDER BY created_at LIMIT ?"
        ))
        .bind(&needle)
        .bind(cut)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let mut out = Expired::default();
        for (_, id) in &items {
            for table in ["facts", "fact_terms"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE fact_id = ?"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            out.history += sqlx::query("DELETE FROM fact_history WHERE fact_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
        }
        out.jobs = sqlx::query(&format!(
            "DELETE FROM jobs WHERE instr(user_id, ?) = {pos} AND created_at < ? AND state IN ('completed', 'failed')"
        ))
        .bind(&needle)
        .bind(cut)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        out.history += sqlx::query(&format!(
            "DELETE FROM fact_history WHERE instr(user_id, ?) = {pos} AND created_at < ?"
        ))
        .bind(&needle)
        .bind(cut)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        // Audit lines of no user (key management) and of erased users (named
        // by pseudonym) are the default tenant's.
        let audit_clause = if pos == 0 {
            "(user_id IS NULL OR instr(user_id, ?) = 0)"
        } else {
            "instr(user_id, ?) = 1"
        };
        out.audit = sqlx::query(&format!("DELETE FROM audit_log WHERE {audit_clause} AND at < ?"))
            .bind(&needle)
            .bind(cut)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        tx.commit().await.map_err(db_err)?;
        out.items = items;
        Ok(out)
    }
}

/// Mem0 compatibility: imports and in-place updates (issue 13).
impl SqliteMetaStore {
    pub(super) async fn known_ids(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        // SQLite caps bound parameters per statement: ask in chunks.
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT fact_id FROM facts WHERE fact_id IN ({})",
                sql_in_params(chunk.len())
            );
            let mut q = sqlx::query_scalar::<_, String>(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            out.extend(q.fetch_all(&self.pool).await.map_err(db_err)?);
        }
        Ok(out)
    }

    pub(super) async fn users_of(
        &self,
        tenant_id: &str,
        limit: usize,
    ) -> Result<Vec<UserSummary>, StoreError> {
        // Users of the default tenant are stored unprefixed (`tenancy::scoped_user`).
        let (filter, pattern) = if tenant_id == pika_common::tenancy::DEFAULT_TENANT {
            ("instr(user_id, '/') = 0 AND ? = ?", String::new())
        } else {
            ("substr(user_id, 1, length(?)) = ?", format!("{tenant_id}/"))
        };
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(&format!(
            "SELECT user_id, COUNT(*), MIN(created_at), MAX(updated_at) FROM facts
             WHERE status = 'active' AND {filter} GROUP BY user_id ORDER BY user_id LIMIT ?"
        ))
        .bind(&pattern)
        .bind(&pattern)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|(user_id, n, first_at, last_at)| UserSummary {
                user_id,
                memories: n.max(0) as u64,
                first_at: from_ms(first_at),
                last_at: from_ms(last_at),
            })
            .collect())
    }

    pub(super) async fn import(&self, plan: &ExtractionPlan) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(db_err)?;
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
        for name in &plan.user_names {
            sqlx::query("INSERT INTO user_names (user_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING")
                .bind(&plan.user_id)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(inserted.len())
    }

    pub(super) async fn rewrite(&self, plan: &ExtractionPlan) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(db_err)?;
        let mut rewritten = std::collections::HashSet::new();
        for f in &plan.new_facts {
            let terms = plan.index_terms_of(f);
            let n = sqlx::query(
                "UPDATE facts SET content = ?, entities = ?, tags = ?, attrs = ?, language = ?, updated_at = ?,
                        term_count = ?, context = ?, predicate = ?, dedup_key = ?
                 WHERE fact_id = ? AND user_id = ? AND status = 'active'",
            )
            .bind(&f.content)
            .bind(serde_json::to_string(&f.entities).map_err(corrupt)?)
            .bind(serde_json::to_string(&f.tags).map_err(corrupt)?)
            .bind(f.attrs.as_ref().map(serde_json::to_string).transpose().map_err(corrupt)?)
            .bind(&f.language)
            .bind(to_ms(f.updated_at))
            .bind(terms.len() as i64)
            .bind(&f.context)
            .bind(&f.predicate)
            .bind(plan.dedup_key_of(f))
            .bind(&f.fact_id)
            .bind(&f.user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            if n == 0 {
                continue;
            }
            rewritten.insert(f.fact_id.as_str());
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
