//! camelCase wire shapes of the seed API: string ids, RFC 3339 UTC times with milliseconds.

use crate::model::{
    Change, ConversationEvent, ConversationView, Member, Message, MessageId, PresenceChange, Quote,
    Reaction, Typing, User, UserId,
};
use crate::service::PresenceView;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

pub fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserJson {
    pub id: String,
    pub username: String,
    #[serde(rename = "avatarURL")]
    pub avatar_url: Option<String>,
    /// Extension: what the person chose to be called; null shows the username.
    pub display_name: Option<String>,
    /// Extension, only when true: the account was deleted (show "Deleted account").
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Extension, where a view asks for it: `online`, `away` or `offline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub presence: Option<&'static str>,
    /// With `presence`: when an offline person was last connected, null if they hide it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub last_seen_at: Option<Option<String>>,
}

impl From<User> for UserJson {
    fn from(u: User) -> Self {
        Self {
            id: u.id.to_string(),
            username: u.username,
            avatar_url: u.avatar_url,
            display_name: u.display_name,
            deleted: u.deleted,
            presence: None,
            last_seen_at: None,
        }
    }
}

impl UserJson {
    pub fn with_presence(mut self, view: Option<&PresenceView>) -> Self {
        if let Some(view) = view {
            self.presence = Some(view.state.as_str());
            self.last_seen_at = Some(view.last_seen_at.as_ref().map(time));
        }
        self
    }
}

/// `event: typing`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypingJson<'a> {
    pub conversation_id: String,
    pub user_id: String,
    pub username: &'a str,
    pub typing: bool,
    pub expires_in_ms: u64,
}

impl<'a> TypingJson<'a> {
    pub fn new(t: &'a Typing) -> Self {
        Self {
            conversation_id: t.conversation_id.to_string(),
            user_id: t.user.to_string(),
            username: &t.username,
            typing: t.typing,
            expires_in_ms: t.expires_in_ms,
        }
    }
}

/// `event: presence`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresenceJson {
    pub user_id: String,
    pub state: &'static str,
    pub last_seen_at: Option<String>,
}

impl PresenceJson {
    pub fn new(p: &PresenceChange) -> Self {
        Self {
            user_id: p.user.to_string(),
            state: p.state.as_str(),
            last_seen_at: p.last_seen_at.as_ref().map(time),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageJson<'a> {
    pub id: String,
    pub content: &'a str,
    pub conversation_id: String,
    pub created_at: String,
    pub mine: bool,
    /// Extension: who sent it (groups show a name per message).
    pub sender_id: String,
    /// Extensions of the message lifecycle: when last edited, when deleted (then `content`
    /// is empty), the message it answers, and reactions per emoji.
    pub edited_at: Option<String>,
    pub deleted_at: Option<String>,
    pub reply_to: Option<QuoteJson>,
    #[schema(value_type = Vec<super::openapi::ReactionJson>)]
    pub reactions: &'a [Reaction],
    /// Extension: files sent with it (see `api::uploads`).
    pub attachments: Vec<super::uploads::AttachmentJson>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuoteJson {
    pub id: String,
    pub sender: UserJson,
    /// The first 100 characters; null when deleted or not yours to read.
    pub preview: Option<String>,
    pub deleted: bool,
}

impl From<&Quote> for QuoteJson {
    fn from(q: &Quote) -> Self {
        Self {
            id: q.id.to_string(),
            sender: q.sender.clone().into(),
            preview: q.preview.clone(),
            deleted: q.deleted,
        }
    }
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
            sender_id: m.sender_id.to_string(),
            edited_at: m.edited_at.as_ref().map(time),
            deleted_at: m.deleted_at.as_ref().map(time),
            reply_to: m.quote.as_deref().map(Into::into),
            reactions: &m.reactions,
            attachments: m.attachments.iter().map(Into::into).collect(),
        }
    }
}

/// The seed's conversation plus `kind`, `title`, `memberCount`, `role`, `history` and an exact
/// `unreadCount`. A group has no `otherParticipant` (null).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationJson<'a> {
    pub id: String,
    pub other_participant: Option<UserJson>,
    pub last_message: Option<MessageJson<'a>>,
    pub has_unread_messages: bool,
    pub unread_count: i64,
    pub kind: &'static str,
    pub title: Option<&'a str>,
    pub member_count: i64,
    pub role: &'static str,
    pub history: &'static str,
    pub muted: bool,
    /// Read receipts: how many other members have read the last message, and (one
    /// conversation, groups of up to 20) where each has read to. Receipts are mutual.
    pub last_message_read_by: i64,
    pub read_positions: Option<Vec<ReadPositionJson>>,
    /// Delivered receipts: how many other members have the last message on a device, and
    /// (like `readPositions`) how far each has the conversation.
    pub last_message_delivered_to: i64,
    pub delivered_positions: Option<Vec<ReadPositionJson>>,
}

fn positions(all: &[(UserId, MessageId)]) -> Vec<ReadPositionJson> {
    all.iter()
        .map(|(user, message)| ReadPositionJson {
            user_id: user.to_string(),
            message_id: message.to_string(),
        })
        .collect()
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadPositionJson {
    pub user_id: String,
    pub message_id: String,
}

impl<'a> ConversationJson<'a> {
    pub fn new(c: &'a ConversationView, viewer: UserId) -> Self {
        Self::with_presence(c, viewer, None)
    }

    /// With the other participant's presence (a direct conversation).
    pub fn with_presence(
        c: &'a ConversationView,
        viewer: UserId,
        presence: Option<&PresenceView>,
    ) -> Self {
        Self {
            id: c.id.to_string(),
            other_participant: c
                .other_participant
                .clone()
                .map(|u| UserJson::from(u).with_presence(presence)),
            last_message: c.last_message.as_ref().map(|m| MessageJson::new(m, viewer)),
            has_unread_messages: c.has_unread_messages,
            unread_count: c.unread_count,
            kind: c.kind.as_str(),
            title: c.title.as_deref(),
            member_count: c.member_count,
            role: c.role.as_str(),
            history: c.history.as_str(),
            muted: c.muted,
            last_message_read_by: c.last_message_read_by,
            read_positions: c.read_positions.as_deref().map(positions),
            last_message_delivered_to: c.last_message_delivered_to,
            delivered_positions: c.delivered_positions.as_deref().map(positions),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberJson {
    pub user: UserJson,
    pub role: &'static str,
    pub joined_at: String,
}

impl From<Member> for MemberJson {
    fn from(m: Member) -> Self {
        Self {
            user: m.user.into(),
            role: m.role.as_str(),
            joined_at: time(&m.joined_at),
        }
    }
}

/// The data of a named change event (`event: conversation` or `event: member`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeJson {
    pub conversation_id: String,
    pub change: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<UserJson>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_owner_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// An edit's new text; null once the message has been deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub content: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    /// Whose read marker moved (`read`): the actor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// `profile`: the actor's display name and picture as they became (`userId` is theirs).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub display_name: Option<Option<String>>,
    #[serde(rename = "avatarURL", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub avatar_url: Option<Option<String>>,
    /// `profile`: the account was deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
    pub actor: UserJson,
    pub created_at: String,
}

impl ChangeJson {
    pub fn new(e: &ConversationEvent) -> Self {
        let users = |users: &[User]| Some(users.iter().cloned().map(UserJson::from).collect());
        let mut json = Self {
            conversation_id: e.conversation_id.to_string(),
            change: "",
            kind: None,
            title: None,
            users: None,
            role: None,
            new_owner_id: None,
            message_id: e.change.message_id().map(|id| id.to_string()),
            content: None,
            emoji: None,
            user_id: None,
            added: None,
            count: None,
            display_name: None,
            avatar_url: None,
            deleted: None,
            actor: e.actor.clone().into(),
            created_at: time(&e.created_at),
        };
        match &e.change {
            Change::Created { title, kind } => {
                json.change = "created";
                json.kind = Some(kind.as_str());
                json.title = title.clone();
            }
            Change::Renamed { title } => {
                json.change = "renamed";
                json.title = Some(title.clone());
            }
            Change::Added { users: u } => {
                json.change = "added";
                json.users = users(u);
            }
            Change::Removed { users: u } => {
                json.change = "removed";
                json.users = users(u);
            }
            Change::Left {
                users: u,
                new_owner,
            } => {
                json.change = "left";
                json.users = users(u);
                json.new_owner_id = new_owner.map(|id| id.to_string());
            }
            Change::Role { users: u, role } => {
                json.change = "role";
                json.users = users(u);
                json.role = Some(role.as_str());
            }
            Change::Edited { content, .. } => {
                json.change = "edited";
                json.content = Some(content.clone());
            }
            Change::Deleted { .. } => json.change = "deleted",
            Change::Read { message_id } => {
                json.change = "read";
                json.message_id = Some(message_id.to_string());
                json.user_id = Some(e.actor.id.to_string());
            }
            Change::Reaction {
                emoji,
                added,
                count,
                ..
            } => {
                json.change = "reaction";
                json.emoji = Some(emoji.clone());
                json.added = Some(*added);
                json.count = Some(*count);
            }
            Change::Profile {
                display_name,
                avatar_url,
                deleted,
            } => {
                json.change = "profile";
                json.user_id = Some(e.actor.id.to_string());
                json.display_name = Some(display_name.clone());
                json.avatar_url = Some(avatar_url.clone());
                json.deleted = deleted.then_some(true);
            }
        }
        json
    }
}

/// `event: delivered` (no id): messages of the recipient in `conversationId` up to
/// `messageId` are on a device of `userId`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveredJson {
    pub conversation_id: String,
    pub user_id: String,
    pub message_id: String,
}

impl DeliveredJson {
    pub fn new(d: &crate::model::Delivered) -> Self {
        Self {
            conversation_id: d.conversation_id.to_string(),
            user_id: d.user_id.to_string(),
            message_id: d.message_id.to_string(),
        }
    }
}
