-- Tenants and scoped keys (issue 12). A tenant owns users; a key belongs to
-- one tenant and may be narrowed to listed users (`users`: JSON array, NULL
-- for every user of the tenant). Users' data is keyed by the scoped user key
-- (`tenant/user`; the default tenant's is the bare user id), so every row
-- written before this migration is the default tenant's.
CREATE TABLE tenants (
    tenant_id  TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO tenants (tenant_id, name, created_at)
VALUES ('default', 'default', CAST(strftime('%s', 'now') AS INTEGER) * 1000);

ALTER TABLE api_keys ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default' REFERENCES tenants (tenant_id);
ALTER TABLE api_keys ADD COLUMN users TEXT;
