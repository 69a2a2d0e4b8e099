-- SQLite twin of migrations/postgres/0019_conversation_updates.sql. No query uses this index,
-- and every send group rewrote its pages (an entry moved per conversation that got a message).
DROP INDEX conversations_by_last_message;
