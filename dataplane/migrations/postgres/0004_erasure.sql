-- Erasure that leaves nothing (issue 12): one tombstone per erased user,
-- named by a hash of the scoped user key (never the id itself), so a worker
-- holding a job that predates the erasure can tell, and remove what it wrote.
CREATE TABLE erasures (
    pseudonym TEXT PRIMARY KEY,
    erased_at TIMESTAMPTZ NOT NULL
);

-- Consent per user, keyed by the user's pseudonym (a hash of the scoped key),
-- so a withdrawal outlives the erasure it triggers without keeping the id. A
-- tenant may require consent before any extraction.
CREATE TABLE consents (
    pseudonym TEXT PRIMARY KEY,
    state     TEXT NOT NULL,
    set_by    TEXT,
    set_at    TIMESTAMPTZ NOT NULL
);
ALTER TABLE tenants ADD COLUMN require_consent BOOLEAN NOT NULL DEFAULT false;
-- Retention per tenant (SDD 9.5: 2 years by default), enforced by the worker.
ALTER TABLE tenants ADD COLUMN retention_days INTEGER NOT NULL DEFAULT 730;
CREATE INDEX facts_created ON facts (created_at);
CREATE INDEX fact_history_created ON fact_history (created_at);
CREATE INDEX audit_at ON audit_log (at);
