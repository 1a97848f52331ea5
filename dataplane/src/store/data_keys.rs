//! The keyring ([`DataKeyStore`]) on SQLite and on PostgreSQL.
//!
//! Kept out of the metadata store on purpose: embedded, it is its own file
//! (`keyring.db` beside `pika.db`); on PostgreSQL it goes to
//! `encryption.keyring_url`, which should name a database other than the
//! metadata's (see docs/SECURITY.md: a metadata backup then holds no data
//! keys, and an erased child's data in it can never be opened). One table,
//! created here, so the keyring needs no migration history of its own.

use crate::ports::{DataKeyStore, StoreError, WrappedKey};
use async_trait::async_trait;
use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

const SQLITE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS data_keys (
    owner      TEXT PRIMARY KEY,
    dek_id     TEXT NOT NULL UNIQUE,
    kek_id     TEXT NOT NULL,
    wrapped    TEXT NOT NULL,
    created_at INTEGER NOT NULL
)";

const POSTGRES_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS pika_data_keys (
    owner      TEXT PRIMARY KEY,
    dek_id     TEXT NOT NULL UNIQUE,
    kek_id     TEXT NOT NULL,
    wrapped    TEXT NOT NULL,
    created_at BIGINT NOT NULL
)";

/// Advisory lock key held while the keyring table is created ("pika_dk").
const KEYRING_SCHEMA_LOCK: i64 = 0x0070_696b_615f_646b;

fn key_from_row<R: Row>(r: &R) -> Result<WrappedKey, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(WrappedKey {
        owner: r.try_get("owner")?,
        dek_id: r.try_get("dek_id")?,
        kek_id: r.try_get("kek_id")?,
        wrapped: r.try_get("wrapped")?,
    })
}

fn sqlite_err(e: sqlx::Error) -> StoreError {
    StoreError::unavailable("keyring", e)
}

/// The embedded keyring: its own SQLite file.
#[derive(Clone)]
pub struct SqliteDataKeys {
    pool: SqlitePool,
}

impl SqliteDataKeys {
    pub async fn connect(url: &str) -> Result<SqliteDataKeys, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(sqlite_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            // A destroyed key is overwritten, not left in a free page.
            .pragma("secure_delete", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(sqlite_err)?;
        sqlx::query(SQLITE_SCHEMA)
            .execute(&pool)
            .await
            .map_err(sqlite_err)?;
        Ok(SqliteDataKeys { pool })
    }
}

#[async_trait]
impl DataKeyStore for SqliteDataKeys {
    async fn data_key(&self, owner: &str) -> Result<Option<WrappedKey>, StoreError> {
        let row = sqlx::query("SELECT owner, dek_id, kek_id, wrapped FROM data_keys WHERE owner = ?")
            .bind(owner)
            .fetch_optional(&self.pool)
            .await
            .map_err(sqlite_err)?;
        row.map(|r| key_from_row(&r)).transpose().map_err(sqlite_err)
    }

    async fn data_key_by_id(&self, dek_id: &str) -> Result<Option<WrappedKey>, StoreError> {
        let row = sqlx::query("SELECT owner, dek_id, kek_id, wrapped FROM data_keys WHERE dek_id = ?")
            .bind(dek_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(sqlite_err)?;
        row.map(|r| key_from_row(&r)).transpose().map_err(sqlite_err)
    }

    async fn insert_data_key(&self, key: &WrappedKey) -> Result<WrappedKey, StoreError> {
        sqlx::query(
            "INSERT INTO data_keys (owner, dek_id, kek_id, wrapped, created_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (owner) DO NOTHING",
        )
        .bind(&key.owner)
        .bind(&key.dek_id)
        .bind(&key.kek_id)
        .bind(&key.wrapped)
        .bind(Utc::now().timestamp_millis())
        .execute(&self.pool)
        .await
        .map_err(sqlite_err)?;
        self.data_key(&key.owner)
            .await?
            .ok_or_else(|| StoreError::Corrupt("data key vanished after insert".into()))
    }

    async fn delete_data_key(&self, owner: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM data_keys WHERE owner = ?")
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(sqlite_err)?;
        if done.rows_affected() > 0 {
            // Out of the write-ahead log too, not only the main file.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await
                .map_err(sqlite_err)?;
        }
        Ok(done.rows_affected() > 0)
    }

    async fn data_keys_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WrappedKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT owner, dek_id, kek_id, wrapped FROM data_keys WHERE owner > ? ORDER BY owner LIMIT ?",
        )
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(sqlite_err)?;
        rows.iter()
            .map(key_from_row)
            .collect::<Result<_, _>>()
            .map_err(sqlite_err)
    }

