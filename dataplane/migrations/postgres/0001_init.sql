-- Production metadata store. Indexes cover every query the service makes
-- (see store/postgres.rs); times are timestamptz.

CREATE TABLE jobs (
    job_id          TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    request         JSONB NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    claim_token     TEXT,
    result          JSONB,
    error           TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
-- Outbox sweeper and recovery: queued/processing jobs by age.
CREATE INDEX jobs_state_updated ON jobs (state, updated_at) WHERE state IN ('queued', 'processing');
CREATE INDEX jobs_user ON jobs (user_id, created_at);

CREATE TABLE facts (
    fact_id          TEXT PRIMARY KEY,          -- UUIDv7: text order is time order
    user_id          TEXT NOT NULL,
    conversation_id  TEXT NOT NULL,
    content          TEXT NOT NULL,
    category         TEXT NOT NULL,
    confidence       REAL NOT NULL,
    entities         JSONB NOT NULL,
    tags             JSONB NOT NULL,
    source_turns     JSONB NOT NULL,
    language         TEXT NOT NULL,
    status           TEXT NOT NULL,
    polarity         TEXT NOT NULL,
    predicate        TEXT,
    supersedes       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    accessed_count   INTEGER NOT NULL DEFAULT 0,
    last_accessed_at TIMESTAMPTZ,
    -- Folded syllables of content and tags (keyword search and the degraded path).
    terms            TEXT[] NOT NULL DEFAULT '{}'
);
-- Listing a user's active facts in id order; reindex scans.
CREATE INDEX facts_user_status_id ON facts (user_id, status, fact_id);
CREATE INDEX facts_status_id ON facts (status, fact_id);
-- Keyword candidates: terms && $1 among one user's active facts.
CREATE INDEX facts_terms ON facts USING GIN (terms);

CREATE TABLE fact_history (
    id              BIGSERIAL PRIMARY KEY,
    fact_id         TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    event           TEXT NOT NULL,
    old_content     TEXT,
    new_content     TEXT,
    related_fact_id TEXT,
    job_id          TEXT,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX fact_history_fact ON fact_history (fact_id, id);
CREATE INDEX fact_history_user ON fact_history (user_id, id);

CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ,
    revoked_at  TIMESTAMPTZ
);

-- Append-only: the service only ever inserts here.
CREATE TABLE audit_log (
    id         BIGSERIAL PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL,
    key_id     TEXT,
    action     TEXT NOT NULL,
    user_id    TEXT,
    target     TEXT,
    request_id TEXT NOT NULL
);
CREATE INDEX audit_user_at ON audit_log (user_id, at);
