//! `FactGraph` embedded: the `(:Fact)-[:MENTIONS]->(:Entity)` relation as a
//! SQLite table. Two facts are related when they mention the same entity.

use super::sqlite::{BEGIN_WRITE, db_err};
use crate::ports::{FactGraph, StoreError};
use async_trait::async_trait;
use sqlx::{Row, SqlitePool};
use std::collections::HashMap;

/// Embedded graph sharing the metadata store's SQLite pool.
pub struct SqliteGraph {
    pool: SqlitePool,
}

impl SqliteGraph {
    pub fn new(pool: SqlitePool) -> Self {
        SqliteGraph { pool }
    }
}

#[async_trait]
impl FactGraph for SqliteGraph {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn upsert_facts(&self, user_id: &str, facts: &[(String, Vec<String>)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(db_err)?;
        for (fact_id, entities) in facts {
            for entity in entities {
                sqlx::query("INSERT INTO fact_entities (user_id, fact_id, entity) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
                    .bind(user_id)
                    .bind(fact_id)
                    .bind(entity)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
        }
        tx.commit().await.map_err(db_err)
    }

    async fn related(
        &self,
        user_id: &str,
        fact_ids: &[String],
        per_fact: usize,
    ) -> Result<HashMap<String, Vec<String>>, StoreError> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        if fact_ids.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT DISTINCT a.fact_id AS src, b.fact_id AS dst FROM fact_entities a
             JOIN fact_entities b ON b.user_id = a.user_id AND b.entity = a.entity AND b.fact_id != a.fact_id
             WHERE a.user_id = ? AND a.fact_id IN ({}) ORDER BY b.fact_id DESC",
            vec!["?"; fact_ids.len()].join(", ")
        );
        let mut q = sqlx::query(&sql).bind(user_id);
        for id in fact_ids {
            q = q.bind(id);
        }
        for row in q.fetch_all(&self.pool).await.map_err(db_err)? {
            let src: String = row.try_get("src").map_err(db_err)?;
            let dst: String = row.try_get("dst").map_err(db_err)?;
            let list = out.entry(src).or_default();
            if list.len() < per_fact {
                list.push(dst);
            }
        }
        Ok(out)
    }

    async fn delete_facts(&self, user_id: &str, fact_ids: &[String]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(db_err)?;
        for id in fact_ids {
            sqlx::query("DELETE FROM fact_entities WHERE user_id = ? AND fact_id = ?")
                .bind(user_id)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn delete_user(&self, user_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM fact_entities WHERE user_id = ?")
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
