-- Groups on one durable log. Every durable change has a position from the one counter that
-- numbers messages: a message's id is its position; other changes are rows of
-- conversation_events. member_spans records who was a member from which position to which,
-- so an event at position p goes to exactly the members at p, on live streams and on resume.
-- participants keeps the current members only (leaving deletes the row), so every route of
-- a conversation answers 404 to someone who left.

ALTER TABLE conversations ADD COLUMN kind TEXT NOT NULL DEFAULT 'direct';
ALTER TABLE conversations ADD COLUMN title TEXT;
ALTER TABLE conversations ADD COLUMN history TEXT NOT NULL DEFAULT 'shared';
ALTER TABLE conversations ADD COLUMN member_count INTEGER NOT NULL DEFAULT 2;
-- The newest position of any kind in the conversation (messages and changes).
ALTER TABLE conversations ADD COLUMN last_position INTEGER NOT NULL DEFAULT 0;
-- Where a group sorts before its first message: the position that created it.
ALTER TABLE conversations ADD COLUMN created_position INTEGER;
UPDATE conversations SET last_position = COALESCE(last_message_id, 0);

ALTER TABLE participants ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
-- The position that (last) added this member: seniority, and where `joined` history starts.
ALTER TABLE participants ADD COLUMN joined_position INTEGER NOT NULL DEFAULT 0;
-- The oldest message this member may read: 0, or joined_position for `joined` history.
ALTER TABLE participants ADD COLUMN history_from INTEGER NOT NULL DEFAULT 0;

-- A message's ordinal in its conversation: unread = last message's seq - read marker's seq.
ALTER TABLE messages ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
UPDATE messages SET seq = x.n FROM (
    SELECT id, ROW_NUMBER() OVER (PARTITION BY conversation_id ORDER BY id) AS n FROM messages
) AS x WHERE messages.id = x.id;

CREATE TABLE member_spans (
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    user_id         INTEGER NOT NULL REFERENCES users (id),
    from_position   INTEGER NOT NULL,
    to_position     INTEGER,
    PRIMARY KEY (user_id, conversation_id, from_position)
) WITHOUT ROWID;
INSERT INTO member_spans (conversation_id, user_id, from_position)
    SELECT conversation_id, user_id, 0 FROM participants;

CREATE TABLE conversation_events (
    position        INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    actor_id        INTEGER NOT NULL REFERENCES users (id),
    payload         TEXT    NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX conversation_events_by_conversation ON conversation_events (conversation_id, position);
