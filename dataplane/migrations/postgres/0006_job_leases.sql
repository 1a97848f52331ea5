-- Nothing accepted is ever lost (issue 14).
-- A worker holds a `processing` job under a lease it keeps renewing; the
-- sweeper puts a job whose lease ran out (its worker died, hung or gave up)
-- back in `queued` and publishes it again.
ALTER TABLE jobs ADD COLUMN lease_until TIMESTAMPTZ;
-- Transient failures are retried until `retry_since` + the retry horizon;
-- a re-drive starts the horizon again. NULL: since `created_at`.
ALTER TABLE jobs ADD COLUMN retry_since TIMESTAMPTZ;
CREATE INDEX jobs_state_job ON jobs (state, job_id);
-- Graph writes that failed while the graph (an optional store) was down:
-- the job completed without them, and the repair loop writes them later.
-- Only fact ids are kept; the entities are read back from `facts`.
CREATE TABLE graph_repairs (
    id         BIGSERIAL PRIMARY KEY,
    user_id    TEXT NOT NULL,
    op         TEXT NOT NULL,
    fact_ids   JSONB NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    next_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX graph_repairs_due ON graph_repairs (next_at);
CREATE INDEX graph_repairs_user ON graph_repairs (user_id);
