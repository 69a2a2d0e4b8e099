//! `AccountStore` for `SqliteStore`; twin of `postgres/accounts.rs`.

use super::{SqliteStore, classify, now_ms, user_at};
use crate::model::{Session, User, UserId, Username};
use crate::store::log::{SESSION_COLUMNS, session_at, shared};
use crate::store::{AccountStore, Admission, NewCredential, StoreError, StoreResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_account_as(
        &self,
        username: &Username,
        avatar_url: Option<&str>,
        credential: NewCredential,
        admission: Admission<'_>,
    ) -> StoreResult<User> {
        let now = now_ms();
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(classify)?;
        // The first account with a credential takes the one setup row (see migration 0014).
        let first = sqlx::query(
            "INSERT INTO server_setup (single, user_id, done_at) VALUES (1, NULL, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected()
            == 1;
        if admission == Admission::Setup && !first {
            return Err(StoreError::Conflict("setup"));
        }
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO users (username, skeleton, avatar_url, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(username.as_str())
        .bind(username.skeleton())
        .bind(avatar_url)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        let id = id.ok_or(StoreError::Conflict("username"))?;
        if let Admission::Code(code) = admission {
            let spent = sqlx::query(
                "INSERT INTO spent_invites (code, user_id, created_at) VALUES (?, ?, ?)
                 ON CONFLICT (code) DO NOTHING",
            )
            .bind(code)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            if spent.rows_affected() == 0 {
                return Err(StoreError::Conflict("invite"));
            }
        }
        if let Admission::Link(code) = admission {
            let used = sqlx::query(
                "UPDATE invites SET uses = uses + 1
                 WHERE code = ? AND revoked_at IS NULL AND expires_at > ? AND uses < max_uses",
            )
            .bind(code)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            if used.rows_affected() == 0 {
                return Err(StoreError::Conflict("invite link"));
            }
        }
        if first || admission == Admission::Admin {
            sqlx::query("UPDATE users SET is_admin = 1 WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            if first {
                sqlx::query("UPDATE server_setup SET user_id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
            }
        }
        let written = match credential {
            NewCredential::Password { hash } => {
                sqlx::query("INSERT INTO passwords (user_id, hash, updated_at) VALUES (?, ?, ?)")
                    .bind(id)
                    .bind(hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
            }
            NewCredential::Identity { provider, subject } => {
                sqlx::query(
                    "INSERT INTO identities (provider, subject, user_id, created_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT (provider, subject) DO NOTHING",
                )
                .bind(provider)
                .bind(subject)
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await
            }
        };
        if written.map_err(classify)?.rows_affected() == 0 {
            return Err(StoreError::Conflict("identity"));
        }
        tx.commit().await.map_err(classify)?;
        Ok(User {
            id: UserId(id),
            username: username.as_str().to_owned(),
            avatar_url: avatar_url.map(str::to_owned),
            display_name: None,
            deleted: false,
        })
    }

    async fn identity_user(&self, provider: &str, subject: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, COALESCE(u.picture, u.avatar_url), u.display_name, u.deleted_at
             FROM identities i JOIN users u ON u.id = i.user_id
             WHERE i.provider = ? AND i.subject = ?",
        )
        .bind(provider)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.map(|r| user_at(&r, 0)).transpose().map_err(classify)
    }

    async fn password_hash(&self, username: &Username) -> StoreResult<(User, String)> {
        let row = sqlx::query(
            "SELECT u.id, u.username, COALESCE(u.picture, u.avatar_url), u.display_name, u.deleted_at, p.hash
             FROM users u
             JOIN passwords p ON p.user_id = u.id WHERE u.username = ?",
        )
        .bind(username.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        Ok((
            user_at(&row, 0).map_err(classify)?,
            row.try_get(5).map_err(classify)?,
        ))
    }

    async fn has_credentials(&self, user: UserId) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM passwords WHERE user_id = ?1)
                 OR EXISTS (SELECT 1 FROM identities WHERE user_id = ?1)",
        )
        .bind(user.0)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        row.try_get(0).map_err(classify)
    }

    async fn update_avatar(&self, user: UserId, avatar_url: Option<&str>) -> StoreResult<()> {
        sqlx::query("UPDATE users SET avatar_url = ? WHERE id = ?")
            .bind(avatar_url)
            .bind(user.0)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        // Cached member lists show avatars.
        self.members.invalidate(None);
        Ok(())
    }

    async fn create_session(&self, session: &Session) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, device, created_at, last_seen_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&session.id)
        .bind(session.user.0)
        .bind(&session.device)
        .bind(session.created_at.timestamp_millis())
        .bind(session.last_seen_at.timestamp_millis())
        .bind(session.expires_at.timestamp_millis())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn active_session(&self, id: &str, now: DateTime<Utc>) -> StoreResult<Session> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions
             WHERE id = ? AND revoked_at IS NULL AND expires_at > ?"
        );
        // Every request and stream connect asks this: on the readers (`super::reader`).
        let session = self.readers.read(|conn| {
            let mut statement = conn.prepare_cached(&sql)?;
            let mut rows = statement.query(rusqlite::params![id, now.timestamp_millis()])?;
            match rows.next()? {
                Some(row) => Ok(session_at(&super::reader::Lite(row))?),
                None => Err(super::reader::ReadError::from(
                    rusqlite::Error::QueryReturnedNoRows,
                )),
            }
        })?;
        Ok(session)
    }

    async fn touch_session(
        &self,
        id: &str,
        now: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        let args = vec![
            now.timestamp_millis().into(),
            expires_at.map(|t| t.timestamp_millis()).into(),
            id.to_owned().into(),
        ];
        self.write(
            "UPDATE sessions SET last_seen_at = ?, expires_at = COALESCE(?, expires_at)
             WHERE id = ? AND revoked_at IS NULL",
            args,
        )
        .await
    }

    async fn touch_sessions(&self, seen: &[(String, DateTime<Utc>)]) -> StoreResult<()> {
        let pairs: Vec<(&str, i64)> = seen
            .iter()
            .map(|(id, at)| (id.as_str(), at.timestamp_millis()))
            .collect();
        let args = vec![serde_json::to_string(&pairs).unwrap_or_default().into()];
        self.write(
            "UPDATE sessions SET last_seen_at = MAX(sessions.last_seen_at, s.at)
             FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS at
                   FROM json_each(?1)) AS s
             WHERE sessions.id = s.id AND sessions.revoked_at IS NULL",
            args,
        )
        .await
    }

    async fn sessions(&self, user: UserId, now: DateTime<Utc>) -> StoreResult<Vec<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions
             WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ?
             ORDER BY last_seen_at DESC, created_at DESC, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.0)
            .bind(now.timestamp_millis())
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(session_at)
            .collect::<Result<_, _>>()
            .map_err(classify)
    }

    async fn revoke_sessions(
        &self,
        user: UserId,
        id: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = ?1
             WHERE user_id = ?2 AND revoked_at IS NULL AND (?3 IS NULL OR id = ?3) RETURNING id",
        )
        .bind(now.timestamp_millis())
        .bind(user.0)
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)
    }

    async fn spend_oauth_flow(&self, id: &str, expires_at: DateTime<Utc>) -> StoreResult<()> {
        match shared::spend_flow(&self.pool, id, expires_at.timestamp_millis()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(StoreError::Conflict("oauth flow")),
            Err(e) => Err(classify(e)),
        }
    }

    async fn purge(
        &self,
        keys_before: DateTime<Utc>,
        sessions_before: DateTime<Utc>,
        flows_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let keys = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(keys_before.timestamp_millis())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        let sessions = sqlx::query(
            "DELETE FROM sessions WHERE expires_at < ?1 OR (revoked_at IS NOT NULL AND revoked_at < ?1)",
        )
        .bind(sessions_before.timestamp_millis())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        let flows = shared::purge_flows(&self.pool, flows_before.timestamp_millis())
            .await
            .map_err(classify)?;
        Ok(keys.rows_affected() + sessions.rows_affected() + flows)
    }
}
