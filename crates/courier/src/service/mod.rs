//! The use cases: sign in, open a conversation, send (commit, then publish), list, mark read.
//!
//! Services accept raw input only long enough to parse it into model types, and speak in
//! domain errors; status codes belong to `api`.

mod accounts;
pub mod admin;
mod mail;
mod oauth;
pub mod presence;
mod profiles;
pub mod push;
mod search;
mod signals;
mod tokens;
pub mod uploads;

/// Account records the API shows as they are.
pub use crate::store::{AccountFlags, AdminUser, Invite, Report};
pub use accounts::{
    AccountSettings, Accounts, Authenticated, FRESH_SIGN_IN, InviteState, PasswordLink, SignedIn,
    Signup,
};
pub use admin::{Actor, Admin, AdminRequest};
pub use mail::Mailer;
pub use oauth::{
    CallbackParams, FLOW_LIFETIME, Finished, FlowSeal, FlowState, OAuth, OAuthError, OAuthSettings,
    ProviderKind, ProviderSettings, Started, safe_return_path,
};
pub use search::{AROUND_EACH_SIDE, SearchHit, SearchRequest};
pub use signals::{PresenceSettingsView, PresenceView, Signals, TYPING_LAPSE};
pub use tokens::{Claims, TokenError, Tokens};
pub use uploads::{BodyError, Download, UploadError, UploadSettings, Uploads};

use crate::bus::Bus;
use crate::model::{
    Authority, ChangeRequest, ConversationId, ConversationView, Cursor, CursorError, Delivered,
    Emoji, Event, EventKind, History, Member, Message, MessageContent, MessageId, MessageOp, Op,
    Quote, Refusal, Role, Title, User, UserId, Username, UsernameError,
};
use crate::store::{Changed, NewMessage, Store, StoreError};
use std::sync::Arc;

