//! `KeyStore` and `AuditStore` on SQLite: API keys by hash, and the
//! append-only audit log.

use super::*;

#[async_trait]
impl KeyStore for SqliteMetaStore {
    async fn insert_tenant(&self, t: &Tenant) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO tenants (tenant_id, name, created_at, require_consent, retention_days) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (tenant_id) DO NOTHING",
        )
        .bind(&t.tenant_id)
        .bind(&t.name)
        .bind(to_ms(t.created_at))
        .bind(t.require_consent)
        .bind(t.retention_days as i32)
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn tenant(&self, tenant_id: &str) -> Result<Option<Tenant>, StoreError> {
        sqlx::query("SELECT * FROM tenants WHERE tenant_id = ?")
            .bind(tenant_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(tenant_from_row)
            .transpose()
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        sqlx::query("SELECT * FROM tenants ORDER BY tenant_id")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?
            .iter()
            .map(tenant_from_row)
            .collect()
    }

    async fn set_require_consent(&self, tenant_id: &str, required: bool) -> Result<bool, StoreError> {
        let n = sqlx::query("UPDATE tenants SET require_consent = ? WHERE tenant_id = ?")
            .bind(required)
            .bind(tenant_id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn set_retention_days(&self, tenant_id: &str, days: u32) -> Result<bool, StoreError> {
        let n = sqlx::query("UPDATE tenants SET retention_days = ? WHERE tenant_id = ?")
            .bind(days as i32)
            .bind(tenant_id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn consent(&self, pseudonym: &str) -> Result<Option<Consent>, StoreError> {
        sqlx::query("SELECT state, set_by, set_at FROM consents WHERE pseudonym = ?")
            .bind(pseudonym)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(consent_from_row)
            .transpose()
    }

    async fn set_consent(&self, pseudonym: &str, c: &Consent) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO consents (pseudonym, state, set_by, set_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (pseudonym) DO UPDATE SET state = excluded.state, set_by = excluded.set_by, set_at = excluded.set_at",
        )
        .bind(pseudonym)
        .bind(c.state.as_str())
        .bind(&c.set_by)
        .bind(to_ms(c.set_at))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn insert_key(&self, k: &ApiKeyRecord, hash: &str) -> Result<(), StoreError> {
        let users = k.users.as_ref().map(|u| serde_json::json!(u).to_string());
        sqlx::query(
            "INSERT INTO api_keys (key_id, hash, name, prefix, permissions, created_at, expires_at, revoked_at, tenant_id, users)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&k.key_id)
        .bind(hash)
        .bind(&k.name)
        .bind(&k.prefix)
        .bind(k.permissions.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(","))
        .bind(to_ms(k.created_at))
        .bind(k.expires_at.map(to_ms))
        .bind(k.revoked_at.map(to_ms))
        .bind(&k.tenant_id)
        .bind(users)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        sqlx::query("SELECT * FROM api_keys WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .as_ref()
            .map(key_from_row)
            .transpose()
    }

    async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        sqlx::query("SELECT * FROM api_keys ORDER BY created_at")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?
            .iter()
            .map(key_from_row)
            .collect()
    }

    async fn revoke_key(&self, key_id: &str) -> Result<bool, StoreError> {
        let n = sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE key_id = ?")
            .bind(to_ms(Utc::now()))
            .bind(key_id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?
            .rows_affected();
        Ok(n == 1)
    }
}

#[async_trait]
impl AuditStore for SqliteMetaStore {
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let at = to_ms(Utc::now());
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await.map_err(db_err)?;
        for e in entries {
            sqlx::query(
                "INSERT INTO audit_log (at, key_id, action, user_id, target, request_id) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(at)
            .bind(&e.key_id)
            .bind(&e.action)
            .bind(&e.user_id)
            .bind(&e.target)
            .bind(&e.request_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn audit_of(&self, user_id: &str, after: i64, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, key_id, action, user_id, target, request_id FROM audit_log
             WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(user_id)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get("id").map_err(db_err)?,
                    at: from_ms(r.try_get("at").map_err(db_err)?),
                    entry: AuditEntry {
                        key_id: r.try_get("key_id").map_err(db_err)?,
                        action: r.try_get("action").map_err(db_err)?,
                        user_id: r.try_get("user_id").map_err(db_err)?,
                        target: r.try_get("target").map_err(db_err)?,
                        request_id: r.try_get("request_id").map_err(db_err)?,
                    },
                })
            })
            .collect()
    }
}
