-- New messages' search words are written by the writer in batches just behind the sends
-- (store/sqlite/search_backlog.rs): every message at or below `indexed_upto` is indexed, or
-- deleted, or has no text. Sends before this migration were indexed in their own commit.
CREATE TABLE search_backlog (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_upto INTEGER NOT NULL
);
INSERT INTO search_backlog (id, indexed_upto) SELECT 1, COALESCE(MAX(id), 0) FROM messages;
