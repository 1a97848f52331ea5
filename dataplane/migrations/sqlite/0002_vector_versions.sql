-- Per-user version of the embedded vector index, bumped with every write, so
-- a process whose in-memory copy is older (another process wrote) reloads.
CREATE TABLE vector_versions (
    user_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
