-- Delivered-to-device receipts are state, not history: the newest stream position each device
-- (session) has acknowledged, and per person the newest of those. A message is delivered to
-- someone once any of their devices acknowledged a position at or past it.
CREATE TABLE device_acks (
    user_id    INTEGER NOT NULL REFERENCES users (id),
    device     TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, device)
) WITHOUT ROWID;
ALTER TABLE users ADD COLUMN delivered_position INTEGER NOT NULL DEFAULT 0;
