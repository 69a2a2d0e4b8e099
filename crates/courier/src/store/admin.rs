//! `trait AdminStore`: what the server's admin sees and changes beyond ordinary accounts:
//! every person (with search), disabled accounts, admin grants, and reported messages. Every
//! `Store` is also an `AdminStore`; the twins live in `sqlite/admin.rs` and `postgres/admin.rs`.

use super::StoreResult;
use crate::model::{ConversationId, MessageId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A person as the admin sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUser {
    pub id: UserId,
    pub username: String,
    pub created_at: DateTime<Utc>,
    pub is_admin: bool,
    pub deleted: bool,
    pub disabled_at: Option<DateTime<Utc>>,
}

/// A reported message, with enough of it for the admin to decide without opening it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub id: i64,
    pub reporter: UserId,
    pub reporter_name: String,
    pub conversation: ConversationId,
    pub message: MessageId,
    pub sender: UserId,
    pub sender_name: String,
    /// The message text now ('' once deleted).
    pub content: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub resolved_by: Option<UserId>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A person's own records, for a data-protection export: (conversation, kind, title, role),
/// (conversation, message, content, created, edited, deleted) and (message, emoji, created),
/// times in milliseconds since the epoch.
/// (conversation, message, content, created, edited, deleted).
pub type SentMessageRow = (i64, i64, String, i64, Option<i64>, Option<i64>);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportRows {
    pub memberships: Vec<(i64, String, Option<String>, String)>,
    pub messages: Vec<SentMessageRow>,
    pub reactions: Vec<(i64, String, i64)>,
}

#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Up to `limit` people whose username contains `search` (any case), by username.
    async fn admin_users(&self, search: Option<&str>, limit: u32) -> StoreResult<Vec<AdminUser>>;
    /// `NotFound` when the user does not exist.
    async fn admin_user(&self, user: UserId) -> StoreResult<AdminUser>;
    /// Disables (`Some(now)`) or enables (`None`) an account; `NotFound` when it does not exist.
    async fn set_disabled(&self, user: UserId, at: Option<DateTime<Utc>>) -> StoreResult<()>;
    /// Grants or revokes the server admin role; `NotFound` when the user does not exist.
    async fn set_admin(&self, user: UserId, admin: bool) -> StoreResult<()>;

    /// Files a report; `Conflict("report")` when the reporter has an open one on the message.
    async fn create_report(
        &self,
        reporter: UserId,
        conversation: ConversationId,
        message: MessageId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<i64>;
    /// Newest first: open ones only, or all of them.
    async fn reports(&self, open_only: bool, limit: u32) -> StoreResult<Vec<Report>>;
    /// Everything `user` sent, reacted and belongs to, oldest first.
    async fn export_rows(&self, user: UserId) -> StoreResult<ExportRows>;
    /// Resolves an open report; `NotFound` when it is unknown or already resolved.
    async fn resolve_report(&self, id: i64, by: UserId, now: DateTime<Utc>) -> StoreResult<()>;
}
