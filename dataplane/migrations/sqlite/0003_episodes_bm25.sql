-- Episodes beside facts, event dates, and the ranked keyword index (issue 10).
-- `kind` is 'fact' or 'episode'; `context` is the turn an episode answers;
-- `occurred_at` (Unix ms) is when what the item says happened (a date its
-- text names, else when it was said); `said_at` when it was said; `term_count`
-- is the item's length in index terms (BM25's document length). The FTS5
-- table `fact_terms` now holds every index term with repeats (term frequency).
ALTER TABLE facts ADD COLUMN kind TEXT NOT NULL DEFAULT 'fact';
ALTER TABLE facts ADD COLUMN context TEXT;
ALTER TABLE facts ADD COLUMN occurred_at INTEGER;
ALTER TABLE facts ADD COLUMN said_at INTEGER;
ALTER TABLE facts ADD COLUMN term_count INTEGER NOT NULL DEFAULT 0;
-- An episode's words (and the turn it answers), hashed: the same words sent
-- again (a repeated conversation) are not stored twice.
ALTER TABLE facts ADD COLUMN dedup_key TEXT;
CREATE INDEX facts_user_dedup ON facts (user_id, dedup_key);

-- Names a user is known by, from extract requests and from what they said.
CREATE TABLE user_names (
    user_id TEXT NOT NULL,
    name    TEXT NOT NULL,
    PRIMARY KEY (user_id, name)
);