/// Page size of every list, as in the seed app.
pub const PAGE_SIZE: u32 = 25;
const USERNAME_SUGGESTIONS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    TooManyRequests(&'static str),
    /// The request contradicts the current state (an existing member, the last owner).
    #[error("{0}")]
    Conflict(String),
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("service unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ServiceError {
    fn invalid(field: &'static str, message: impl ToString) -> Self {
        Self::Invalid {
            field,
            message: message.to_string(),
        }
    }

    fn from_store(what: &'static str) -> impl Fn(StoreError) -> Self + Copy {
        move |e| match e {
            StoreError::NotFound => Self::NotFound(what),
            StoreError::KeyReused => Self::invalid(
                "idempotencyKey",
                "this key was used for another conversation",
            ),
            StoreError::Conflict(field) => Self::invalid(
                field,
                match field {
                    "username" => "Username is already taken",
                    "invite" => "This invite code has already been used",
                    _ => "Already in use",
                },
            ),
            StoreError::Refused(refusal) => match refusal {
                Refusal::NotAllowed(why) => Self::Forbidden(why),
                Refusal::NotAMember => Self::NotFound("member"),
                Refusal::TooManyMembers(_) => Self::invalid("usernames", refusal),
                Refusal::AlreadyMembers(_) | Refusal::LastOwner | Refusal::Direct => {
                    Self::Conflict(refusal.to_string())
                }
                Refusal::MessageDeleted => Self::invalid("message", refusal),
                Refusal::TooManyReactions(_) => Self::invalid("emoji", refusal),
                Refusal::BadReply => Self::invalid("replyTo", refusal),
            },
            e @ StoreError::Unavailable(_) => Self::Unavailable(e),
            StoreError::Other(e) => Self::Internal(e),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// What a person decides about themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserSettings {
    /// Share read receipts (and see others'); on by default, as in WhatsApp and Signal.
    pub read_receipts: bool,
}

pub struct Messenger {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    max_message_chars: usize,
    max_group_members: usize,
    /// How long authors may edit; `None` for ever.
    edit_window: Option<chrono::TimeDelta>,
    pusher: Option<Arc<push::Pusher>>,
    signals: Option<Arc<Signals>>,
    uploads: Option<Arc<Uploads>>,
}

impl Messenger {
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        max_message_chars: usize,
        max_group_members: usize,
    ) -> Self {
        Self {
            store,
            bus,
            max_message_chars,
            max_group_members,
            edit_window: None,
            pusher: None,
            signals: None,
            uploads: None,
        }
    }

    /// Lets sends carry uploaded files.
    pub fn with_uploads(mut self, uploads: Arc<Uploads>) -> Self {
        self.uploads = Some(uploads);
        self
    }

    pub fn with_edit_window(mut self, window: Option<std::time::Duration>) -> Self {
        self.edit_window =
            window.map(|w| chrono::TimeDelta::from_std(w).unwrap_or(chrono::TimeDelta::MAX));
        self
    }

    /// Ends the sender's typing indicator when their message is committed.
    pub fn with_signals(mut self, signals: Arc<Signals>) -> Self {
        self.signals = Some(signals);
        self
    }

    /// Sends Web Push for committed messages to recipients without an open stream.
    pub fn with_pusher(mut self, pusher: Arc<push::Pusher>) -> Self {
        self.pusher = Some(pusher);
        self
    }

    /// Waits (at most `limit`) for background work that holds the store, after shutdown.
    pub async fn finish(&self, limit: std::time::Duration) {
        if let Some(pusher) = &self.pusher {
            pusher.finish(limit).await;
        }
    }

    /// The VAPID public key browsers subscribe with; `None` when push is off.
    pub fn push_public_key(&self) -> Option<String> {
        self.pusher.as_ref().map(|p| p.public_key())
    }

    pub async fn subscribe_push(
        &self,
        me: UserId,
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        hide_content: bool,
    ) -> ServiceResult<()> {
        let pusher = self.pusher.as_ref().ok_or(ServiceError::NotFound("push"))?;
        if !pusher.endpoint_allowed(endpoint) || endpoint.len() > 2048 {
            return Err(ServiceError::invalid(
                "endpoint",
                "Endpoint must be an https URL",
            ));
        }
        // Refuse keys that cannot encrypt now, not at the first message.
        push::encrypt(b"", p256dh, auth).map_err(|e| ServiceError::invalid("keys", e))?;
        let target = crate::store::PushTarget {
            user: me,
            endpoint: endpoint.to_owned(),
            p256dh: p256dh.to_owned(),
            auth: auth.to_owned(),
            hide_content,
        };
        self.store
            .save_push_subscription(&target)
            .await
            .map_err(ServiceError::from_store("subscription"))?;
        pusher.subscribed(me);
        Ok(())
    }

    pub async fn unsubscribe_push(&self, me: UserId, endpoint: &str) -> ServiceResult<()> {
        self.store
            .delete_push_subscription(me, endpoint)
            .await
            .map_err(ServiceError::from_store("subscription"))
    }

    pub fn max_message_chars(&self) -> usize {
        self.max_message_chars
    }

    pub async fn user(&self, id: UserId) -> ServiceResult<User> {
        self.store
            .user(id)
            .await
            .map_err(ServiceError::from_store("user"))
    }

    pub async fn search_usernames(&self, me: UserId, search: &str) -> ServiceResult<Vec<String>> {
        let search = Username::parse_prefix(search).map_err(|e| match e {
            UsernameError::Empty => ServiceError::invalid("search", "Search required"),
            e => ServiceError::invalid("search", e),
        })?;
        self.store
            .search_usernames(&search, me, USERNAME_SUGGESTIONS)
            .await
            .map_err(ServiceError::from_store("user"))
    }

    /// Opens the 1:1 conversation with `other`; the flag says whether it was created now.
    #[tracing::instrument(skip_all, fields(me = %me))]
    pub async fn start_conversation(
        &self,
        me: UserId,
        other: &str,
    ) -> ServiceResult<(ConversationView, bool)> {
        let other = Username::parse(other).map_err(|e| ServiceError::invalid("username", e))?;
        let other = self
            .store
            .user_by_username(&other)
            .await
            .map_err(ServiceError::from_store("user"))?;
        if other.id == me {
            return Err(ServiceError::Forbidden(
                "Cannot start a conversation with yourself",
            ));
        }
        let (id, created) = self
            .store
            .find_or_create_direct(me, other.id)
            .await
            .map_err(ServiceError::from_store("conversation"))?;
        Ok((self.conversation(me, id).await?, created))
    }

    pub async fn conversation(
        &self,
        me: UserId,
        id: ConversationId,
    ) -> ServiceResult<ConversationView> {
        self.store
            .conversation(me, id)
            .await
            .map_err(ServiceError::from_store("conversation"))
    }

    pub async fn conversations(
        &self,
        me: UserId,
        before: Option<ConversationId>,
    ) -> ServiceResult<Vec<ConversationView>> {
        self.store
            .conversations(me, before, PAGE_SIZE)
            .await
            .map_err(ServiceError::from_store("conversation"))
    }

    /// The other member of a direct conversation; a group has none (404).
    pub async fn other_participant(&self, me: UserId, id: ConversationId) -> ServiceResult<User> {
        self.conversation(me, id)
            .await?
            .other_participant
            .ok_or(ServiceError::NotFound("other participant"))
    }

    /// Commits the message, then rings the bus. A lost publish only delays delivery:
    /// streams find the message in the store by its position.
    #[tracing::instrument(skip_all, fields(me = %me, conversation = %conversation))]
    pub async fn send_message(
        &self,
        me: UserId,
        conversation: ConversationId,
        raw_content: &str,
        idempotency_key: Option<String>,
        reply_to: Option<MessageId>,
    ) -> ServiceResult<Message> {
        self.send_with_attachments(
            me,
            conversation,
            raw_content,
            idempotency_key,
            reply_to,
            &[],
        )
        .await
    }

    /// `send_message` with uploads (ids from `POST /api/uploads`) attached, in the order
    /// given. A message that carries files may have no text.
    pub async fn send_with_attachments(
        &self,
        me: UserId,
        conversation: ConversationId,
        raw_content: &str,
        idempotency_key: Option<String>,
        reply_to: Option<MessageId>,
        attachments: &[String],
    ) -> ServiceResult<Message> {
        let content = if attachments.is_empty() {
            MessageContent::parse(raw_content, self.max_message_chars)
        } else {
            MessageContent::parse_optional(raw_content, self.max_message_chars)
        }
        .map_err(|e| ServiceError::invalid("content", e))?;
        if idempotency_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > 255)
        {
            return Err(ServiceError::invalid(
                "idempotencyKey",
                "must be 1 to 255 characters",
            ));
        }
        let quote = match reply_to {
            Some(id) => Some(self.quote_for_reply(me, conversation, id).await?),
            None => None,
        };
        let attachment_claim = match (&self.uploads, attachments.is_empty()) {
            (_, true) => None,
            (None, false) => {
                return Err(ServiceError::invalid(
                    "attachments",
                    "this server does not take attachments",
                ));
            }
            (Some(uploads), false) => {
                uploads
                    .claim(me, attachments, idempotency_key.as_deref())
                    .await?
            }
        };
        let new = NewMessage {
            conversation,
            sender: me,
            content,
            idempotency_key,
            reply_to,
            attachment_claim: attachment_claim.clone(),
        };
        let appended = self.store.append_message(new).await;
        if let (Err(_), Some(uploads), Some(claim)) = (&appended, &self.uploads, &attachment_claim)
        {
            uploads.release(claim).await;
        }
        let mut appended = appended.map_err(ServiceError::from_store("conversation"))?;
        if attachment_claim.is_some() {
            appended.message.attachments = self
                .store
                .attachments_of(appended.message.id)
                .await
                .map_err(ServiceError::from_store("message"))?;
        }
        appended.message.quote = quote
            .filter(|_| appended.message.reply_to.is_some())
            .map(Box::new);
        if !appended.replayed {
            if let Some(pusher) = &self.pusher {
                let users = appended.recipients.iter().map(|r| r.user);
                pusher.message_committed(appended.message.clone(), users);
            }
            let event = Arc::new(Event::new(appended.message.clone(), appended.recipients));
            if let Err(e) = self.bus.publish(event.clone()).await {
                tracing::warn!(error = %e, "publish failed; streams will catch up from the store");
            }
            if let Some(signals) = &self.signals {
                signals
                    .message_sent(me, conversation, &event.recipients)
                    .await;
            }
        }
        Ok(appended.message)
    }

    /// The quote a new reply carries live: `id` must be a message of the conversation that
    /// the sender can read and that is not deleted. In a joined-history group some members
    /// may not be able to read it, so the live event leaves its text out (reads fill it in
    /// per viewer).
    async fn quote_for_reply(
        &self,
        me: UserId,
        conversation: ConversationId,
        id: MessageId,
    ) -> ServiceResult<Quote> {
        let view = self.conversation(me, conversation).await?;
        let original = match self.store.message(me, conversation, id).await {
            Ok(original) => original,
            Err(StoreError::NotFound) => {
                return Err(ServiceError::from_store("message")(StoreError::Refused(
                    Refusal::BadReply,
                )));
            }
            Err(e) => return Err(ServiceError::from_store("message")(e)),
        };
        if original.deleted_at.is_some() {
            return Err(ServiceError::invalid(
                "replyTo",
                "cannot reply to a deleted message",
            ));
        }
        let sender = self.user(original.sender_id).await?;
        Ok(Quote {
            id,
            sender,
            preview: (view.history == History::Shared)
                .then(|| Quote::preview_of(&original.content)),
            deleted: false,
        })
    }

    /// Edits the caller's own message; returns it as it now reads.
    pub async fn edit_message(
        &self,
        me: UserId,
        conversation: ConversationId,
        message: MessageId,
        raw_content: &str,
    ) -> ServiceResult<Message> {
        self.ensure_member(me, conversation).await?;
        let content = MessageContent::parse(raw_content, self.max_message_chars)
            .map_err(|e| ServiceError::invalid("content", e))?;
        let op = MessageOp::Edit {
            content,
            window: self.edit_window,
        };
        self.message_op(me, conversation, message, op).await?;
        self.message(me, conversation, message).await
    }

    /// Deletes a message (its author, an admin of its group, or a server admin who is a
    /// member): it stays as a tombstone.
    pub async fn delete_message(
        &self,
        me: UserId,
        conversation: ConversationId,
        message: MessageId,
    ) -> ServiceResult<()> {
        let server_admin = self
            .store
            .admin_user(me)
            .await
            .map_err(ServiceError::from_store("user"))?
            .is_admin;
        let authority = if server_admin {
            Authority::ServerAdmin
        } else {
            Authority::Member
        };
        let actor = self.user(me).await?;
        self.message_change(actor, conversation, message, MessageOp::Delete, authority)
            .await
    }

    /// The operator (`courier admin delete-message`) deletes any message, member or not;
    /// `actor` is the server admin the log records. Same path as a member's delete: the
    /// members' streams get `message-deleted`, the text leaves the index and the edit events.
    pub async fn delete_message_as_operator(
        &self,
        actor: UserId,
        conversation: ConversationId,
        message: MessageId,
    ) -> ServiceResult<()> {
        let actor = self.user(actor).await?;
        self.message_change(
            actor,
            conversation,
            message,
            MessageOp::Delete,
            Authority::Operator,
        )
        .await
    }

    /// The operator deletes a whole conversation (see `model::plan_close`): every member is
    /// removed by one log entry, so their apps drop it live, and every message is tombstoned.
    /// Answers how many members were removed.
    pub async fn delete_conversation_as_operator(
        &self,
        actor: UserId,
        conversation: ConversationId,
    ) -> ServiceResult<usize> {
        let actor = self.user(actor).await?;
        let changed = self
            .change(
                ChangeRequest::Close {
                    actor,
                    conversation,
                },
                "conversation",
            )
            .await?;
        Ok(changed.map_or(0, |c| c.recipients.len()))
    }

    /// Adds (`on`) or takes back the caller's reaction; repeating either changes nothing.
    pub async fn react(
        &self,
        me: UserId,
        conversation: ConversationId,
        message: MessageId,
        raw_emoji: &str,
        on: bool,
    ) -> ServiceResult<()> {
        self.ensure_member(me, conversation).await?;
        let emoji = Emoji::parse(raw_emoji).map_err(|e| ServiceError::invalid("emoji", e))?;
        self.message_op(me, conversation, message, MessageOp::React { emoji, on })
            .await
    }

    /// One message as the caller sees it.
    pub async fn message(
        &self,
        me: UserId,
        conversation: ConversationId,
        message: MessageId,
    ) -> ServiceResult<Message> {
        self.store
            .message(me, conversation, message)
            .await
            .map_err(ServiceError::from_store("message"))
    }

    /// Who reacted to a message with what (at most 1,000, oldest first).
    pub async fn reactors(
        &self,
        me: UserId,
        conversation: ConversationId,
        message: MessageId,
    ) -> ServiceResult<Vec<(String, User)>> {
        self.store
            .reactors(me, conversation, message, 1000)
            .await
            .map_err(ServiceError::from_store("message"))
    }

    /// 404 unless `me` is a member: checked before parsing input, so a stranger learns
    /// nothing from a validation error. One indexed row, not the whole Conversation view.
    async fn ensure_member(&self, me: UserId, conversation: ConversationId) -> ServiceResult<()> {
        self.store
            .read_marker(me, conversation)
            .await
            .map(|_| ())
            .map_err(ServiceError::from_store("conversation"))
    }

    async fn message_op(
        &self,
        me: UserId,
        conversation: ConversationId,
        message: MessageId,
        op: MessageOp,
    ) -> ServiceResult<()> {
        let actor = self.user(me).await?;
        self.message_change(actor, conversation, message, op, Authority::Member)
            .await
    }

    async fn message_change(
        &self,
        actor: User,
        conversation: ConversationId,
        message: MessageId,
        op: MessageOp,
        authority: Authority,
    ) -> ServiceResult<()> {
        self.change(
            ChangeRequest::Message {
                actor,
                conversation,
                message,
                op,
                authority,
            },
            "message",
        )
        .await
        .map(|_| ())
    }

    /// Creates a group of the caller (its owner) and `usernames`, then rings the bus.
    #[tracing::instrument(skip_all, fields(me = %me))]
    pub async fn create_group(
        &self,
        me: UserId,
        usernames: &[String],
        title: Option<&str>,
        history: Option<&str>,
    ) -> ServiceResult<ConversationView> {
        let title = parse_title(title.unwrap_or_default())?;
        let history = match history {
            None => History::Shared,
            Some(raw) => History::parse(raw).ok_or_else(|| {
                ServiceError::invalid("history", "History must be \"shared\" or \"joined\"")
            })?,
        };
        let members = self.resolve_usernames(usernames).await?;
        let creator = self.user(me).await?;
        let changed = self
            .change(
                ChangeRequest::Create {
                    creator,
                    members,
                    title,
                    history,
                    max_members: self.max_group_members,
                },
                "conversation",
            )
            .await?
            .ok_or_else(|| ServiceError::Internal("a new group changed nothing".into()))?;
        self.conversation(me, changed.event.conversation_id).await
    }

    pub async fn rename_group(
        &self,
        me: UserId,
        conversation: ConversationId,
        title: &str,
    ) -> ServiceResult<ConversationView> {
        let title = parse_title(title)?;
        self.update(me, conversation, Op::Rename(title)).await?;
        self.conversation(me, conversation).await
    }

    /// Adds members (admins only); answers the users added.
    pub async fn add_members(
        &self,
        me: UserId,
        conversation: ConversationId,
        usernames: &[String],
    ) -> ServiceResult<Vec<User>> {
        // A stranger learns nothing, not even which usernames exist.
        self.ensure_member(me, conversation).await?;
        if usernames.is_empty() {
            return Err(ServiceError::invalid("usernames", "Usernames required"));
        }
        let users = self.resolve_usernames(usernames).await?;
        let op = Op::Add {
            users: users.clone(),
            max_members: self.max_group_members,
        };
        self.update(me, conversation, op).await?;
        Ok(users)
    }

    pub async fn remove_member(
        &self,
        me: UserId,
        conversation: ConversationId,
        user: UserId,
    ) -> ServiceResult<()> {
        let user = self.member_user(me, conversation, user).await?;
        self.update(me, conversation, Op::Remove(user)).await
    }

    pub async fn leave(&self, me: UserId, conversation: ConversationId) -> ServiceResult<()> {
        self.update(me, conversation, Op::Leave).await
    }

    pub async fn set_role(
        &self,
        me: UserId,
        conversation: ConversationId,
        user: UserId,
        role: &str,
    ) -> ServiceResult<Member> {
        let role = Role::parse(role).ok_or_else(|| {
            ServiceError::invalid("role", "Role must be \"owner\", \"admin\" or \"member\"")
        })?;
        let target = self.member_user(me, conversation, user).await?;
        let op = Op::SetRole(target.clone(), role);
        let changed = self.update_changed(me, conversation, op).await?;
        Ok(Member {
            user: target,
            role,
            joined_at: changed.event.created_at,
        })
    }

    /// A page of members in user id order, after `after`.
    pub async fn members(
        &self,
        me: UserId,
        conversation: ConversationId,
        after: Option<UserId>,
        limit: u32,
    ) -> ServiceResult<Vec<Member>> {
        self.store
            .members(me, conversation, after, limit.clamp(1, 1000))
            .await
            .map_err(ServiceError::from_store("conversation"))
    }

    /// The user a member route names; a stranger to the conversation gets its 404 first.
    async fn member_user(
        &self,
        me: UserId,
        conversation: ConversationId,
        user: UserId,
    ) -> ServiceResult<User> {
        self.ensure_member(me, conversation).await?;
        self.store
            .user(user)
            .await
            .map_err(ServiceError::from_store("member"))
    }

    async fn update(&self, me: UserId, conversation: ConversationId, op: Op) -> ServiceResult<()> {
        self.update_changed(me, conversation, op).await.map(|_| ())
    }

    async fn update_changed(
        &self,
        me: UserId,
        conversation: ConversationId,
        op: Op,
    ) -> ServiceResult<Changed> {
        let actor = self.user(me).await?;
        self.change(
            ChangeRequest::Update {
                actor,
                conversation,
                op,
            },
            "conversation",
        )
        .await?
        .ok_or_else(|| ServiceError::Internal("a group change changed nothing".into()))
    }

    /// Commits a change on the log, then rings the bus (a lost publish only delays it).
    /// `None`: it changed nothing, so there is nothing to publish. `what` names the thing a
    /// `NotFound` is about.
    async fn change(
        &self,
        request: ChangeRequest,
        what: &'static str,
    ) -> ServiceResult<Option<Changed>> {
        let Some(changed) = self
            .store
            .apply_change(request)
            .await
            .map_err(ServiceError::from_store(what))?
        else {
            return Ok(None);
        };
        self.publish_change(&changed).await;
        Ok(Some(changed))
    }

    async fn publish_change(&self, changed: &Changed) {
        let event = Arc::new(Event::change(
            changed.event.clone(),
            changed.recipients.clone(),
        ));
        if let Err(e) = self.bus.publish(event).await {
            tracing::warn!(error = %e, "publish failed; streams will catch up from the store");
        }
    }

    /// Usernames to users: 422 for a malformed, repeated or unknown one (listing them).
    async fn resolve_usernames(&self, usernames: &[String]) -> ServiceResult<Vec<User>> {
        if usernames.len() > self.max_group_members {
            return Err(ServiceError::invalid(
                "usernames",
                Refusal::TooManyMembers(self.max_group_members),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        let mut users = Vec::with_capacity(usernames.len());
        let mut unknown = Vec::new();
        for raw in usernames {
            let name = Username::parse(raw).map_err(|e| ServiceError::invalid("usernames", e))?;
            if !seen.insert(name.as_str().to_lowercase()) {
                return Err(ServiceError::invalid(
                    "usernames",
                    format!("{} is listed twice", name.as_str()),
                ));
            }
            match self.store.user_by_username(&name).await {
                Ok(user) => users.push(user),
                Err(StoreError::NotFound) => unknown.push(name.as_str().to_owned()),
                Err(e) => return Err(ServiceError::from_store("user")(e)),
            }
        }
        if !unknown.is_empty() {
            return Err(ServiceError::invalid(
                "usernames",
                format!("Unknown usernames: {}", unknown.join(", ")),
            ));
        }
        Ok(users)
    }

    /// A page of history, newest first; reading the newest page marks the conversation read.
    pub async fn messages(
        &self,
        me: UserId,
        conversation: ConversationId,
        before: Option<MessageId>,
    ) -> ServiceResult<Vec<Message>> {
        let page = self
            .store
            .messages(me, conversation, before, PAGE_SIZE)
            .await
            .map_err(ServiceError::from_store("conversation"))?;
        self.mark_read(me, conversation).await?;
        Ok(page)
    }

    pub async fn set_muted(
        &self,
        me: UserId,
        conversation: ConversationId,
        muted: bool,
    ) -> ServiceResult<()> {
        self.store
            .set_muted(me, conversation, muted)
            .await
            .map_err(ServiceError::from_store("conversation"))
    }

    /// A device of the caller has processed its stream up to `raw_cursor` (without one: it
    /// has just loaded the conversations, so everything up to now): a delivered receipt.
    /// Senders of messages it newly delivered hear of it live (an ephemeral event;
    /// Conversation JSON holds the state for whoever reconnects).
    pub async fn acknowledge(
        &self,
        me: UserId,
        device: &str,
        raw_cursor: Option<&str>,
    ) -> ServiceResult<()> {
        // The store clamps a position to the inbox head.
        let position = match raw_cursor {
            None => MessageId(i64::MAX),
            Some(raw) => {
                let cursor = Cursor::parse(raw).map_err(|e| ServiceError::invalid("cursor", e))?;
                if cursor.instance != self.store.instance_id() {
                    return Err(ServiceError::invalid("cursor", CursorError::OtherServer));
                }
                cursor.position
            }
        };
        let deliveries = self
            .store
            .acknowledge(me, device, position)
            .await
            .map_err(ServiceError::from_store("user"))?;
        for delivery in deliveries {
            let receipt = Delivered {
                conversation_id: delivery.conversation,
                user_id: me,
                message_id: delivery.message,
            };
            let event = Arc::new(Event::signal(
                EventKind::Delivered(receipt),
                [delivery.sender],
            ));
            if let Err(e) = self.bus.publish(event).await {
                tracing::debug!(error = %e, "delivered receipt not published; it is in the store");
            }
        }
        Ok(())
    }

    /// The caller's own settings.
    pub async fn settings(&self, me: UserId) -> ServiceResult<UserSettings> {
        let read_receipts = self
            .store
            .read_receipts(me)
            .await
            .map_err(ServiceError::from_store("user"))?;
        Ok(UserSettings { read_receipts })
    }

    /// Changes what is given; returns the settings after.
    pub async fn update_settings(
        &self,
        me: UserId,
        read_receipts: Option<bool>,
    ) -> ServiceResult<UserSettings> {
        if let Some(on) = read_receipts {
            self.store
                .set_read_receipts(me, on)
                .await
                .map_err(ServiceError::from_store("user"))?;
        }
        self.settings(me).await
    }

    /// Moves the caller's read marker; a move is a receipt on the log, published like any
    /// change (a mark that moves nothing writes and sends nothing).
    pub async fn mark_read(&self, me: UserId, conversation: ConversationId) -> ServiceResult<()> {
        let moved = self
            .store
            .mark_read(me, conversation)
            .await
            .map_err(ServiceError::from_store("conversation"))?;
        if let Some(changed) = moved {
            self.publish_change(&changed).await;
        }
        Ok(())
    }

    /// Deletes idempotency keys past their 24 h window, sessions dead for a week and spent
    /// OAuth flows past their expiry.
    pub async fn purge_expired(&self) -> ServiceResult<u64> {
        let now = chrono::Utc::now();
        self.store
            .purge(
                now - chrono::TimeDelta::hours(24),
                now - chrono::TimeDelta::days(7),
                now,
            )
            .await
            .map_err(ServiceError::from_store("purge"))
    }

    /// Readiness: the store must answer. A bus outage only delays delivery (streams fall back
    /// to reading the store), so it degrades the node instead of taking it out of rotation;
    /// with one shared NATS, failing here would take every node out at once.
    pub async fn ready(&self) -> Result<Option<String>, String> {
        self.store.ping().await.map_err(|e| format!("store: {e}"))?;
        Ok(self.bus.ping().await.err().map(|e| format!("bus: {e}")))
    }
}

fn parse_title(raw: &str) -> ServiceResult<Title> {
    Title::parse(raw).map_err(|e| ServiceError::invalid("title", e))
}
