-- Log positions, SQLite twin of migrations/postgres/0018_log_sequence.sql, which moves
-- PostgreSQL's positions to a sequence taken under per-audience locks. Nothing changes here:
-- SQLite's single writer task numbers the log in commit order. Kept so both directories
-- stay in step.
SELECT 1;
