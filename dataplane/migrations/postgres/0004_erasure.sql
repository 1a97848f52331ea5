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
