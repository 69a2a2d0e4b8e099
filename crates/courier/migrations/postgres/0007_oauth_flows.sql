-- PostgreSQL twin of migrations/sqlite/0007_oauth_flows.sql.
CREATE TABLE oauth_flows (
    id         TEXT   PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX oauth_flows_by_expiry ON oauth_flows (expires_at);
