//! Search use cases: full-text search over what the caller may read, and history around one
//! message (where a search hit opens). Visibility is the store's (see `store::search`).

use super::{Messenger, PAGE_SIZE, ServiceError, ServiceResult};
use crate::model::{ConversationId, Message, MessageId, UserId};
pub use crate::store::{SearchHit, SearchRequest};

/// How many messages `messages_around` shows on each side of the one asked for.
pub const AROUND_EACH_SIDE: u32 = PAGE_SIZE / 2;

impl Messenger {
    /// A page of the caller's hits, newest first; with a conversation, `NotFound` unless they
    /// are a member (like every conversation route).
    pub async fn search(
        &self,
        me: UserId,
        request: &SearchRequest,
    ) -> ServiceResult<Vec<SearchHit>> {
        if let Some(conversation) = request.conversation {
            self.store
                .read_marker(me, conversation)
                .await
                .map_err(ServiceError::from_store("conversation"))?;
        }
        self.store
            .search(me, request)
            .await
            .map_err(ServiceError::from_store("conversation"))
    }

    /// The history around `message`, newest first; does not mark anything read (the caller
    /// is looking back, not at the newest messages).
    pub async fn messages_around(
        &self,
        me: UserId,
        conversation: ConversationId,
        message: MessageId,
    ) -> ServiceResult<Vec<Message>> {
        self.store
            .messages_around(me, conversation, message, AROUND_EACH_SIDE)
            .await
            .map_err(ServiceError::from_store("message"))
    }
}
