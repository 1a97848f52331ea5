-- Nothing accepted is ever lost (issue 14); see the PostgreSQL migration
-- 0006 for what each column is for. Times are Unix milliseconds.
ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
ALTER TABLE jobs ADD COLUMN retry_since INTEGER;
CREATE INDEX jobs_state_job ON jobs (state, job_id);
CREATE TABLE graph_repairs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL,
    op         TEXT NOT NULL,
    fact_ids   TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    next_at    INTEGER NOT NULL
);
CREATE INDEX graph_repairs_due ON graph_repairs (next_at);
CREATE INDEX graph_repairs_user ON graph_repairs (user_id);
