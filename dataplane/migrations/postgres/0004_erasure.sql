-- Erasure that leaves nothing (issue 12): one tombstone per erased user,
-- named by a hash of the scoped user key (never the id itself), so a worker
-- holding a job that predates the erasure can tell, and remove what it wrote.
CREATE TABLE erasures (
    pseudonym TEXT PRIMARY KEY,
    erased_at TIMESTAMPTZ NOT NULL
);