    async fn rewrap_data_key(&self, key: &WrappedKey, old_kek: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE data_keys SET kek_id = ?, wrapped = ? WHERE owner = ? AND dek_id = ? AND kek_id = ?",
        )
        .bind(&key.kek_id)
        .bind(&key.wrapped)
        .bind(&key.owner)
        .bind(&key.dek_id)
        .bind(old_kek)
        .execute(&self.pool)
        .await
        .map_err(sqlite_err)?;
        Ok(done.rows_affected() == 1)
    }
}

fn pg_err(e: sqlx::Error) -> StoreError {
    StoreError::unavailable("keyring", e)
}

/// The keyring in PostgreSQL (table `pika_data_keys`).
#[derive(Clone)]
pub struct PostgresDataKeys {
    pool: PgPool,
}

impl PostgresDataKeys {
    pub async fn connect(url: &str, max_connections: u32) -> Result<PostgresDataKeys, StoreError> {
        let opts = PgConnectOptions::from_str(url).map_err(pg_err)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await
            .map_err(pg_err)?;
        // `CREATE TABLE IF NOT EXISTS` is not safe against itself: an API
        // and a worker starting together on a new database both create the
        // table, and one fails on pg_type's unique index. A transaction-scoped
        // advisory lock makes the second wait, then find the table.
        let mut tx = pool.begin().await.map_err(pg_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(KEYRING_SCHEMA_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(pg_err)?;
        sqlx::query(POSTGRES_SCHEMA)
            .execute(&mut *tx)
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(PostgresDataKeys { pool })
    }
}

#[async_trait]
impl DataKeyStore for PostgresDataKeys {
    async fn data_key(&self, owner: &str) -> Result<Option<WrappedKey>, StoreError> {
        let row = sqlx::query("SELECT owner, dek_id, kek_id, wrapped FROM pika_data_keys WHERE owner = $1")
            .bind(owner)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_err)?;
        row.map(|r| key_from_row(&r)).transpose().map_err(pg_err)
    }

    async fn data_key_by_id(&self, dek_id: &str) -> Result<Option<WrappedKey>, StoreError> {
        let row = sqlx::query("SELECT owner, dek_id, kek_id, wrapped FROM pika_data_keys WHERE dek_id = $1")
            .bind(dek_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_err)?;
        row.map(|r| key_from_row(&r)).transpose().map_err(pg_err)
    }

    async fn insert_data_key(&self, key: &WrappedKey) -> Result<WrappedKey, StoreError> {
        sqlx::query(
            "INSERT INTO pika_data_keys (owner, dek_id, kek_id, wrapped, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (owner) DO NOTHING",
        )
        .bind(&key.owner)
        .bind(&key.dek_id)
        .bind(&key.kek_id)
        .bind(&key.wrapped)
        .bind(Utc::now().timestamp_millis())
        .execute(&self.pool)
        .await
        .map_err(pg_err)?;
        self.data_key(&key.owner)
            .await?
            .ok_or_else(|| StoreError::Corrupt("data key vanished after insert".into()))
    }

    async fn delete_data_key(&self, owner: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM pika_data_keys WHERE owner = $1")
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(pg_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn data_keys_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WrappedKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT owner, dek_id, kek_id, wrapped FROM pika_data_keys WHERE owner > $1 ORDER BY owner LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(pg_err)?;
        rows.iter()
            .map(key_from_row)
            .collect::<Result<_, _>>()
            .map_err(pg_err)
    }

    async fn rewrap_data_key(&self, key: &WrappedKey, old_kek: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE pika_data_keys SET kek_id = $1, wrapped = $2 WHERE owner = $3 AND dek_id = $4 AND kek_id = $5",
        )
        .bind(&key.kek_id)
        .bind(&key.wrapped)
        .bind(&key.owner)
        .bind(&key.dek_id)
        .bind(old_kek)
        .execute(&self.pool)
        .await
        .map_err(pg_err)?;
        Ok(done.rows_affected() == 1)
    }
}
