//! `PresenceStore` for `PgStore`; twin of `sqlite/presence.rs`. Id lists are bound as one
//! `BIGINT[]` and matched with `= ANY($n)`.

use super::{PgStore, classify};
use crate::model::{ConversationId, User, UserId};
use crate::store::presence::{
    LastSeen, MEMBER_USERS, SET_SHOW_LAST_SEEN, last_seen_from, user_from,
};
use crate::store::{PresenceStore, StoreError, StoreResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

fn id_list(users: &[UserId]) -> Vec<i64> {
    users.iter().map(|u| u.0).collect()
}

#[async_trait]
impl PresenceStore for PgStore {
    async fn member_users(
        &self,
        viewer: UserId,
        conversation: ConversationId,
    ) -> StoreResult<Vec<User>> {
        let rows: Vec<crate::store::log::UserRow> = sqlx::query_as(MEMBER_USERS)
            .bind(conversation.0)
            .bind(viewer.0)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        if rows.is_empty() {
            return Err(StoreError::NotFound);
        }
        Ok(rows.into_iter().map(user_from).collect())
    }

    async fn contacts(&self, users: &[UserId]) -> StoreResult<Vec<(UserId, UserId)>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT DISTINCT a.user_id, b.user_id FROM participants a
             JOIN participants b ON b.conversation_id = a.conversation_id AND b.user_id <> a.user_id
             WHERE a.user_id = ANY($1)",
        )
        .bind(id_list(users))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|(a, b)| (UserId(a), UserId(b)))
            .collect())
    }

    async fn touch_last_seen(&self, seen: &[(UserId, DateTime<Utc>)]) -> StoreResult<()> {
        let ids: Vec<i64> = seen.iter().map(|(u, _)| u.0).collect();
        let times: Vec<i64> = seen.iter().map(|(_, at)| at.timestamp_millis()).collect();
        sqlx::query(
            "UPDATE users SET last_seen_at = GREATEST(COALESCE(users.last_seen_at, 0), s.at)
             FROM unnest($1::BIGINT[], $2::BIGINT[]) AS s (id, at)
             WHERE users.id = s.id",
        )
        .bind(ids)
        .bind(times)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn last_seen(&self, users: &[UserId]) -> StoreResult<Vec<LastSeen>> {
        let rows: Vec<(i64, Option<i64>, i64)> =
            sqlx::query_as("SELECT id, last_seen_at, show_last_seen FROM users WHERE id = ANY($1)")
                .bind(id_list(users))
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        Ok(rows.into_iter().map(last_seen_from).collect())
    }

    async fn set_show_last_seen(&self, user: UserId, show: bool) -> StoreResult<()> {
        let done = sqlx::query(SET_SHOW_LAST_SEEN)
            .bind(user.0)
            .bind(i64::from(show))
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
