-- A member can mute a conversation: no notifications for it, on any device.
ALTER TABLE participants ADD COLUMN muted INTEGER NOT NULL DEFAULT 0;
