-- PostgreSQL twin of migrations/sqlite/0009_presence.sql.
ALTER TABLE users ADD COLUMN last_seen_at BIGINT;
ALTER TABLE users ADD COLUMN show_last_seen BIGINT NOT NULL DEFAULT 1;
