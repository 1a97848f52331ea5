//! API keys (DESIGN.md §7): `pika_<env>_sk_<random>`, stored as SHA-256 hashes.
//!
//! Hashing and presenting a key are the contract in `pika_common::keys`;
//! creating and storing keys is the dataplane's alone.

use crate::domain::{ApiKeyRecord, Permission};
use crate::ports::{MetaStore, StoreError};
use chrono::{DateTime, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;

pub use pika_common::keys::hash_key;

/// A freshly created key: the secret is shown once and never stored.
pub struct NewKey {
    pub secret: String,
    pub record: ApiKeyRecord,
}

/// Creates and stores a key.
pub async fn create(
    meta: &dyn MetaStore,
    env: &str,
    name: &str,
    permissions: Vec<Permission>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<NewKey, StoreError> {
    let random: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let secret = format!("pika_{env}_sk_{random}");
    let record = ApiKeyRecord {
        key_id: format!("key_{}", &uuid::Uuid::now_v7().simple().to_string()[..16]),
        name: name.to_string(),
        prefix: format!("{}…", &secret[..secret.len().min(env.len() + 13)]),
        permissions,
        created_at: Utc::now(),
        expires_at,
        revoked_at: None,
    };
    meta.insert_key(&record, &hash_key(&secret)).await?;
    Ok(NewKey { secret, record })
}

/// Parses `extract,search` into permissions.
pub fn parse_permissions(s: &str) -> Result<Vec<Permission>, String> {
    let mut out = Vec::new();
    for p in s.split(',').filter(|p| !p.trim().is_empty()) {
        let perm = Permission::parse(p)
            .ok_or_else(|| format!("unknown permission {p:?} (extract, search, admin)"))?;
        if !out.contains(&perm) {
            out.push(perm);
        }
    }
    if out.is_empty() {
        return Err("at least one permission is required".into());
    }
    Ok(out)
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
}
