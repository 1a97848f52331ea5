//! Who owns a user's data (DESIGN.md §2, §7): a tenant (an organisation or a
//! robot fleet) owns users, and every store, cache entry and message keys a
//! user's data by tenant + user through one string, the *scoped user key*.
//!
//! The scoped key is `"{tenant}/{user}"`; the default tenant's key is the bare
//! user id. Neither ids may hold `/`, so the form is unambiguous, and data
//! written before tenants existed is the default tenant's without rewriting
//! any backend (Milvus partition keys and graph node ids cannot be renamed in
//! place). Ports below the HTTP edge only ever see scoped keys, so a user id of
//! another tenant names different rows, vectors, nodes and cache entries.

/// The tenant that existing data and keys belong to.
pub const DEFAULT_TENANT: &str = "default";

/// Longest tenant id.
pub const MAX_TENANT_ID_CHARS: usize = 40;

/// `[a-z0-9][a-z0-9_-]{0,39}`: short, lowercase, URL- and key-safe, no `/`.
pub fn check_tenant_id(id: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    let first_ok = id
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if id.is_empty() || id.len() > MAX_TENANT_ID_CHARS || !first_ok || !id.chars().all(ok_char) {
        return Err(format!(
            "must be 1..{MAX_TENANT_ID_CHARS} characters of [a-z0-9_-], starting with a letter or digit"
        ));
    }
    Ok(())
}

/// The key every backend stores `user` of `tenant` under.
pub fn scoped_user(tenant: &str, user: &str) -> String {
    if tenant == DEFAULT_TENANT {
        user.to_string()
    } else {
        format!("{tenant}/{user}")
    }
}

/// `(tenant, user)` of a scoped key (the inverse of [`scoped_user`]).
pub fn split_scoped(scoped: &str) -> (&str, &str) {
    match scoped.split_once('/') {
        Some((tenant, user)) => (tenant, user),
        None => (DEFAULT_TENANT, scoped),
    }
}

/// Whose data a caller reaches: one tenant, and within it every user or the
/// listed ones (a key per robot device).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reach {
    pub tenant_id: String,
    pub users: Option<Vec<String>>,
}

impl Reach {
    /// Every user of `tenant_id`.
    pub fn tenant(tenant_id: &str) -> Reach {
        Reach {
            tenant_id: tenant_id.to_string(),
            users: None,
        }
    }

    /// Whether `user` of the tenant is within reach.
    pub fn covers_user(&self, user: &str) -> bool {
        self.users
            .as_ref()
            .is_none_or(|users| users.iter().any(|u| u == user))
    }

    /// The scoped key of `user`, when within reach.
    pub fn scope(&self, user: &str) -> Option<String> {
        self.covers_user(user).then(|| scoped_user(&self.tenant_id, user))
    }

    /// Whether data stored under the scoped key `scoped` is within reach.
    pub fn owns_scoped(&self, scoped: &str) -> bool {
        let (tenant, user) = split_scoped(scoped);
        tenant == self.tenant_id && self.covers_user(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_keys_round_trip_and_never_collide_across_tenants() {
        for (t, u) in [("default", "child:7"), ("fleet-a", "child:7"), ("x_1", "a.b@c")] {
            let k = scoped_user(t, u);
            assert_eq!(split_scoped(&k), (t, u));
        }
        assert_eq!(
            scoped_user(DEFAULT_TENANT, "u1"),
            "u1",
            "old data stays the default tenant's"
        );
        assert_ne!(scoped_user("a", "u1"), scoped_user("b", "u1"));
        assert_ne!(scoped_user("a", "u1"), scoped_user(DEFAULT_TENANT, "u1"));
    }

    #[test]
    fn tenant_ids_are_checked() {
        for ok in ["default", "a", "fleet-01", "org_9"] {
            assert!(check_tenant_id(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(41);
        for bad in ["", "A", "-a", "a/b", "a b", "á", long.as_str()] {
            assert!(check_tenant_id(bad).is_err(), "{bad:?}");
        }
    }
}
