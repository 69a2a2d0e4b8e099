//! Domain types with no I/O: ids, parsed inputs, the commit-order cursor and bus events.

mod attachment;
mod content;
mod cursor;
mod event;
mod group;
mod ids;
mod lifecycle;
mod net;
mod password;
mod profile;
mod search;
mod session;
mod signal;
mod text;
mod username;

pub use attachment::{
    Attachment, Kind as FileKind, UploadId, clean_name, declared_type_lies, jpeg_orientation,
    name_lies, strip_metadata,
};
pub use content::{ContentError, MessageContent};
pub use cursor::{Cursor, CursorError};
pub use event::{Delivered, Event, EventKind, LogEntry, Recipient};
pub use group::{
    Change, ChangeRequest, ConversationEvent, ConversationKind, History, Member, Op, Plan, Refusal,
    Role, RosterEntry, Title, TitleError, plan, plan_create,
};
pub use ids::{ConversationId, MessageId, UserId};

pub use lifecycle::{
    Authority, Emoji, EmojiError, MAX_DISTINCT_REACTIONS, MAX_REACTIONS_PER_PERSON, MessageOp,
    MessageWrite, Quote, Reaction, Target, plan_close, plan_message,
};
pub use net::{TrustedProxies, limit_key};
pub use password::{Password, PasswordError};
pub use profile::{DisplayName, DisplayNameError, avatar_path};
pub use search::{QueryError, SearchQuery, Segment, index_text, snippet};
pub use session::Session;
pub use signal::{PresenceChange, PresenceState, PresenceSync, ReportFiled, Typing};
pub use text::TextError;
pub use username::{Username, UsernameError};

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub avatar_url: Option<String>,
    /// What the person chose to be called; `None` shows the username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The account was deleted: shown as "Deleted account".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// A stored message. Its id is also its position in commit order (see [`Cursor`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub sender_id: UserId,
    /// Empty for a tombstone.
    pub content: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub edited_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub deleted_at: Option<DateTime<Utc>>,
    /// The message this one answers (same conversation).
    #[serde(default)]
    pub reply_to: Option<MessageId>,
    /// `reply_to` as the viewer may see it now; reads and the send path fill it in.
    #[serde(default)]
    pub quote: Option<Box<Quote>>,
    /// Per emoji, in the order they were first used; `mine` is the viewer's.
    #[serde(default)]
    pub reactions: Vec<Reaction>,
    /// Files sent with it, in the order the sender gave them; empty once deleted.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

/// A conversation as one participant sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationView {
    pub id: ConversationId,
    pub kind: ConversationKind,
    pub title: Option<String>,
    /// The other member of a direct conversation; `None` for a group.
    pub other_participant: Option<User>,
    pub last_message: Option<Message>,
    pub has_unread_messages: bool,
    /// Messages from others after the viewer's read marker, exactly.
    pub unread_count: i64,
    pub member_count: i64,
    pub role: Role,
    pub history: History,
    /// The viewer muted it: no notifications, on any device.
    pub muted: bool,
    /// How many other members have read the last message (receipts shared both ways).
    pub last_message_read_by: i64,
    /// Where each other member has read to (`READ_POSITIONS_MAX` members at most; `None`
    /// in lists and in larger groups, where only `last_message_read_by` is given).
    pub read_positions: Option<Vec<(UserId, MessageId)>>,
    /// How many other members have the last message on a device (or have read it).
    pub last_message_delivered_to: i64,
    /// How far each other member has the conversation on a device; like `read_positions`,
    /// only for one conversation of up to `READ_POSITIONS_MAX` members.
    pub delivered_positions: Option<Vec<(UserId, MessageId)>>,
}

/// A conversation lists each member's read position up to this size; larger groups get only
/// "seen by N" (Slack shows names up to a similar handful, Zulip a count).
pub const READ_POSITIONS_MAX: i64 = 20;
