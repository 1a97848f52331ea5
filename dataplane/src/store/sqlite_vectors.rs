//! `VectorIndex` embedded: exact per-user search over vectors kept in SQLite and
//! cached in memory.
//!
//! A child has at most a few thousand facts, so an exact scan of one user's
//! vectors (a few hundred microseconds for 1000 × 384) beats any approximate
//! index here and is always right. Vectors are loaded per user on first use and
//! kept in memory; writes go to SQLite first and bump the user's version, and a
//! search reloads when the stored version moved (another process, such as a
//! separate worker, wrote), so reads see every committed write.

use super::sqlite::{BEGIN_WRITE, db_err};
use crate::ports::{StoreError, VectorIndex};
use async_trait::async_trait;
use pika_common::vector::{dot, from_bytes, to_bytes};
use sqlx::{Row, SqlitePool};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::RwLock;

/// A user's vectors and the store version they were loaded at.
type UserVectors = Arc<(i64, Vec<(String, Vec<f32>)>)>;

/// Embedded vector index sharing the metadata store's SQLite pool.
pub struct SqliteVectorIndex {
    pool: SqlitePool,
    dimension: usize,
    /// Loaded users' vectors. Copy-on-write: a search clones the `Arc`, never the vectors.
    cache: RwLock<HashMap<String, UserVectors>>,
}

impl SqliteVectorIndex {
    /// Opens the index and checks that it was built with the same model and dimension.
    pub async fn open(pool: SqlitePool, model: &str, dimension: usize) -> Result<Self, StoreError> {
        let stored: Option<(String, i64)> =
            sqlx::query_as("SELECT model, dimension FROM vector_meta WHERE id = 1")
                .fetch_optional(&pool)
                .await
                .map_err(db_err)?;
        match stored {
            Some((m, d)) if m != model || d as usize != dimension => {
                return Err(StoreError::ModelMismatch {
                    stored: format!("{m} ({d} dims)"),
                    configured: format!("{model} ({dimension} dims)"),
                });
            }
            Some(_) => {}
            None => {
                sqlx::query(
                    "INSERT INTO vector_meta (id, model, dimension, clock)
                     VALUES (1, ?, ?, (SELECT COALESCE(MAX(version), 0) FROM vector_versions))",
                )
                .bind(model)
                .bind(dimension as i64)
                .execute(&pool)
                .await
                .map_err(db_err)?;
            }
        }
        Ok(SqliteVectorIndex {
            pool,
            dimension,
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// Drops every vector and records a new model: the first step of `reindex`.
    pub async fn reset(pool: SqlitePool, model: &str, dimension: usize) -> Result<Self, StoreError> {
        let mut tx = pool.begin_with(BEGIN_WRITE).await.map_err(db_err)?;
        sqlx::query("DELETE FROM fact_vectors")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("DELETE FROM vector_meta")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        SqliteVectorIndex::open(pool, model, dimension).await
    }

    async fn version(&self, user_id: &str) -> Result<i64, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT version FROM vector_versions WHERE user_id = ?")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(v.unwrap_or(0))
    }

    async fn user_vectors(&self, user_id: &str) -> Result<UserVectors, StoreError> {
        let version = self.version(user_id).await?;
        if let Some(v) = self.cache.read().await.get(user_id)
            && v.0 == version
        {
            return Ok(Arc::clone(v));
        }
        // Read rows and version in one transaction so they match.
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(db_err)?;
        let version: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM vector_versions WHERE user_id = ?")
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
        let rows = sqlx::query("SELECT fact_id, vector FROM fact_vectors WHERE user_id = ?")
            .bind(user_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        let mut items = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get("fact_id").map_err(db_err)?;
            let bytes: Vec<u8> = r.try_get("vector").map_err(db_err)?;
            items.push((id, from_bytes(&bytes)));
        }
        let v = Arc::new((version, items));
        self.cache
            .write()
            .await
            .insert(user_id.to_string(), Arc::clone(&v));
        Ok(v)
    }
}

/// Moves the user's version to the next tick of the store-wide clock, so a
/// version never repeats, even after a user's row was deleted (erasure).
async fn bump_version(tx: &mut sqlx::SqliteConnection, user_id: &str) -> Result<(), StoreError> {
    let tick: i64 =
        sqlx::query_scalar("UPDATE vector_meta SET clock = clock + 1 WHERE id = 1 RETURNING clock")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
    sqlx::query(
        "INSERT INTO vector_versions (user_id, version) VALUES (?, ?)
         ON CONFLICT (user_id) DO UPDATE SET version = excluded.version",
    )
    .bind(user_id)
    .bind(tick)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl VectorIndex for SqliteVectorIndex {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn upsert(&self, user_id: &str, items: &[(String, Vec<f32>)]) -> Result<(), StoreError> {
        if let Some((_, v)) = items.iter().find(|(_, v)| v.len() != self.dimension) {
            return Err(StoreError::Conflict(format!(
                "vector has {} dimensions, index expects {}",
                v.len(),
                self.dimension
            )));
        }
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(db_err)?;
        for (id, v) in items {
            sqlx::query(
                "INSERT INTO fact_vectors (fact_id, user_id, vector) VALUES (?, ?, ?)
                 ON CONFLICT (fact_id) DO UPDATE SET vector = excluded.vector",
            )
            .bind(id)
            .bind(user_id)
            .bind(to_bytes(v))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        bump_version(&mut tx, user_id).await?;
        tx.commit().await.map_err(db_err)?;
        // Invalidate rather than patch: the next search reloads from the source of truth.
        self.cache.write().await.remove(user_id);
        Ok(())
    }

    async fn search(&self, user_id: &str, query: &[f32], k: usize) -> Result<Vec<(String, f32)>, StoreError> {
        if query.len() != self.dimension {
            return Err(StoreError::Conflict(format!(
                "query has {} dimensions, index expects {}",
                query.len(),
                self.dimension
            )));
        }
        let vectors = self.user_vectors(user_id).await?;
        let mut scored: Vec<(String, f32)> = vectors
            .1
            .iter()
            .map(|(id, v)| (id.clone(), dot(query, v)))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.truncate(k);
        Ok(scored)
    }

    async fn delete(&self, user_id: &str, fact_ids: &[String]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(db_err)?;
        for id in fact_ids {
            sqlx::query("DELETE FROM fact_vectors WHERE fact_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        bump_version(&mut tx, user_id).await?;
        tx.commit().await.map_err(db_err)?;
        self.cache.write().await.remove(user_id);
        Ok(())
    }

    async fn delete_user(&self, user_id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(db_err)?;
        sqlx::query("DELETE FROM fact_vectors WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // The version row names the user, so it goes too: another process
        // holding this user's vectors sees version 0 and reloads (nothing).
        bump_version(&mut tx, user_id).await?;
        sqlx::query("DELETE FROM vector_versions WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        self.cache.write().await.remove(user_id);
        Ok(())
    }
}
