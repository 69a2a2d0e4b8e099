//! Domain types with no I/O: ids, parsed inputs, the commit-order cursor and bus events.

mod content;
mod cursor;
mod event;
mod group;
mod ids;
mod net;
mod password;
mod session;
mod signal;
mod text;
mod username;

pub use content::{ContentError, MessageContent};
pub use cursor::{Cursor, CursorError};
pub use event::{Event, EventKind, LogEntry, Recipient};
pub use group::{
    Change, ChangeRequest, ConversationEvent, ConversationKind, History, Member, Op, Plan, Refusal,
    Role, RosterEntry, Title, TitleError, plan, plan_create,
};
pub use ids::{ConversationId, MessageId, UserId};
pub use net::{TrustedProxies, limit_key};
pub use password::{Password, PasswordError};
pub use session::Session;
pub use signal::{PresenceChange, PresenceState, PresenceSync, Typing};
pub use text::TextError;
pub use username::{Username, UsernameError};

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub avatar_url: Option<String>,
}

/// A stored message. Its id is also its position in commit order (see [`Cursor`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub sender_id: UserId,
    pub content: String,
    pub created_at: DateTime<Utc>,
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
}
