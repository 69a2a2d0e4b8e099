-- PostgreSQL twin of migrations/sqlite/0011_deliveries.sql.
CREATE TABLE device_acks (
    user_id    BIGINT NOT NULL REFERENCES users (id),
    device     TEXT   NOT NULL,
    position   BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, device)
);
ALTER TABLE users ADD COLUMN delivered_position BIGINT NOT NULL DEFAULT 0;
