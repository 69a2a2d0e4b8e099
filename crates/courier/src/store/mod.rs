//! The only way to reach data: `trait Store`, its errors, and the backends.
//!
//! Every implementation hands out positions in commit order *per user*: when an entry visible
//! to user U at position `p` is visible, every entry visible to U below `p` is visible too.
//! Realtime resume depends on it. (SQLite's one writer gives whole-store commit order;
//! PostgreSQL orders only appends whose audiences meet, see `postgres`.)

mod accounts;
mod admin;
pub mod files;
mod lifecycle;
mod log;
mod people;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod presence;
pub mod search;
pub mod sqlite;
pub mod uploads;

use crate::model::{
    ChangeRequest, ConversationEvent, ConversationId, ConversationView, LogEntry, Member, Message,
    MessageContent, MessageId, Recipient, Refusal, User, UserId, Username,
};
use async_trait::async_trait;

pub use accounts::{AccountStore, NewCredential};
pub use admin::{AdminStore, AdminUser, ExportRows, Report};
pub use files::{FileStore, TempUpload};
pub use people::{AccountFlags, Admission, Invite, PeopleStore};
#[cfg(feature = "postgres")]
pub use postgres::{PgOptions, PgStore};
pub use presence::{LastSeen, PresenceStore};
pub use search::{SearchHit, SearchRequest, SearchStore};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use uploads::{Claimed, MAX_ATTACHMENTS, NewUpload, StoredUpload, UploadStore};

/// Rows per bookkeeping statement (`touch_sessions`, `touch_last_seen`). A send that arrives
/// while one runs waits for it: at 256 rows they took 1–10 ms on the 2-core VM, about the
/// whole of a message p99; at 64 a fraction of a millisecond.
pub const TOUCH_CHUNK: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist, or the caller may not see it.
    #[error("not found")]
    NotFound,
    /// The same idempotency key was used for a different conversation.
    #[error("idempotency key reused for another conversation")]
    KeyReused,
    /// A unique value is taken (the name says which: "username", "invite", "identity").
    #[error("{0} already taken")]
    Conflict(&'static str),
    /// A group change that the rules refuse; nothing was written.
    #[error(transparent)]
    Refused(Refusal),
    /// The database cannot be reached right now; the request may be retried.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("database error")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A message to append. `idempotency_key` makes a retried send return the first result.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub conversation: ConversationId,
    pub sender: UserId,
    pub content: MessageContent,
    pub idempotency_key: Option<String>,
    /// A message of the same conversation that this one answers (checked by the caller).
    pub reply_to: Option<MessageId>,
    /// The token under which the sender claimed this message's uploads (see `uploads`).
    pub attachment_claim: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Appended {
    pub message: Message,
    /// Every participant (sender included) with their previous inbox position.
    pub recipients: Vec<Recipient>,
    /// True when an idempotency key matched: nothing new was written, nothing to publish.
    pub replayed: bool,
}

/// A browser's push subscription (RFC 8030 endpoint, RFC 8291 keys, base64url).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    pub user: UserId,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
    /// Push "New message" instead of the text.
    pub hide_content: bool,
}

/// Messages of `sender` in `conversation` up to `message` just reached a device of `user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub conversation: ConversationId,
    pub sender: UserId,
    pub message: MessageId,
}

/// A committed change event and who receives it (the members at its position).
#[derive(Debug, Clone)]
pub struct Changed {
    pub event: ConversationEvent,
    pub recipients: Vec<Recipient>,
}

