-- Mem0 compatibility (issue 13): a memory made through the Mem0 routes or an
-- import carries the caller's metadata and Mem0 scope (agent_id, run_id,
-- app_id) as one JSON object, sealed by the vault like the text.
ALTER TABLE facts ADD COLUMN attrs TEXT;
