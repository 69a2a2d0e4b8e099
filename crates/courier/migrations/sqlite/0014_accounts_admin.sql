-- People and their accounts, part two: the server admin, first-run setup, invite links made in
-- the app, one-time password links, and deleted accounts.

-- The one notion of server admin (distinct from group roles, which live on participants).
ALTER TABLE users ADD COLUMN is_admin INTEGER NOT NULL DEFAULT 0;
-- Set when the person deleted their account: the row stays, so the username stays reserved
-- and their messages keep a sender.
ALTER TABLE users ADD COLUMN deleted_at INTEGER;

-- Where "forgot password" mail goes (lower case); optional, unique.
ALTER TABLE users ADD COLUMN email TEXT;
CREATE UNIQUE INDEX users_by_email ON users (email);

-- At most one row: written in the same transaction as the first account with a credential,
-- who becomes the admin. Two racing first-run setups collide on the primary key, so there is
-- exactly one admin, on every node.
CREATE TABLE server_setup (
    single  INTEGER PRIMARY KEY CHECK (single = 1),
    user_id INTEGER REFERENCES users (id),
    done_at INTEGER NOT NULL
);
-- An install that already has people with credentials was set up before this migration.
INSERT INTO server_setup (single, user_id, done_at)
SELECT 1, NULL, 0
WHERE EXISTS (SELECT 1 FROM passwords) OR EXISTS (SELECT 1 FROM identities);

-- Invite links: each admits up to max_uses new accounts until expires_at, unless revoked.
CREATE TABLE invites (
    id         INTEGER PRIMARY KEY,
    code       TEXT    NOT NULL UNIQUE,
    created_by INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    max_uses   INTEGER NOT NULL,
    uses       INTEGER NOT NULL DEFAULT 0,
    revoked_at INTEGER
);

-- One-time links that set a password (admin reset, "forgot password"). Only a SHA-256 of the
-- token is kept; used_at marks it spent.
CREATE TABLE password_links (
    token_hash TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) WITHOUT ROWID;
