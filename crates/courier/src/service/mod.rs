//! The use cases: sign in, open a conversation, send (commit, then publish), list, mark read.
//!
//! Services accept raw input only long enough to parse it into model types, and speak in
//! domain errors; status codes belong to `api`.

mod accounts;
mod oauth;
mod tokens;

pub use accounts::{AccountSettings, Accounts, Authenticated, SignedIn, Signup};
pub use oauth::{
    CallbackParams, FLOW_LIFETIME, Finished, FlowSeal, FlowState, OAuth, OAuthError, OAuthSettings,
    ProviderKind, ProviderSettings, Started, safe_return_path,
};
pub use tokens::{Claims, TokenError, Tokens};

use crate::bus::Bus;
use crate::model::{
    ContentError, ConversationId, ConversationView, Event, Message, MessageContent, MessageId,
    User, UserId, Username,
};
use crate::store::{NewMessage, Store, StoreError};
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
            e @ StoreError::Unavailable(_) => Self::Unavailable(e),
            StoreError::Other(e) => Self::Internal(e),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

pub struct Messenger {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    max_message_chars: usize,
}

impl Messenger {
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>, max_message_chars: usize) -> Self {
        Self {
            store,
            bus,
            max_message_chars,
        }
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
        let search = search.trim();
        if search.is_empty() {
            return Err(ServiceError::invalid("search", "Search required"));
        }
        self.store
            .search_usernames(search, me, USERNAME_SUGGESTIONS)
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

    pub async fn other_participant(&self, me: UserId, id: ConversationId) -> ServiceResult<User> {
        Ok(self.conversation(me, id).await?.other_participant)
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
    ) -> ServiceResult<Message> {
        let content =
            MessageContent::parse(raw_content, self.max_message_chars).map_err(|e| match e {
                ContentError::Empty | ContentError::TooLong { .. } => {
                    ServiceError::invalid("content", e)
                }
            })?;
        if idempotency_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > 255)
        {
            return Err(ServiceError::invalid(
                "idempotencyKey",
                "must be 1 to 255 characters",
            ));
        }
        let new = NewMessage {
            conversation,
            sender: me,
            content,
            idempotency_key,
        };
        let appended = self
            .store
            .append_message(new)
            .await
            .map_err(ServiceError::from_store("conversation"))?;
        if !appended.replayed {
            let event = Arc::new(Event::new(appended.message.clone(), appended.recipients));
            if let Err(e) = self.bus.publish(event).await {
                tracing::warn!(error = %e, "publish failed; streams will catch up from the store");
            }
        }
        Ok(appended.message)
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

    pub async fn mark_read(&self, me: UserId, conversation: ConversationId) -> ServiceResult<()> {
        self.store
            .mark_read(me, conversation)
            .await
            .map_err(ServiceError::from_store("conversation"))
    }

    /// Deletes idempotency keys past their 24 h window and sessions dead for a week.
    pub async fn purge_expired(&self) -> ServiceResult<u64> {
        let now = chrono::Utc::now();
        self.store
            .purge(
                now - chrono::TimeDelta::hours(24),
                now - chrono::TimeDelta::days(7),
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
