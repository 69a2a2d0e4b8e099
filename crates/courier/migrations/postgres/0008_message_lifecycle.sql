-- PostgreSQL twin of migrations/sqlite/0008_message_lifecycle.sql.

ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE messages ADD COLUMN deleted_at BIGINT;
ALTER TABLE messages ADD COLUMN reply_to BIGINT;

ALTER TABLE conversation_events ADD COLUMN message_id BIGINT;
CREATE INDEX conversation_events_by_message ON conversation_events (message_id)
    WHERE message_id IS NOT NULL;

CREATE TABLE reactions (
    message_id BIGINT NOT NULL REFERENCES messages (id),
    user_id    BIGINT NOT NULL REFERENCES users (id),
    emoji      TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);
