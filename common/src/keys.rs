//! API keys as every process sees them (DESIGN.md §7): the permissions a key
//! carries, the grant it resolves to, how a request presents it and how it is
//! hashed. The dataplane stores keys; the sidecar only ever holds grants it
//! asked the dataplane for (`GET /v1/keys/self`), so both must agree on these
//! definitions byte for byte.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Permission carried by an API key.
///
/// `extract`, `search` and `admin` act on the data of the key's own tenant
/// (admin implies the other two, and adds erasure, export and consent).
/// `operator` manages tenants and keys of every tenant and reads no child's
/// data by itself: a platform team's key, not a robot's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Extract,
    Search,
    Admin,
    Operator,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Extract => "extract",
            Permission::Search => "search",
            Permission::Admin => "admin",
            Permission::Operator => "operator",
        }
    }

    /// `None` for anything but the three names (stored values parse losslessly).
    pub fn parse(s: &str) -> Option<Permission> {
        match s.trim() {
            "extract" => Some(Permission::Extract),
            "search" => Some(Permission::Search),
            "admin" => Some(Permission::Admin),
            "operator" => Some(Permission::Operator),
            _ => None,
        }
    }
}

/// What a presented key may do: the answer of key introspection, and what
/// both processes check a request against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyGrant {
    pub key_id: String,
    /// The tenant whose data the key reaches; no other.
    pub tenant_id: String,
    /// A device key's users; `None`: every user of the tenant.
    pub users: Option<Vec<String>>,
    pub permissions: Vec<Permission>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl KeyGrant {
    /// Neither revoked nor expired at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }

    /// Usable now with this permission (admin implies the data permissions,
    /// not `operator`).
    pub fn allows(&self, p: Permission, now: DateTime<Utc>) -> bool {
        let implied = p != Permission::Operator && self.permissions.contains(&Permission::Admin);
        self.is_live(now) && (self.permissions.contains(&p) || implied)
    }

    /// Whose data the key reaches.
    pub fn reach(&self) -> crate::tenancy::Reach {
        crate::tenancy::Reach {
            tenant_id: self.tenant_id.clone(),
            users: self.users.clone(),
        }
    }
}

/// SHA-256 of the whole key, lowercase hex: what the key store indexes. A
/// hash of a 190-bit random secret is safe to store (no dictionary to
/// attack, unlike passwords) and cheap enough to compute on every request.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The API key a request presents: `Authorization: Bearer <key>` (or
/// `bearer`, or Mem0's `Token <key>`), else `X-API-Key`. Empty values count as absent.
pub fn presented_key(headers: &http::HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        // `Token` is the scheme Mem0's clients send.
        if let Some(k) = ["Bearer ", "bearer ", "Token ", "token "]
            .iter()
            .find_map(|scheme| v.strip_prefix(scheme))
        {
            return Some(k.trim()).filter(|k| !k.is_empty());
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn grant(perms: Vec<Permission>, expires_at: Option<DateTime<Utc>>, revoked: bool) -> KeyGrant {
        KeyGrant {
            key_id: "k".into(),
            tenant_id: crate::tenancy::DEFAULT_TENANT.into(),
            users: None,
            permissions: perms,
            expires_at,
            revoked_at: revoked.then(Utc::now),
        }
    }

    #[test]
    fn grants_expire_and_revoke_and_admin_implies_all() {
        let now = Utc::now();
        assert!(grant(vec![Permission::Search], None, false).allows(Permission::Search, now));
        assert!(!grant(vec![Permission::Search], None, false).allows(Permission::Extract, now));
        assert!(grant(vec![Permission::Admin], None, false).allows(Permission::Extract, now));
        let expired = grant(vec![Permission::Admin], Some(now - Duration::seconds(1)), false);
        assert!(!expired.allows(Permission::Search, now));
        let later = grant(vec![Permission::Search], Some(now + Duration::days(1)), false);
        assert!(later.allows(Permission::Search, now));
        assert!(!grant(vec![Permission::Admin], None, true).allows(Permission::Search, now));
        assert!(!grant(vec![Permission::Admin], None, false).allows(Permission::Operator, now));
        assert!(!grant(vec![Permission::Operator], None, false).allows(Permission::Search, now));
    }

    #[test]
    fn a_device_key_reaches_its_users_of_its_tenant_only() {
        let mut g = grant(vec![Permission::Search], None, false);
        g.tenant_id = "fleet".into();
        g.users = Some(vec!["kid1".into()]);
        let r = g.reach();
        assert_eq!(r.scope("kid1").as_deref(), Some("fleet/kid1"));
        assert_eq!(r.scope("kid2"), None);
        assert!(r.owns_scoped("fleet/kid1"));
        assert!(!r.owns_scoped("fleet/kid2"));
        assert!(
            !r.owns_scoped("kid1"),
            "the default tenant's kid1 is someone else"
        );
        assert!(!r.owns_scoped("other/kid1"));
        g.users = None;
        assert!(g.reach().owns_scoped("fleet/kid2"));
    }

    #[test]
    fn hash_is_stable_hex() {
        assert_eq!(hash_key("a").len(), 64);
        assert_eq!(hash_key("a"), hash_key("a"));
        assert_ne!(hash_key("a"), hash_key("b"));
    }

    #[test]
    fn a_key_is_read_from_either_header() {
        let mut h = http::HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert("x-api-key", " k1 ".parse().expect("header"));
        assert_eq!(presented_key(&h), Some("k1"));
        h.insert("authorization", "Bearer k2".parse().expect("header"));
        assert_eq!(presented_key(&h), Some("k2"));
        h.remove("x-api-key");
        h.insert("authorization", "Bearer ".parse().expect("header"));
        assert_eq!(presented_key(&h), None, "an empty bearer is no key");
        h.insert("authorization", "Token k3".parse().expect("header"));
        assert_eq!(presented_key(&h), Some("k3"), "Mem0's scheme");
        h.insert("authorization", "Basic abc".parse().expect("header"));
        assert_eq!(presented_key(&h), None);
    }

    #[test]
    fn permissions_parse_losslessly() {
        for p in [
            Permission::Extract,
            Permission::Search,
            Permission::Admin,
            Permission::Operator,
        ] {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        assert_eq!(Permission::parse("read"), None);
    }
}
