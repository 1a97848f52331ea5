-- Episodes beside facts, event dates, and the ranked keyword index (issue 10).
-- `kind` is 'fact' or 'episode'; `context` is the turn an episode answers;
-- `occurred_at` is when what the item says happened (a date its text names,
-- else when it was said); `said_at` is when it was said. `terms` now holds every
-- index term with repeats (term frequency for BM25; its cardinality is the
-- document length).
ALTER TABLE facts
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'fact',
    ADD COLUMN context TEXT,
    ADD COLUMN occurred_at TIMESTAMPTZ,
    ADD COLUMN said_at TIMESTAMPTZ,
    -- An episode's words (and the turn it answers), hashed: the same words sent
    -- again (a repeated conversation) are not stored twice.
    ADD COLUMN dedup_key TEXT;
CREATE INDEX facts_user_dedup ON facts (user_id, dedup_key);

-- Names a user is known by, from extract requests and from what they said.
CREATE TABLE user_names (
    user_id TEXT NOT NULL,
    name    TEXT NOT NULL,
    PRIMARY KEY (user_id, name)
);
