-- Message lifecycle: edits, deletes (tombstones), replies and reactions. Each change is an
-- entry of conversation_events at its own position; `message_id` names the message it is
-- about, so a replay can hide it from members who cannot see that message (joined history)
-- and a delete can scrub the text out of earlier edit events.

ALTER TABLE messages ADD COLUMN edited_at INTEGER;
-- A tombstone: content is '' and this is set.
ALTER TABLE messages ADD COLUMN deleted_at INTEGER;
-- The message this one answers, in the same conversation.
ALTER TABLE messages ADD COLUMN reply_to INTEGER;

ALTER TABLE conversation_events ADD COLUMN message_id INTEGER;
CREATE INDEX conversation_events_by_message ON conversation_events (message_id)
    WHERE message_id IS NOT NULL;

CREATE TABLE reactions (
    message_id INTEGER NOT NULL REFERENCES messages (id),
    user_id    INTEGER NOT NULL REFERENCES users (id),
    emoji      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
) WITHOUT ROWID;
