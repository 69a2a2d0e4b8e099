-- PostgreSQL twin of migrations/sqlite/0005_mute.sql.
ALTER TABLE participants ADD COLUMN muted BIGINT NOT NULL DEFAULT 0;
