//! What travels on the bus: a committed message and, per recipient, the link that lets a
//! stream prove it has missed nothing.

use super::{Message, MessageId, UserId};
use bytes::Bytes;
use std::sync::OnceLock;

/// `prev` is the recipient's previous inbox position at commit time. A stream that has sent
/// everything up to `last` may deliver this event directly iff `prev <= last`; otherwise a
/// message it never saw lies in between, and it reads the gap from the store first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recipient {
    pub user: UserId,
    pub prev: MessageId,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub message: Message,
    pub recipients: Vec<Recipient>,
    /// Wire frames, encoded once per event and shared by every stream: [for others, for the sender].
    #[serde(skip)]
    frames: [OnceLock<Bytes>; 2],
}

impl Event {
    pub fn new(message: Message, recipients: Vec<Recipient>) -> Self {
        Self {
            message,
            recipients,
            frames: Default::default(),
        }
    }

    pub fn recipient(&self, user: UserId) -> Option<&Recipient> {
        self.recipients.iter().find(|r| r.user == user)
    }

    /// The encoded frame for a viewer, built by `encode` the first time it is asked for.
    pub fn frame(&self, mine: bool, encode: impl FnOnce() -> Bytes) -> Bytes {
        self.frames[usize::from(mine)].get_or_init(encode).clone()
    }
}
