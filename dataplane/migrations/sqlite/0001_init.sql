-- Embedded metadata store. Times are Unix milliseconds (UTC).

CREATE TABLE jobs (
    job_id          TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    request         TEXT NOT NULL,          -- the validated ExtractRequest (JSON)
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    claim_token     TEXT,
    result          TEXT,
    error           TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX jobs_state_created ON jobs (state, created_at);
CREATE INDEX jobs_user ON jobs (user_id);

CREATE TABLE facts (
    fact_id          TEXT PRIMARY KEY,      -- UUIDv7: text order is time order
    user_id          TEXT NOT NULL,
    conversation_id  TEXT NOT NULL,
    content          TEXT NOT NULL,
    category         TEXT NOT NULL,
    confidence       REAL NOT NULL,
    entities         TEXT NOT NULL,         -- JSON array
    tags             TEXT NOT NULL,         -- JSON array
    source_turns     TEXT NOT NULL,         -- JSON array
    language         TEXT NOT NULL,
    status           TEXT NOT NULL,
    polarity         TEXT NOT NULL,
    predicate        TEXT,
    supersedes       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    accessed_count   INTEGER NOT NULL DEFAULT 0,
    last_accessed_at INTEGER
);
CREATE INDEX facts_user_status ON facts (user_id, status, fact_id);

-- Folded syllables of content and tags, for keyword search. `owner` is one
-- token per user (see keyword_owner in the store), so a query matches only that
-- user's rows inside the index instead of filtering every user's matches.
CREATE VIRTUAL TABLE fact_terms USING fts5(fact_id UNINDEXED, user_id UNINDEXED, owner, terms);

CREATE TABLE fact_history (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    fact_id         TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    event           TEXT NOT NULL,
    old_content     TEXT,
    new_content     TEXT,
    related_fact_id TEXT,
    job_id          TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX fact_history_fact ON fact_history (fact_id, id);
CREATE INDEX fact_history_user ON fact_history (user_id);

CREATE TABLE fact_vectors (
    fact_id  TEXT PRIMARY KEY,
    user_id  TEXT NOT NULL,
    vector   BLOB NOT NULL
);
CREATE INDEX fact_vectors_user ON fact_vectors (user_id);

CREATE TABLE vector_meta (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    model     TEXT NOT NULL,
    dimension INTEGER NOT NULL
);

CREATE TABLE fact_entities (
    user_id TEXT NOT NULL,
    fact_id TEXT NOT NULL,
    entity  TEXT NOT NULL,
    PRIMARY KEY (fact_id, entity)
);
CREATE INDEX fact_entities_user_entity ON fact_entities (user_id, entity);

CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,       -- SHA-256 of the whole key, hex
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    permissions TEXT NOT NULL,              -- comma separated
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    key_id     TEXT,
    action     TEXT NOT NULL,
    user_id    TEXT,
    target     TEXT,
    request_id TEXT NOT NULL
);
CREATE INDEX audit_user ON audit_log (user_id, at);

CREATE TABLE cache_generations (
    user_id    TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
);
