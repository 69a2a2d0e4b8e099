//! `trait PresenceStore`: what typing and presence read and write. Every `Store` is also a
//! `PresenceStore`; the twins live beside each store (`sqlite/presence.rs`,
//! `postgres/presence.rs`) and differ only in how a list of ids is bound.

use super::StoreResult;
use crate::model::{ConversationId, User, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashSet;

/// When a person was last connected, and whether they let others see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSeen {
    pub user: UserId,
    pub at: Option<DateTime<Utc>>,
    pub shown: bool,
}

#[async_trait]
pub trait PresenceStore: Send + Sync {
    /// The current members of a conversation; `NotFound` unless `viewer` is one of them.
    async fn member_users(
        &self,
        viewer: UserId,
        conversation: ConversationId,
    ) -> StoreResult<Vec<User>>;
    /// `(user, contact)` for each of `users` and everyone who shares a conversation with them.
    async fn contacts(&self, users: &[UserId]) -> StoreResult<Vec<(UserId, UserId)>>;
    /// Moves each user's last-seen time to the time given, never backwards: one statement
    /// for the whole batch.
    async fn touch_last_seen(&self, seen: &[(UserId, DateTime<Utc>)]) -> StoreResult<()>;
    /// Last-seen times and settings of `users` (unknown ids are left out).
    async fn last_seen(&self, users: &[UserId]) -> StoreResult<Vec<LastSeen>>;
    /// Those of `users` who let others see their last-seen time (a store may answer from a
    /// cache: only the setting is asked for, not the time).
    async fn showing_last_seen(&self, users: &[UserId]) -> StoreResult<HashSet<UserId>> {
        let rows = self.last_seen(users).await?;
        Ok(rows.iter().filter(|r| r.shown).map(|r| r.user).collect())
    }
    /// Shows or hides the user's last-seen time from others.
    async fn set_show_last_seen(&self, user: UserId, show: bool) -> StoreResult<()>;
}

/// `$1` conversation, `$2` viewer: the members, or none when the viewer is not one.
pub const MEMBER_USERS: &str = "
    SELECT u.id, u.username, COALESCE(u.picture, u.avatar_url), u.display_name, u.deleted_at
    FROM participants p JOIN users u ON u.id = p.user_id
    WHERE p.conversation_id = $1
      AND EXISTS (SELECT 1 FROM participants WHERE conversation_id = $1 AND user_id = $2)";

pub const SET_SHOW_LAST_SEEN: &str = "UPDATE users SET show_last_seen = $2 WHERE id = $1";

pub use super::log::user_from;

pub fn last_seen_from((user, at, shown): (i64, Option<i64>, i64)) -> LastSeen {
    LastSeen {
        user: UserId(user),
        at: at.and_then(DateTime::from_timestamp_millis),
        shown: shown != 0,
    }
}
