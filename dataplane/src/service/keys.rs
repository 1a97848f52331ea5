//! Tenants and API keys (DESIGN.md §7): keys are `pika_<env>_sk_<random>`,
//! stored as SHA-256 hashes, each belonging to one tenant and optionally
//! narrowed to listed users (a key per robot device).
//!
//! Hashing and presenting a key are the contract in `pika_common::keys`;
//! creating and storing tenants and keys is the dataplane's alone. Both the
//! CLI (`pika-dataplane tenants|keys …`) and the operator-key HTTP routes
//! (`/v1/tenants`, `/v1/keys`) come through here.

use crate::domain::{ApiKeyRecord, Permission, Tenant};
use crate::ports::{KeyStore, MetaStore, StoreError};
use crate::service::audit::{Access, Actor, AuditLog};
use chrono::{DateTime, Utc};
use pika_common::tenancy::{DEFAULT_TENANT, check_tenant_id};
use pika_common::validate::check_id;
use rand::Rng;
use rand::distr::Alphanumeric;
use std::sync::Arc;

pub use pika_common::keys::hash_key;

/// Most users one device key may list.
pub const MAX_KEY_USERS: usize = 1000;

/// The bootstrap key's fixed id: a second replica starting at the same time
/// conflicts on it instead of creating a second admin key.
pub const BOOTSTRAP_KEY_ID: &str = "key_bootstrap";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("tenant {0} does not exist")]
    UnknownTenant(String),
    #[error("tenant {0} exists already")]
    TenantExists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A freshly created key: the secret is shown once and never stored.
pub struct NewKey {
    pub secret: String,
    pub record: ApiKeyRecord,
}

/// What a new key may do.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub tenant_id: String,
    pub name: String,
    pub permissions: Vec<Permission>,
    /// `None`: every user of the tenant.
    pub users: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl KeySpec {
    fn check(&self) -> Result<(), KeyError> {
        let invalid = |field, reason: String| KeyError::Invalid { field, reason };
        check_tenant_id(&self.tenant_id).map_err(|r| invalid("tenant", r))?;
        if self.name.trim().is_empty() || self.name.chars().count() > 100 {
            return Err(invalid("name", "must be 1..100 characters".into()));
        }
        if self.permissions.is_empty() {
            return Err(invalid("permissions", "at least one is required".into()));
        }
        if let Some(users) = &self.users {
            if users.is_empty() || users.len() > MAX_KEY_USERS {
                return Err(invalid("users", format!("must list 1..{MAX_KEY_USERS} users")));
            }
            for u in users {
                check_id(u).map_err(|r| invalid("users", format!("{u:?} {r}")))?;
            }
        }
        if self.permissions.contains(&Permission::Operator) && self.users.is_some() {
            return Err(invalid(
                "users",
                "an operator key manages every tenant; it cannot be narrowed to users".into(),
            ));
        }
        Ok(())
    }
}

/// Creates a tenant.
pub async fn create_tenant(
    store: &dyn KeyStore,
    tenant_id: &str,
    name: &str,
    require_consent: bool,
) -> Result<Tenant, KeyError> {
    check_tenant_id(tenant_id).map_err(|reason| KeyError::Invalid {
        field: "tenant_id",
        reason,
    })?;
    let name = name.trim();
    if name.chars().count() > 200 {
        return Err(KeyError::Invalid {
            field: "name",
            reason: "must be at most 200 characters".into(),
        });
    }
    let tenant = Tenant {
        tenant_id: tenant_id.to_string(),
        name: if name.is_empty() { tenant_id } else { name }.to_string(),
        created_at: Utc::now(),
        require_consent,
        retention_days: crate::domain::DEFAULT_RETENTION_DAYS,
    };
    if !store.insert_tenant(&tenant).await? {
        return Err(KeyError::TenantExists(tenant_id.to_string()));
    }
    Ok(tenant)
}

