-- Read receipts: a person's choice to share them (and to see others'). Read markers already
-- live in participants.last_read_message_id; each move is now an entry of the log.
ALTER TABLE users ADD COLUMN read_receipts INTEGER NOT NULL DEFAULT 1;
