-- Accounts, PostgreSQL twin of migrations/sqlite/0002_accounts.sql: revocable sessions,
-- external identities (OAuth/OIDC), password credentials and spent invite codes.

CREATE TABLE sessions (
    id           TEXT   PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id),
    device       TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- A person is linked to an identity provider by the provider's subject id, never by name.
CREATE TABLE identities (
    provider   TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    user_id    BIGINT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);

CREATE TABLE passwords (
    user_id    BIGINT PRIMARY KEY REFERENCES users (id),
    hash       TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE spent_invites (
    code       TEXT   PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL
);
