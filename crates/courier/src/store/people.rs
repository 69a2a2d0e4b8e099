//! `trait PeopleStore`: the server admin and first-run setup, invite links, one-time password
//! links, password changes and deleted accounts. Every `Store` is also a `PeopleStore`; the
//! twins live in `sqlite/people.rs` and `postgres/people.rs`.

use super::StoreResult;
use crate::model::UserId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// How a new account is let in; decided by the service, enforced in the account's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission<'a> {
    /// No invite needed. The first account with a credential becomes the admin.
    Open,
    /// A `--invite-codes` code, spent once (`Conflict("invite")` when already spent).
    Code(&'a str),
    /// An invite link's code: one use of it (`Conflict("invite link")` when unusable).
    Link(&'a str),
    /// First-run setup: only while no account with a credential exists, `Conflict("setup")` after.
    Setup,
    /// `courier admin create-user --admin`: an admin whatever else exists.
    Admin,
}

/// An invite link as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub id: i64,
    pub code: String,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub max_uses: i64,
    pub uses: i64,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What an account is, beyond its `User` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccountFlags {
    pub is_admin: bool,
    pub deleted: bool,
    pub has_password: bool,
}

#[async_trait]
pub trait PeopleStore: Send + Sync {
    /// Whether first-run setup has happened (an account with a credential exists).
    async fn setup_done(&self) -> StoreResult<bool>;
    /// `NotFound` when the user does not exist.
    async fn account_flags(&self, user: UserId) -> StoreResult<AccountFlags>;

    async fn create_invite(
        &self,
        created_by: UserId,
        code: &str,
        expires_at: DateTime<Utc>,
        max_uses: i64,
    ) -> StoreResult<Invite>;
    /// Invites made by `created_by`, or by anyone when `None`; newest first.
    async fn invites(&self, created_by: Option<UserId>) -> StoreResult<Vec<Invite>>;
    /// `NotFound` when no invite has this code.
    async fn invite(&self, code: &str) -> StoreResult<Invite>;
    /// Revokes an invite (one of `created_by`'s, or anyone's when `None`); `NotFound` otherwise.
    async fn revoke_invite(
        &self,
        id: i64,
        created_by: Option<UserId>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// The user's password hash, if they have a password.
    async fn password_hash_of(&self, user: UserId) -> StoreResult<Option<String>>;
    /// Sets (or adds) the user's password.
    async fn set_password(&self, user: UserId, hash: &str) -> StoreResult<()>;
    async fn create_password_link(
        &self,
        user: UserId,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Spends a password link and sets the password, in one transaction. `NotFound` when the
    /// link is unknown, spent or expired at `now`, or its account was deleted.
    async fn spend_password_link(
        &self,
        token_hash: &str,
        hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<UserId>;

    /// Sets or clears the address for "forgot password" mail; `Conflict("email")` when taken.
    async fn set_email(&self, user: UserId, email: Option<&str>) -> StoreResult<()>;
    /// The address and username of a live (not deleted) account, by address.
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<(UserId, String)>>;
    async fn email_of(&self, user: UserId) -> StoreResult<Option<String>>;

    /// Deletes an account: credentials, push subscriptions and unused links go, the row stays
    /// (marked deleted, its username reserved). `remove_content` turns the person's messages
    /// into tombstones.
    async fn delete_account(
        &self,
        user: UserId,
        remove_content: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
}
