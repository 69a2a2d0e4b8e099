//! `trait AccountStore`: sessions, external identities, passwords and invites.
//! Every `Store` is also an `AccountStore`; the twins live beside each store.

use super::StoreResult;
use super::people::Admission;
use crate::model::{Session, User, UserId, Username};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A new user's credentials, written in the same transaction as the user.
#[derive(Debug, Clone)]
pub enum NewCredential {
    Password { hash: String },
    Identity { provider: String, subject: String },
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates a user with a credential. `NotFound` never; `Conflict` when the name is taken
    /// (any case) or the invite code was already spent.
    async fn create_account(
        &self,
        username: &Username,
        avatar_url: Option<&str>,
        credential: NewCredential,
        invite: Option<&str>,
    ) -> StoreResult<User> {
        let admission = match invite {
            Some(code) => Admission::Code(code),
            None => Admission::Open,
        };
        self.create_account_as(username, avatar_url, credential, admission)
            .await
    }
    /// Creates a user with a credential, let in by `admission` (see `Admission` for the
    /// conflicts). The first account with a credential becomes the server admin.
    async fn create_account_as(
        &self,
        username: &Username,
        avatar_url: Option<&str>,
        credential: NewCredential,
        admission: Admission<'_>,
    ) -> StoreResult<User>;
    /// The user linked to an identity, if any.
    async fn identity_user(&self, provider: &str, subject: &str) -> StoreResult<Option<User>>;
    /// The user and password hash for a username (any case); `NotFound` if none.
    async fn password_hash(&self, username: &Username) -> StoreResult<(User, String)>;
    /// Whether the user signs in with a password or an identity provider.
    async fn has_credentials(&self, user: UserId) -> StoreResult<bool>;
    async fn update_avatar(&self, user: UserId, avatar_url: Option<&str>) -> StoreResult<()>;

    async fn create_session(&self, session: &Session) -> StoreResult<()>;
    /// A session that is neither revoked nor expired at `now`; `NotFound` otherwise.
    async fn active_session(&self, id: &str, now: DateTime<Utc>) -> StoreResult<Session>;
    async fn touch_session(
        &self,
        id: &str,
        now: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> StoreResult<()>;
    /// Records activity of many sessions in one statement; a time never moves back, and
    /// revoked or unknown sessions are skipped.
    async fn touch_sessions(&self, seen: &[(String, DateTime<Utc>)]) -> StoreResult<()>;
    /// The user's active sessions, most recently seen first.
    async fn sessions(&self, user: UserId, now: DateTime<Utc>) -> StoreResult<Vec<Session>>;
    /// Revokes one of the user's sessions, or all of them when `id` is `None`; returns the ids revoked.
    async fn revoke_sessions(
        &self,
        user: UserId,
        id: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<String>>;
    /// Spends an OAuth sign-in flow id, kept until `expires_at`. `Conflict("oauth flow")` when
    /// it was already spent: the callback is a replay. Every node sees the same spent ids.
    async fn spend_oauth_flow(&self, id: &str, expires_at: DateTime<Utc>) -> StoreResult<()>;
    /// Deletes what no request can use any more: idempotency keys older than `keys_before`,
    /// sessions that expired or were revoked before `sessions_before`, spent OAuth flows that
    /// expired before `flows_before`. Returns rows deleted.
    async fn purge(
        &self,
        keys_before: DateTime<Utc>,
        sessions_before: DateTime<Utc>,
        flows_before: DateTime<Utc>,
    ) -> StoreResult<u64>;
}