#[async_trait]
pub trait Store:
    AccountStore
    + AdminStore
    + PeopleStore
    + PresenceStore
    + SearchStore
    + UploadStore
    + Send
    + Sync
    + 'static
{
    /// A random id fixed when the database was created; it scopes stream cursors.
    fn instance_id(&self) -> &str;
    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> StoreResult<()>;

    /// Finds a user by name, ignoring case, or creates one.
    async fn find_or_create_user(&self, username: &Username) -> StoreResult<User>;
    async fn user(&self, id: UserId) -> StoreResult<User>;
    async fn user_by_username(&self, username: &Username) -> StoreResult<User>;
    /// Up to `limit` usernames starting with `prefix` (any case), `exclude` left out, sorted.
    async fn search_usernames(
        &self,
        prefix: &str,
        exclude: UserId,
        limit: u32,
    ) -> StoreResult<Vec<String>>;

    /// The pair's 1:1 conversation, created if missing; `true` when it was created now.
    async fn find_or_create_direct(
        &self,
        a: UserId,
        b: UserId,
    ) -> StoreResult<(ConversationId, bool)>;
    /// `NotFound` unless `viewer` participates.
    async fn conversation(
        &self,
        viewer: UserId,
        id: ConversationId,
    ) -> StoreResult<ConversationView>;
    /// Conversations with a message, newest last message first, paged past `before`'s last message.
    async fn conversations(
        &self,
        viewer: UserId,
        before: Option<ConversationId>,
        limit: u32,
    ) -> StoreResult<Vec<ConversationView>>;

    /// Appends a message as one commit; `NotFound` unless the sender participates.
    async fn append_message(&self, new: NewMessage) -> StoreResult<Appended>;
    /// Newest first, ids below `before`, quotes and reactions filled in; `NotFound` unless
    /// `viewer` participates.
    async fn messages(
        &self,
        viewer: UserId,
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<Message>>;
    /// Stores `target` for its user, replacing any earlier owner of the same endpoint.
    async fn save_push_subscription(&self, target: &PushTarget) -> StoreResult<()>;
    /// Removes one of the user's subscriptions; `NotFound` if they have no such endpoint.
    async fn delete_push_subscription(&self, user: UserId, endpoint: &str) -> StoreResult<()>;
    /// Forgets an endpoint the push service says is gone.
    async fn drop_push_endpoint(&self, endpoint: &str) -> StoreResult<()>;
    /// Every user with at least one push subscription (the push service's directory).
    async fn push_subscribers(&self) -> StoreResult<Vec<UserId>>;
    /// The subscriptions of the conversation's members other than `sender` who have not muted it.
    async fn push_targets(
        &self,
        conversation: ConversationId,
        sender: UserId,
    ) -> StoreResult<Vec<PushTarget>>;
    /// Mutes or unmutes the conversation for the viewer; `NotFound` unless they are a member.
    async fn set_muted(
        &self,
        viewer: UserId,
        conversation: ConversationId,
        muted: bool,
    ) -> StoreResult<()>;
    /// Records that `device` of `user` has received their stream up to `position` (clamped to
    /// their inbox head). When that moves the person's delivered position, returns what it
    /// newly delivered: per conversation and sender, the newest such message (senders other
    /// than the user only).
    async fn acknowledge(
        &self,
        user: UserId,
        device: &str,
        position: MessageId,
    ) -> StoreResult<Vec<Delivery>>;
    /// Whether the user shares read receipts (and so sees others').
    async fn read_receipts(&self, user: UserId) -> StoreResult<bool>;
    async fn set_read_receipts(&self, user: UserId, on: bool) -> StoreResult<()>;
    /// The viewer's read marker, the conversation's newest message, and whether the viewer
    /// shares read receipts; `NotFound` unless they are a member.
    async fn read_marker(
        &self,
        viewer: UserId,
        conversation: ConversationId,
    ) -> StoreResult<(MessageId, MessageId, bool)>;
    /// Moves the viewer's read marker up to `to` (never backwards) without a log entry: the
    /// read of someone who does not share receipts is nobody's business, on any stream.
    async fn advance_read_marker(
        &self,
        viewer: UserId,
        conversation: ConversationId,
        to: MessageId,
    ) -> StoreResult<()>;
    /// Moves the viewer's read marker to the conversation's newest message (never backwards).
    /// For someone who shares receipts the move is a `read` entry of the log; `None` when
    /// there is nothing to publish. A mark that moves nothing is a plain read, no write.
    async fn mark_read(
        &self,
        viewer: UserId,
        conversation: ConversationId,
    ) -> StoreResult<Option<Changed>> {
        let (marker, newest, shares) = self.read_marker(viewer, conversation).await?;
        if newest <= marker {
            return Ok(None);
        }
        if shares {
            let actor = self.user(viewer).await?;
            let receipt = self
                .apply_change(ChangeRequest::Read {
                    actor,
                    conversation,
                })
                .await?;
            if receipt.is_some() {
                return Ok(receipt);
            }
        }
        // Not shared (or turned off meanwhile): move the marker quietly.
        self.advance_read_marker(viewer, conversation, newest)
            .await?;
        Ok(None)
    }

    /// The newest position in the user's inbox (every conversation they are in), 0 if none.
    async fn inbox_head(&self, user: UserId) -> StoreResult<MessageId>;
    /// The log entries visible to the user after `after`, oldest first, at most `limit`.
    async fn inbox_after(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> StoreResult<Vec<LogEntry>>;
    /// The newest position in the whole store, 0 if none.
    async fn head(&self) -> StoreResult<MessageId>;

    /// Creates a group, changes one, or edits, deletes or reacts to a message, as one entry of
    /// the log. `NotFound` unless the actor is a member (and can see the message); `Refused`
    /// when the rules say no; `None` when it would change nothing, so nothing was written.
    async fn apply_change(&self, request: ChangeRequest) -> StoreResult<Option<Changed>>;
    /// One message as the viewer sees it (quote and reactions filled in); `NotFound` unless
    /// they are a member who may read it.
    async fn message(
        &self,
        viewer: UserId,
        conversation: ConversationId,
        id: MessageId,
    ) -> StoreResult<Message>;
    /// Who reacted to a message with which emoji, oldest first, at most `limit`.
    async fn reactors(
        &self,
        viewer: UserId,
        conversation: ConversationId,
        id: MessageId,
        limit: u32,
    ) -> StoreResult<Vec<(String, User)>>;
    /// The current members of a conversation, in user id order after `after`;
    /// `NotFound` unless `viewer` is one of them.
    async fn members(
        &self,
        viewer: UserId,
        conversation: ConversationId,
        after: Option<UserId>,
        limit: u32,
    ) -> StoreResult<Vec<Member>>;
}

/// Records one group commit for the `courier_store_commit_*` metrics (see `app::metrics`).
pub(crate) fn record_commit(store: &'static str, started: std::time::Instant, size: usize) {
    metrics::histogram!("courier_store_commit_duration_seconds", "store" => store)
        .record(started.elapsed());
    metrics::histogram!("courier_store_commit_group_size", "store" => store).record(size as f64);
}
