-- BM25's per-user statistics (issue 14, found by the soak): how many active
-- items a user has and how many index terms they hold together (N and, over
-- N, the mean length). Every search used to compute them with a COUNT/AVG
-- over the user's whole memory, a cost that grew with every conversation; now
-- a search reads one row. Statement-level triggers keep the row exact for
-- every write path (worker commits, deletes, erasure, retention, import)
-- without each of them having to remember it.
CREATE TABLE user_term_stats (
    user_id      TEXT PRIMARY KEY,
    active_items BIGINT NOT NULL,
    active_terms BIGINT NOT NULL
);

INSERT INTO user_term_stats (user_id, active_items, active_terms)
SELECT user_id, COUNT(*), COALESCE(SUM(cardinality(terms)), 0)
FROM facts WHERE status = 'active' GROUP BY user_id;

-- Adds the per-user change a statement made. Users are locked in id order
-- so two statements touching several users cannot deadlock on this table.
CREATE FUNCTION user_term_stats_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO user_term_stats AS s (user_id, active_items, active_terms)
        SELECT user_id, COUNT(*), COALESCE(SUM(cardinality(terms)), 0)
        FROM new_rows WHERE status = 'active' GROUP BY user_id ORDER BY user_id
        ON CONFLICT (user_id) DO UPDATE
            SET active_items = s.active_items + EXCLUDED.active_items,
                active_terms = s.active_terms + EXCLUDED.active_terms;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO user_term_stats AS s (user_id, active_items, active_terms)
        SELECT user_id, SUM(n), SUM(t) FROM (
            SELECT user_id, 1 AS n, cardinality(terms)::bigint AS t FROM new_rows WHERE status = 'active'
            UNION ALL
            SELECT user_id, -1, -cardinality(terms)::bigint FROM old_rows WHERE status = 'active'
        ) d GROUP BY user_id HAVING SUM(n) <> 0 OR SUM(t) <> 0 ORDER BY user_id
        ON CONFLICT (user_id) DO UPDATE
            SET active_items = s.active_items + EXCLUDED.active_items,
                active_terms = s.active_terms + EXCLUDED.active_terms;
    ELSE
        UPDATE user_term_stats s
        SET active_items = s.active_items - d.n, active_terms = s.active_terms - d.t
        FROM (SELECT user_id, COUNT(*) AS n, COALESCE(SUM(cardinality(terms)), 0) AS t
              FROM old_rows WHERE status = 'active' GROUP BY user_id ORDER BY user_id) d
        WHERE s.user_id = d.user_id;
        -- A user with nothing left (erasure) leaves no row behind.
        DELETE FROM user_term_stats
        WHERE active_items <= 0 AND user_id IN (SELECT DISTINCT user_id FROM old_rows);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER facts_term_stats_insert AFTER INSERT ON facts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION user_term_stats_apply();
CREATE TRIGGER facts_term_stats_update AFTER UPDATE ON facts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION user_term_stats_apply();
CREATE TRIGGER facts_term_stats_delete AFTER DELETE ON facts
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION user_term_stats_apply();