/// Creates and stores a key in an existing tenant.
pub async fn create(store: &dyn KeyStore, env: &str, spec: KeySpec) -> Result<NewKey, KeyError> {
    // 64 random bits: the first 16 hex digits of a UUIDv7 are its millisecond
    // and version, equal for two keys made in the same millisecond.
    let key_id = format!("key_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    insert(store, env, key_id, spec).await
}

/// Creates the first admin key when the store has none: admin of the
/// default tenant and operator of all. `None` when keys exist, or when
/// another replica created it first.
pub async fn create_bootstrap(store: &dyn KeyStore, env: &str) -> Result<Option<NewKey>, KeyError> {
    if !store.list_keys().await?.is_empty() {
        return Ok(None);
    }
    let spec = KeySpec {
        tenant_id: DEFAULT_TENANT.into(),
        name: "bootstrap-admin".into(),
        permissions: vec![Permission::Admin, Permission::Operator],
        users: None,
        expires_at: None,
    };
    match insert(store, env, BOOTSTRAP_KEY_ID.into(), spec).await {
        Ok(key) => Ok(Some(key)),
        Err(KeyError::Store(StoreError::Conflict(_))) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn insert(store: &dyn KeyStore, env: &str, key_id: String, spec: KeySpec) -> Result<NewKey, KeyError> {
    spec.check()?;
    if store.tenant(&spec.tenant_id).await?.is_none() {
        return Err(KeyError::UnknownTenant(spec.tenant_id));
    }
    let random: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let secret = format!("pika_{env}_sk_{random}");
    let record = ApiKeyRecord {
        key_id,
        tenant_id: spec.tenant_id,
        users: spec.users,
        name: spec.name,
        prefix: format!("{}…", &secret[..secret.len().min(env.len() + 13)]),
        permissions: spec.permissions,
        created_at: Utc::now(),
        expires_at: spec.expires_at,
        revoked_at: None,
    };
    store.insert_key(&record, &hash_key(&secret)).await?;
    Ok(NewKey { secret, record })
}

/// Managing tenants and keys over HTTP (routes need the operator permission).
/// Every change is audited before the answer.
pub struct KeyService {
    pub meta: Arc<dyn MetaStore>,
    /// `auth.key_env`: the label inside new keys.
    pub env: String,
    pub audit: AuditLog,
}

impl KeyService {
    pub async fn create_tenant(
        &self,
        actor: &Actor,
        tenant_id: &str,
        name: &str,
        require_consent: bool,
    ) -> Result<Tenant, KeyError> {
        let tenant = create_tenant(self.meta.as_ref(), tenant_id, name, require_consent).await?;
        self.record(actor, "create_tenant", tenant_id).await?;
        Ok(tenant)
    }

    /// Sets a tenant's retention period (1..36500 days).
    pub async fn set_retention_days(
        &self,
        actor: &Actor,
        tenant_id: &str,
        days: u32,
    ) -> Result<(), KeyError> {
        if !(1..=36_500).contains(&days) {
            return Err(KeyError::Invalid {
                field: "retention_days",
                reason: "must be from 1 to 36500".into(),
            });
        }
        if !self.meta.set_retention_days(tenant_id, days).await? {
            return Err(KeyError::UnknownTenant(tenant_id.to_string()));
        }
        self.record(actor, "set_retention", tenant_id).await?;
        Ok(())
    }

    /// Turns a tenant's consent requirement on or off.
    pub async fn set_require_consent(
        &self,
        actor: &Actor,
        tenant_id: &str,
        required: bool,
    ) -> Result<(), KeyError> {
        if !self.meta.set_require_consent(tenant_id, required).await? {
            return Err(KeyError::UnknownTenant(tenant_id.to_string()));
        }
        let action = if required {
            "require_consent"
        } else {
            "waive_consent"
        };
        self.record(actor, action, tenant_id).await?;
        Ok(())
    }

    pub async fn tenants(&self) -> Result<Vec<Tenant>, KeyError> {
        Ok(self.meta.list_tenants().await?)
    }

    pub async fn create_key(&self, actor: &Actor, spec: KeySpec) -> Result<NewKey, KeyError> {
        let key = create(self.meta.as_ref(), &self.env, spec).await?;
        self.record(actor, "create_key", &key.record.key_id).await?;
        Ok(key)
    }

    /// Keys of one tenant, or of all.
    pub async fn keys(&self, tenant_id: Option<&str>) -> Result<Vec<ApiKeyRecord>, KeyError> {
        let mut keys = self.meta.list_keys().await?;
        if let Some(t) = tenant_id {
            keys.retain(|k| k.tenant_id == t);
        }
        Ok(keys)
    }

    /// `false` when no such key exists.
    pub async fn revoke_key(&self, actor: &Actor, key_id: &str) -> Result<bool, KeyError> {
        let revoked = self.meta.revoke_key(key_id).await?;
        if revoked {
            self.record(actor, "revoke_key", key_id).await?;
        }
        Ok(revoked)
    }

    async fn record(&self, actor: &Actor, action: &str, target: &str) -> Result<(), StoreError> {
        let access = Access {
            action,
            user_id: None,
            target: Some(target),
        };
        self.audit.write_now(actor, access).await
    }
}

/// Parses `extract,search` into permissions.
pub fn parse_permissions(s: &str) -> Result<Vec<Permission>, String> {
    let mut out = Vec::new();
    for p in s.split(',').filter(|p| !p.trim().is_empty()) {
        let perm = Permission::parse(p)
            .ok_or_else(|| format!("unknown permission {p:?} (extract, search, admin, operator)"))?;
        if !out.contains(&perm) {
            out.push(perm);
        }
    }
    if out.is_empty() {
        return Err("at least one permission is required".into());
    }
    Ok(out)
}

/// Parses `kid1,kid2` into a device key's users.
pub fn parse_users(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_parse() {
        assert_eq!(
            parse_permissions("extract,search").expect("ok"),
            vec![Permission::Extract, Permission::Search]
        );
        assert!(parse_permissions("read").is_err());
        assert!(parse_permissions("").is_err());
    }

    fn spec() -> KeySpec {
        KeySpec {
            tenant_id: "fleet".into(),
            name: "robot-7".into(),
            permissions: vec![Permission::Search],
            users: Some(vec!["kid1".into()]),
            expires_at: None,
        }
    }

    #[test]
    fn key_specs_are_checked() {
        assert!(spec().check().is_ok());
        let bad = [
            KeySpec {
                tenant_id: "Fleet/1".into(),
                ..spec()
            },
            KeySpec {
                users: Some(vec![]),
                ..spec()
            },
            KeySpec {
                users: Some(vec!["a b".into()]),
                ..spec()
            },
            KeySpec {
                permissions: vec![],
                ..spec()
            },
            KeySpec {
                permissions: vec![Permission::Operator],
                ..spec()
            },
        ];
        for s in bad {
            assert!(matches!(s.check(), Err(KeyError::Invalid { .. })), "{s:?}");
        }
    }
}
