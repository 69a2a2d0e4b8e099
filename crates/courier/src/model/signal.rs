//! Ephemeral signals: typing and presence. They ride the bus only, carry no log position and
//! are never stored or replayed (see `service::presence` and `service::signals`).

use super::{ConversationId, UserId};
use chrono::{DateTime, Utc};

/// "I'm typing" (or, `typing: false`, "I stopped": they sent a message).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Typing {
    pub conversation_id: ConversationId,
    pub user: UserId,
    pub username: String,
    pub typing: bool,
    /// The indicator lapses this long after the call unless it is renewed.
    pub expires_in_ms: u64,
}

/// What others see of a person.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum PresenceState {
    Offline,
    /// Connected, but their client says the tab is hidden or idle.
    Away,
    Online,
}

impl PresenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Away => "away",
            Self::Offline => "offline",
        }
    }

    /// What a client may report about itself: `online` or `away`.
    pub fn parse_reported(raw: &str) -> Option<Self> {
        match raw {
            "online" => Some(Self::Online),
            "away" => Some(Self::Away),
            _ => None,
        }
    }
}

/// A person's presence changed; `last_seen_at` only for offline, and only if they show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PresenceChange {
    pub user: UserId,
    pub state: PresenceState,
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// How nodes tell each other who is connected to them (see `service::presence`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PresenceSync {
    /// A node's connected users: all of them (`full`, also its heartbeat) or those that
    /// changed. `gone` users left the node at the given time (Unix ms). `hello`: a node that
    /// just started asks the others for their full lists.
    Users {
        node: u64,
        full: bool,
        hello: bool,
        online: Vec<UserId>,
        away: Vec<UserId>,
        gone: Vec<(UserId, i64)>,
    },
    /// A session's client reported itself away (or back); the node holding its streams applies it.
    Away {
        user: UserId,
        session: String,
        away: bool,
    },
}

/// A message was reported: for the server admins' open streams, so the moderation page and
/// its count update live. The report itself is in the store (`/api/admin/reports`); this only
/// makes it live (see `service::admin`). It carries what the report list shows, no more.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportFiled {
    pub id: i64,
    pub reporter: String,
    pub conversation_id: ConversationId,
    pub message_id: super::MessageId,
    pub sender: UserId,
    pub sender_name: String,
    pub content: String,
    pub reason: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}
