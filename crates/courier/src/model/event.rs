//! What travels on the bus: a committed entry of the log, a message or a conversation change
//! (with, per recipient, the link that lets a stream prove it missed nothing), or the news
//! that some of a user's sessions were revoked; or an ephemeral signal (typing, presence),
//! which has no position and is never replayed.

use super::{
    ConversationEvent, ConversationId, Message, MessageId, PresenceChange, PresenceSync,
    ReportFiled, Typing, UserId,
};

/// `prev` is the recipient's previous inbox position at commit time. A stream that has sent
/// everything up to `last` may deliver this event directly iff `prev <= last`; otherwise a
/// message it never saw lies in between, and it reads the gap from the store first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recipient {
    pub user: UserId,
    pub prev: MessageId,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EventKind {
    Message(Message),
    Change(ConversationEvent),
    /// These sessions were signed out: their streams must end now.
    SessionsRevoked(Vec<String>),
    /// Ephemeral, for the recipients' streams: someone is typing.
    Typing(Typing),
    /// Ephemeral, for the recipients' streams: someone's presence changed.
    Presence(PresenceChange),
    /// Between nodes only (no recipients): who is connected where.
    PresenceSync(PresenceSync),
    /// Ephemeral, for a sender's streams: their messages reached a device of someone. The
    /// state is in the store (Conversation JSON); this only makes it live.
    Delivered(Delivered),
    /// Ephemeral, for the server admins' streams: a message was reported.
    Report(ReportFiled),
}

/// Messages of the recipient up to `message_id` in `conversation_id` reached a device of `user_id`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delivered {
    pub conversation_id: ConversationId,
    pub user_id: UserId,
    pub message_id: MessageId,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub kind: EventKind,
    #[serde(deserialize_with = "sorted_recipients")]
    pub recipients: Vec<Recipient>,
}

impl Event {
    pub fn new(message: Message, recipients: Vec<Recipient>) -> Self {
        Self {
            kind: EventKind::Message(message),
            recipients: by_user(recipients),
        }
    }

    pub fn change(change: ConversationEvent, recipients: Vec<Recipient>) -> Self {
        Self {
            kind: EventKind::Change(change),
            recipients: by_user(recipients),
        }
    }

    pub fn from_entry(entry: LogEntry) -> Self {
        match entry {
            LogEntry::Message(m) => Self::new(m, Vec::new()),
            LogEntry::Change(c) => Self::change(c, Vec::new()),
        }
    }

    /// Ephemeral news for the recipients' streams, sent without an `id:` and never stored.
    pub fn is_signal(&self) -> bool {
        matches!(
            self.kind,
            EventKind::Typing(_)
                | EventKind::Presence(_)
                | EventKind::Delivered(_)
                | EventKind::Report(_)
        )
    }

    /// The log position of a message or a change; `None` for what is not on the log.
    pub fn position(&self) -> Option<MessageId> {
        match &self.kind {
            EventKind::Message(m) => Some(m.id),
            EventKind::Change(c) => Some(c.position),
            EventKind::SessionsRevoked(_)
            | EventKind::Typing(_)
            | EventKind::Presence(_)
            | EventKind::PresenceSync(_)
            | EventKind::Delivered(_)
            | EventKind::Report(_) => None,
        }
    }

    pub fn sessions_revoked(user: UserId, sessions: Vec<String>) -> Self {
        Self {
            kind: EventKind::SessionsRevoked(sessions),
            recipients: vec![Recipient {
                user,
                prev: MessageId(0),
            }],
        }
    }

    /// An ephemeral signal (typing, presence) for `users`.
    pub fn signal(kind: EventKind, users: impl IntoIterator<Item = UserId>) -> Self {
        let recipients = users
            .into_iter()
            .map(|user| Recipient {
                user,
                prev: MessageId(0),
            })
            .collect();
        Self {
            kind,
            recipients: by_user(recipients),
        }
    }

    pub fn message(&self) -> Option<&Message> {
        match &self.kind {
            EventKind::Message(message) => Some(message),
            _ => None,
        }
    }

    pub fn recipient(&self, user: UserId) -> Option<&Recipient> {
        // Every stream of a K-member group looks itself up: O(log K), not O(K) each.
        self.recipients
            .binary_search_by_key(&user, |r| r.user)
            .ok()
            .map(|at| &self.recipients[at])
    }
}

fn sorted_recipients<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Recipient>, D::Error> {
    <Vec<Recipient> as serde::Deserialize>::deserialize(d).map(by_user)
}

/// Recipients sorted by user, for `Event::recipient`'s binary search.
fn by_user(mut recipients: Vec<Recipient>) -> Vec<Recipient> {
    if !recipients.is_sorted_by_key(|r| r.user) {
        recipients.sort_unstable_by_key(|r| r.user);
    }
    recipients
}

/// One entry of the durable log as the store replays it, in position order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntry {
    Message(Message),
    Change(ConversationEvent),
}

impl LogEntry {
    pub fn position(&self) -> MessageId {
        match self {
            Self::Message(m) => m.id,
            Self::Change(c) => c.position,
        }
    }
}
