//! camelCase wire shapes of the seed API: string ids, RFC 3339 UTC times with milliseconds.

use crate::model::{ConversationView, Message, User, UserId};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

pub fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserJson {
    pub id: String,
    pub username: String,
    #[serde(rename = "avatarURL")]
    pub avatar_url: Option<String>,
}

impl From<User> for UserJson {
    fn from(u: User) -> Self {
        Self {
            id: u.id.to_string(),
            username: u.username,
            avatar_url: u.avatar_url,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageJson<'a> {
    pub id: String,
    pub content: &'a str,
    pub conversation_id: String,
    pub created_at: String,
    pub mine: bool,
}

impl<'a> MessageJson<'a> {
    pub fn new(m: &'a Message, viewer: UserId) -> Self {
        Self::with_mine(m, m.sender_id == viewer)
    }

    pub fn with_mine(m: &'a Message, mine: bool) -> Self {
        Self {
            id: m.id.to_string(),
            content: &m.content,
            conversation_id: m.conversation_id.to_string(),
            created_at: time(&m.created_at),
            mine,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationJson<'a> {
    pub id: String,
    pub other_participant: UserJson,
    pub last_message: Option<MessageJson<'a>>,
    pub has_unread_messages: bool,
}

impl<'a> ConversationJson<'a> {
    pub fn new(c: &'a ConversationView, viewer: UserId) -> Self {
        Self {
            id: c.id.to_string(),
            other_participant: c.other_participant.clone().into(),
            last_message: c.last_message.as_ref().map(|m| MessageJson::new(m, viewer)),
            has_unread_messages: c.has_unread_messages,
        }
    }
}
