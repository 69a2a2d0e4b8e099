//! A person's profile (display name, picture) and what others see of it: every change is
//! written on the log once per conversation of theirs (`Change::Profile`), like Matrix's
//! `m.room.member` state event, so the members' open apps get `event: profile` live and a
//! reconnecting one replays it. A deleted account tells them the same way, and the messages
//! it chose to take with it go through the ordinary delete, one log entry each.

use super::uploads::{BodyError, UploadError};
use super::{Messenger, ServiceError, ServiceResult};
use crate::model::{Authority, ChangeRequest, DisplayName, MessageOp, User, UserId, avatar_path};
use bytes::Bytes;
use futures::Stream;

impl Messenger {
    /// Sets the display name (`None` or blank-free `null`: show the username).
    #[tracing::instrument(skip_all, fields(me = %me))]
    pub async fn set_display_name(&self, me: UserId, raw: Option<&str>) -> ServiceResult<User> {
        let name = raw
            .map(DisplayName::parse)
            .transpose()
            .map_err(|e| ServiceError::invalid("displayName", e))?;
        self.store
            .set_display_name(me, name.as_ref().map(DisplayName::as_str))
            .await
            .map_err(ServiceError::from_store("user"))?;
        self.announce_profile(me).await
    }

    /// Stores an uploaded picture (see `Uploads::receive_avatar`) and makes it the person's.
    #[tracing::instrument(skip_all, fields(me = %me))]
    pub async fn set_avatar<S>(
        &self,
        me: UserId,
        length: Option<u64>,
        body: S,
    ) -> Result<User, UploadError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        let uploads = self
            .uploads
            .as_ref()
            .ok_or(ServiceError::Forbidden("uploads are off on this server"))?;
        let hash = uploads.receive_avatar(length, body).await?;
        self.store
            .set_picture(me, Some(&avatar_path(&hash)))
            .await
            .map_err(ServiceError::from_store("user"))?;
        Ok(self.announce_profile(me).await?)
    }

    /// Back to the provider's picture, or the generated one.
    #[tracing::instrument(skip_all, fields(me = %me))]
    pub async fn remove_avatar(&self, me: UserId) -> ServiceResult<User> {
        self.store
            .set_picture(me, None)
            .await
            .map_err(ServiceError::from_store("user"))?;
        self.announce_profile(me).await
    }

    /// Whether `hash` is someone's current picture (only those are served, to anyone).
    pub async fn avatar_exists(&self, hash: &str) -> ServiceResult<bool> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        self.store
            .picture_in_use(&avatar_path(hash))
            .await
            .map_err(ServiceError::from_store("avatar"))
    }

    /// After an account was deleted: its conversations learn it (`event: profile` with
    /// `deleted`), and with `remove_messages` each of its messages becomes a tombstone through
    /// the ordinary delete (live `message-deleted`, gone from search).
    #[tracing::instrument(skip_all, fields(user = %user))]
    pub async fn account_deleted(&self, user: UserId, remove_messages: bool) -> ServiceResult<()> {
        let actor = self.announce_profile(user).await?;
        if !remove_messages {
            return Ok(());
        }
        let messages = self
            .store
            .live_messages_of(user)
            .await
            .map_err(ServiceError::from_store("user"))?;
        for (conversation, message) in messages {
            self.change(
                ChangeRequest::Message {
                    actor: actor.clone(),
                    conversation,
                    message,
                    op: MessageOp::Delete,
                    authority: Authority::Member,
                },
                "message",
            )
            .await?;
        }
        Ok(())
    }

    /// Writes the person's profile as it is now into each of their conversations.
    async fn announce_profile(&self, me: UserId) -> ServiceResult<User> {
        let actor = self.user(me).await?;
        let conversations = self
            .store
            .conversations_of(me)
            .await
            .map_err(ServiceError::from_store("user"))?;
        for conversation in conversations {
            self.change(
                ChangeRequest::Profile {
                    actor: actor.clone(),
                    conversation,
                },
                "conversation",
            )
            .await?;
        }
        Ok(actor)
    }
}
