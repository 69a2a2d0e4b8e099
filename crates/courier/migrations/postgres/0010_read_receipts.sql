-- PostgreSQL twin of migrations/sqlite/0010_read_receipts.sql.
ALTER TABLE users ADD COLUMN read_receipts BIGINT NOT NULL DEFAULT 1;
