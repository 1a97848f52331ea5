-- Erasure that leaves nothing (issue 12).
-- `erasures`: one tombstone per erased user, named by a keyed hash of the
-- scoped user key (never the id itself), so a worker holding a job that
-- predates the erasure can tell, and remove what it wrote.
CREATE TABLE erasures (
    pseudonym TEXT PRIMARY KEY,
    erased_at INTEGER NOT NULL
);
-- A store-wide clock for vector versions: a user's version row can then be
-- deleted on erasure (it names the user) without a later version repeating
-- one another process still holds in memory.
ALTER TABLE vector_meta ADD COLUMN clock INTEGER NOT NULL DEFAULT 0;
UPDATE vector_meta SET clock = (SELECT COALESCE(MAX(version), 0) FROM vector_versions);

-- Consent per user (issue 12), keyed by the user's pseudonym (a hash of the
-- scoped key), so a withdrawal outlives the erasure it triggers without
-- keeping the id. A tenant may require consent before any extraction.
CREATE TABLE consents (
    pseudonym TEXT PRIMARY KEY,
    state     TEXT NOT NULL,
    set_by    TEXT,
    set_at    INTEGER NOT NULL
);
ALTER TABLE tenants ADD COLUMN require_consent INTEGER NOT NULL DEFAULT 0;
-- Retention per tenant (SDD 9.5: 2 years by default), enforced by the worker.
ALTER TABLE tenants ADD COLUMN retention_days INTEGER NOT NULL DEFAULT 730;
CREATE INDEX facts_created ON facts (created_at);
CREATE INDEX fact_history_created ON fact_history (created_at);
CREATE INDEX audit_at ON audit_log (at);
