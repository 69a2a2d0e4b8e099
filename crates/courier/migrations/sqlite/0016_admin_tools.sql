-- Admin tools: disabled accounts and reported messages.

-- Set while an admin has disabled the account: it cannot sign in, and its sessions were ended.
ALTER TABLE users ADD COLUMN disabled_at INTEGER;

-- A person's report of a message they could see. At most one open report per person and
-- message; resolving it (resolved_by, resolved_at) lets them report it again.
CREATE TABLE reports (
    id              INTEGER PRIMARY KEY,
    reporter_id     INTEGER NOT NULL REFERENCES users (id),
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    message_id      INTEGER NOT NULL REFERENCES messages (id),
    reason          TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    resolved_by     INTEGER REFERENCES users (id),
    resolved_at     INTEGER
);
CREATE UNIQUE INDEX reports_one_open ON reports (reporter_id, message_id)
    WHERE resolved_at IS NULL;
CREATE INDEX reports_open ON reports (id) WHERE resolved_at IS NULL;
