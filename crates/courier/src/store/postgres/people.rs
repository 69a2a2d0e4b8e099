//! `PeopleStore` for `PgStore`; twin of `sqlite/people.rs`.

use super::{PgStore, classify, now_ms};
use crate::model::{ConversationId, MessageId, UserId};
use crate::store::people::shared;
use crate::store::{AccountFlags, Invite, PeopleStore, StoreError, StoreResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

#[async_trait]
impl PeopleStore for PgStore {
    async fn setup_done(&self) -> StoreResult<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM server_setup)")
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }

    async fn account_flags(&self, user: UserId) -> StoreResult<AccountFlags> {
        let row = sqlx::query(
            "SELECT is_admin, deleted_at IS NOT NULL,
                    EXISTS (SELECT 1 FROM passwords WHERE user_id = users.id)
             FROM users WHERE id = $1",
        )
        .bind(user.0)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        Ok(AccountFlags {
            is_admin: row.try_get(0).map_err(classify)?,
            deleted: row.try_get(1).map_err(classify)?,
            has_password: row.try_get(2).map_err(classify)?,
        })
    }

    async fn create_invite(
        &self,
        created_by: UserId,
        code: &str,
        expires_at: DateTime<Utc>,
        max_uses: i64,
    ) -> StoreResult<Invite> {
        shared::create_invite(&self.pool, created_by, code, now_ms(), expires_at, max_uses)
            .await
            .map_err(classify)
    }

    async fn invites(&self, created_by: Option<UserId>) -> StoreResult<Vec<Invite>> {
        shared::invites(&self.pool, created_by)
            .await
            .map_err(classify)
    }

    async fn invite(&self, code: &str) -> StoreResult<Invite> {
        shared::invite(&self.pool, code).await.map_err(classify)
    }

    async fn revoke_invite(
        &self,
        id: i64,
        created_by: Option<UserId>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        shared::revoke_invite(&self.pool, id, created_by, now)
            .await
            .map_err(classify)?
    }

    async fn password_hash_of(&self, user: UserId) -> StoreResult<Option<String>> {
        shared::password_hash_of(&self.pool, user)
            .await
            .map_err(classify)
    }

    async fn set_password(&self, user: UserId, hash: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO passwords (user_id, hash, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO UPDATE SET hash = $2, updated_at = $3",
        )
        .bind(user.0)
        .bind(hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn create_password_link(
        &self,
        user: UserId,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO password_links (token_hash, user_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(user.0)
        .bind(now_ms())
        .bind(expires_at.timestamp_millis())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn spend_password_link(
        &self,
        token_hash: &str,
        hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<UserId> {
        let now = now.timestamp_millis();
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let user: Option<i64> = sqlx::query_scalar(
            "UPDATE password_links SET used_at = $1
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1
               AND user_id IN (SELECT id FROM users WHERE deleted_at IS NULL)
             RETURNING user_id",
        )
        .bind(now)
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        let user = user.ok_or(StoreError::NotFound)?;
        sqlx::query(
            "INSERT INTO passwords (user_id, hash, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO UPDATE SET hash = $2, updated_at = $3",
        )
        .bind(user)
        .bind(hash)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(UserId(user))
    }

    async fn set_email(&self, user: UserId, email: Option<&str>) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET email = $1 WHERE id = $2")
            .bind(email)
            .bind(user.0)
            .execute(&self.pool)
            .await
            .map_err(|e| match classify(e) {
                StoreError::Other(e) if e.to_string().to_lowercase().contains("unique") => {
                    StoreError::Conflict("email")
                }
                e => e,
            })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<(UserId, String)>> {
        shared::user_by_email(&self.pool, email)
            .await
            .map_err(classify)
    }

    async fn email_of(&self, user: UserId) -> StoreResult<Option<String>> {
        shared::email_of(&self.pool, user).await.map_err(classify)
    }

    async fn delete_account(
        &self,
        user: UserId,
        remove_content: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let now = now.timestamp_millis();
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let marked = sqlx::query(
            "UPDATE users SET deleted_at = $1, is_admin = FALSE, avatar_url = NULL, picture = NULL,
                 display_name = NULL, email = NULL
             WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(user.0)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if marked.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        for sql in [
            "DELETE FROM passwords WHERE user_id = $1",
            "DELETE FROM identities WHERE user_id = $1",
            "DELETE FROM push_subscriptions WHERE user_id = $1",
            "DELETE FROM password_links WHERE user_id = $1",
        ] {
            sqlx::query(sql)
                .bind(user.0)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        if remove_content {
            sqlx::query(
                "UPDATE messages SET content = '', deleted_at = $1
                 WHERE sender_id = $2 AND deleted_at IS NULL",
            )
            .bind(now)
            .bind(user.0)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(())
    }

    async fn set_display_name(&self, user: UserId, name: Option<&str>) -> StoreResult<()> {
        shared::set_display_name(&self.pool, user, name)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn set_picture(&self, user: UserId, url: Option<&str>) -> StoreResult<()> {
        shared::set_picture(&self.pool, user, url)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn conversations_of(&self, user: UserId) -> StoreResult<Vec<ConversationId>> {
        shared::conversations_of(&self.pool, user)
            .await
            .map_err(classify)
    }

    async fn release_usernames(&self, before: DateTime<Utc>) -> StoreResult<()> {
        shared::release_usernames(&self.pool, before.timestamp_millis())
            .await
            .map_err(classify)
    }

    async fn link_identity(
        &self,
        user: UserId,
        provider: &str,
        subject: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        shared::link_identity(&self.pool, user, provider, subject, now)
            .await
            .map_err(classify)?
    }

    async fn linked_providers(&self, user: UserId) -> StoreResult<Vec<String>> {
        shared::linked_providers(&self.pool, user)
            .await
            .map_err(classify)
    }

    async fn picture_in_use(&self, url: &str) -> StoreResult<bool> {
        shared::picture_in_use(&self.pool, url)
            .await
            .map_err(classify)
    }

    async fn live_messages_of(
        &self,
        user: UserId,
    ) -> StoreResult<Vec<(ConversationId, MessageId)>> {
        shared::live_messages_of(&self.pool, user)
            .await
            .map_err(classify)
    }
}
