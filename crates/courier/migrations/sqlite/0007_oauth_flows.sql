-- Spent OAuth sign-in flows: a flow id is inserted when its callback is handled, so the same
-- flow cookie cannot finish a sign-in twice (on any node). Rows go once the flow has expired.
CREATE TABLE oauth_flows (
    id         TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX oauth_flows_by_expiry ON oauth_flows (expires_at);
