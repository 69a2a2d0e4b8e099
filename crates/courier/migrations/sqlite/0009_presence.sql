-- Presence: when each person was last connected (Unix ms; NULL until their first stream
-- ends), and whether others may see it (1) or not (0). Who is online now is never stored:
-- nodes keep it in memory and share it over the bus.
ALTER TABLE users ADD COLUMN last_seen_at INTEGER;
ALTER TABLE users ADD COLUMN show_last_seen INTEGER NOT NULL DEFAULT 1;
