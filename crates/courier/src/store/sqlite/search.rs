//! `SearchStore` for `SqliteStore`; twin of `postgres/search.rs`. The SQL is shared in
//! `store::search`.

use super::{SqliteStore, classify, is_participant};
use crate::model::{ConversationId, Message, MessageId, UserId};
use crate::store::search::{self, Dialect, SearchHit, SearchRequest, SearchStore, sender};
use crate::store::{StoreError, StoreResult};
use async_trait::async_trait;

#[async_trait]
impl SearchStore for SqliteStore {
    async fn search(&self, viewer: UserId, request: &SearchRequest) -> StoreResult<Vec<SearchHit>> {
        let sender = match &request.query.from {
            None => None,
            Some(name) => match sender(self, name).await? {
                Some(id) => Some(id),
                None => return Ok(Vec::new()),
            },
        };
        // New messages' words are written in batches: first the ones still waiting.
        self.index_search().await?;
        search::search(&self.pool, Dialect::Sqlite, viewer, request, sender)
            .await
            .map_err(classify)
    }

    async fn messages_around(
        &self,
        viewer: UserId,
        conversation: ConversationId,
        around: MessageId,
        each_side: u32,
    ) -> StoreResult<Vec<Message>> {
        let history_from = is_participant(&self.pool, viewer, conversation).await?;
        search::around(
            &self.pool,
            viewer,
            conversation,
            around,
            each_side,
            history_from,
        )
        .await
        .map_err(classify)?
        .ok_or(StoreError::NotFound)
    }
}
