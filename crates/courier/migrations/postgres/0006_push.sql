-- PostgreSQL twin of migrations/sqlite/0006_push.sql.
CREATE TABLE push_subscriptions (
    endpoint     TEXT   PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id),
    p256dh       TEXT   NOT NULL,
    auth         TEXT   NOT NULL,
    hide_content BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL
);
CREATE INDEX push_subscriptions_by_user ON push_subscriptions (user_id);
