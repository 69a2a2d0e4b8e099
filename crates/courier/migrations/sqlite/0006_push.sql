-- Web Push subscriptions: one row per browser endpoint, owned by whoever registered it last.
CREATE TABLE push_subscriptions (
    endpoint     TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    p256dh       TEXT    NOT NULL,
    auth         TEXT    NOT NULL,
    hide_content INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX push_subscriptions_by_user ON push_subscriptions (user_id);
