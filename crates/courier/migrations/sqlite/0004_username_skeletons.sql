-- Lookalike usernames: each name's confusable skeleton (model::Username::skeleton: `aIice`,
-- `a1ice` and `alice` share one) is unique, so a name that reads like an existing one is
-- taken. Names from before this migration get theirs when the store opens; of two existing
-- lookalikes the older keeps the skeleton and the younger keeps none (NULLs never collide).
ALTER TABLE users ADD COLUMN skeleton TEXT;
CREATE UNIQUE INDEX users_by_skeleton ON users (skeleton);
