-- Accounts: revocable sessions, external identities (OAuth/OIDC), password credentials and
-- spent invite codes.

CREATE TABLE sessions (
    id           TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    device       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER
) WITHOUT ROWID;
CREATE INDEX sessions_by_user ON sessions (user_id);

-- A person is linked to an identity provider by the provider's subject id, never by name.
CREATE TABLE identities (
    provider   TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (provider, subject)
) WITHOUT ROWID;

CREATE TABLE passwords (
    user_id    INTEGER PRIMARY KEY REFERENCES users (id),
    hash       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE spent_invites (
    code       TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
