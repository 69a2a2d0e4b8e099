-- Log positions from a sequence, PostgreSQL twin of migrations/sqlite/0018_log_sequence.sql
-- (a no-op there). Until now every append locked the one row of message_position, so appends
-- ran one at a time across the cluster. Now an append locks only its audience (advisory locks
-- on its conversations and its users' stripes) and then takes its positions from this
-- sequence; see store::postgres for why each user's stream stays gap-free.
--
-- CACHE 1 (the default) is required: every nextval then comes from the one shared counter, so
-- a call made after another returned gets a larger value. With a per-backend cache two
-- connections would hand out interleaved ranges (one 1..20, the other 21..40), and an append
-- that waited for a user's lock could take a *smaller* position than the append it waited
-- for: that user's positions would go backwards and a resuming stream would skip one.
CREATE SEQUENCE log_position AS BIGINT MINVALUE 1 CACHE 1;

-- Continue above every position handed out so far (the counter, messages, change events).
SELECT setval('log_position', GREATEST(top, 1), top > 0)
FROM (SELECT GREATEST((SELECT MAX(value) FROM message_position),
                      (SELECT COALESCE(MAX(id), 0) FROM messages),
                      (SELECT COALESCE(MAX(position), 0) FROM conversation_events)) AS top) t;

-- message_position stays (older data and its upgrade tests keep it) but is retired: a node
-- of an older release still running would take positions from it and break the order above,
-- so its writes fail instead. Stop every older node before starting this release.
CREATE FUNCTION message_position_retired() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'message_position is retired since migration 0018: stop every node of an older Courier release';
END
$$;
CREATE TRIGGER message_position_retired
    BEFORE INSERT OR UPDATE OR DELETE ON message_position
    FOR EACH ROW EXECUTE FUNCTION message_position_retired();
