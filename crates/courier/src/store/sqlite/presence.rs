//! `PresenceStore` for `SqliteStore`; twin of `postgres/presence.rs`. Id lists are bound as
//! one JSON array and read back with `json_each`.

use super::{SqliteStore, classify, encode};
use crate::model::{ConversationId, User, UserId};
use crate::store::presence::{LastSeen, SET_SHOW_LAST_SEEN, last_seen_from, user_from};
use crate::store::{PresenceStore, StoreError, StoreResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Arguments;
use sqlx::sqlite::SqliteArguments;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The members of conversations that `member_users` was asked about (typing calls ask once a
/// second per typist), so the check costs no read. Every write that changes who is in a
/// conversation, or what `member_users` shows of them, goes through this process (the
/// database lock keeps other processes out) and calls `invalidate` once it has committed.
/// A read that raced such a commit may have seen the old members: `fill` keeps its result
/// only if no invalidation happened since the read began.
#[derive(Default)]
pub(super) struct MemberCache {
    state: Mutex<MemberCacheState>,
}

#[derive(Default)]
struct MemberCacheState {
    generation: u64,
    conversations: HashMap<ConversationId, Arc<[User]>>,
}

/// Above this many conversations the cache starts again empty.
const MEMBER_CACHE_MAX: usize = 20_000;

impl MemberCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemberCacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached members, or the generation to pass to `fill` after reading them.
    fn get(&self, conversation: ConversationId) -> Result<Arc<[User]>, u64> {
        let state = self.lock();
        match state.conversations.get(&conversation) {
            Some(users) => Ok(users.clone()),
            None => Err(state.generation),
        }
    }

    fn fill(&self, conversation: ConversationId, users: Arc<[User]>, generation: u64) {
        let mut state = self.lock();
        if state.generation != generation || users.is_empty() {
            return;
        }
        if state.conversations.len() >= MEMBER_CACHE_MAX {
            state.conversations.clear();
        }
        state.conversations.insert(conversation, users);
    }

    /// After a commit that changed `conversation`'s members, or (`None`) what any member
    /// looks like.
    pub(super) fn invalidate(&self, conversation: Option<ConversationId>) {
        let mut state = self.lock();
        state.generation += 1;
        match conversation {
            Some(conversation) => {
                state.conversations.remove(&conversation);
            }
            None => state.conversations.clear(),
        }
    }
}

/// `member_users` as `viewer` may see it: `NotFound` unless they are a member.
fn member_view(users: &[User], viewer: UserId) -> StoreResult<Vec<User>> {
    if users.iter().any(|u| u.id == viewer) {
        Ok(users.to_vec())
    } else {
        Err(StoreError::NotFound)
    }
}

fn id_list(users: &[UserId]) -> String {
    serde_json::to_string(&users.iter().map(|u| u.0).collect::<Vec<_>>()).unwrap_or_default()
}

#[async_trait]
impl PresenceStore for SqliteStore {
    async fn member_users(
        &self,
        viewer: UserId,
        conversation: ConversationId,
    ) -> StoreResult<Vec<User>> {
        let generation = match self.members.get(conversation) {
            Ok(users) => return member_view(&users, viewer),
            Err(generation) => generation,
        };
        let rows: Vec<crate::store::log::UserRow> = sqlx::query_as(
            "SELECT u.id, u.username, COALESCE(u.picture, u.avatar_url), u.display_name, u.deleted_at FROM participants p
             JOIN users u ON u.id = p.user_id WHERE p.conversation_id = ?",
        )
        .bind(conversation.0)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let users: Arc<[User]> = rows.into_iter().map(user_from).collect();
        self.members.fill(conversation, users.clone(), generation);
        member_view(&users, viewer)
    }

    async fn contacts(&self, users: &[UserId]) -> StoreResult<Vec<(UserId, UserId)>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT DISTINCT a.user_id, b.user_id FROM participants a
             JOIN participants b ON b.conversation_id = a.conversation_id AND b.user_id <> a.user_id
             WHERE a.user_id IN (SELECT value FROM json_each(?1))",
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
        let pairs: Vec<(i64, i64)> = seen
            .iter()
            .map(|(u, at)| (u.0, at.timestamp_millis()))
            .collect();
        let mut args = SqliteArguments::default();
        args.add(serde_json::to_string(&pairs).unwrap_or_default())
            .map_err(encode)?;
        // On the writer's connection, like every write that can happen under load.
        self.write(
            "UPDATE users SET last_seen_at = MAX(COALESCE(users.last_seen_at, 0), s.at)
             FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS at
                   FROM json_each(?1)) AS s
             WHERE users.id = s.id",
            args,
        )
        .await
    }

    async fn last_seen(&self, users: &[UserId]) -> StoreResult<Vec<LastSeen>> {
        let rows: Vec<(i64, Option<i64>, i64)> = sqlx::query_as(
            "SELECT id, last_seen_at, show_last_seen FROM users
             WHERE id IN (SELECT value FROM json_each(?1))",
        )
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
