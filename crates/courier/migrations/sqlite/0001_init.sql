-- Courier schema. Conversations hold N participants; a 1:1 conversation is one whose
-- direct_key is "<low user id>:<high user id>", which makes a pair's conversation unique.
-- A message id is its position in commit order (one writer assigns them), and read state is
-- a message position per participant, never a timestamp.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE users (
    id         INTEGER PRIMARY KEY,
    username   TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    avatar_url TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE conversations (
    id              INTEGER PRIMARY KEY,
    direct_key      TEXT UNIQUE,
    last_message_id INTEGER,
    created_at      INTEGER NOT NULL
);
CREATE INDEX conversations_by_last_message ON conversations (last_message_id);

CREATE TABLE participants (
    conversation_id      INTEGER NOT NULL REFERENCES conversations (id),
    user_id              INTEGER NOT NULL REFERENCES users (id),
    last_read_message_id INTEGER NOT NULL DEFAULT 0,
    joined_at            INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX participants_by_user ON participants (user_id, conversation_id);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    sender_id       INTEGER NOT NULL REFERENCES users (id),
    content         TEXT    NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, id);

CREATE TABLE idempotency_keys (
    user_id         INTEGER NOT NULL REFERENCES users (id),
    key             TEXT    NOT NULL,
    conversation_id INTEGER NOT NULL,
    message_id      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
