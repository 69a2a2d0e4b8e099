-- PostgreSQL twin of migrations/sqlite/0003_groups.sql: groups on one durable log. Change
-- events take their positions from message_position under its row lock, like messages.

ALTER TABLE conversations ADD COLUMN kind TEXT NOT NULL DEFAULT 'direct';
ALTER TABLE conversations ADD COLUMN title TEXT;
ALTER TABLE conversations ADD COLUMN history TEXT NOT NULL DEFAULT 'shared';
ALTER TABLE conversations ADD COLUMN member_count BIGINT NOT NULL DEFAULT 2;
ALTER TABLE conversations ADD COLUMN last_position BIGINT NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN created_position BIGINT;
UPDATE conversations SET last_position = COALESCE(last_message_id, 0);

ALTER TABLE participants ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
ALTER TABLE participants ADD COLUMN joined_position BIGINT NOT NULL DEFAULT 0;
ALTER TABLE participants ADD COLUMN history_from BIGINT NOT NULL DEFAULT 0;

ALTER TABLE messages ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
UPDATE messages SET seq = x.n FROM (
    SELECT id, ROW_NUMBER() OVER (PARTITION BY conversation_id ORDER BY id) AS n FROM messages
) AS x WHERE messages.id = x.id;

CREATE TABLE member_spans (
    conversation_id BIGINT NOT NULL REFERENCES conversations (id),
    user_id         BIGINT NOT NULL REFERENCES users (id),
    from_position   BIGINT NOT NULL,
    to_position     BIGINT,
    PRIMARY KEY (user_id, conversation_id, from_position)
);
INSERT INTO member_spans (conversation_id, user_id, from_position)
    SELECT conversation_id, user_id, 0 FROM participants;

CREATE TABLE conversation_events (
    position        BIGINT PRIMARY KEY,
    conversation_id BIGINT NOT NULL REFERENCES conversations (id),
    actor_id        BIGINT NOT NULL REFERENCES users (id),
    payload         TEXT   NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX conversation_events_by_conversation ON conversation_events (conversation_id, position);
