//! `trait PeopleStore`: the server admin and first-run setup, invite links, one-time password
//! links, password changes and deleted accounts. Every `Store` is also a `PeopleStore`; the
//! twins live in `sqlite/people.rs` and `postgres/people.rs`.

use super::StoreResult;
use crate::model::{ConversationId, MessageId, UserId};
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

    /// Sets or clears (`None`: show the username) the display name.
    async fn set_display_name(&self, user: UserId, name: Option<&str>) -> StoreResult<()>;
    /// Sets or clears the uploaded picture's URL (`None`: the provider's, or generated).
    async fn set_picture(&self, user: UserId, url: Option<&str>) -> StoreResult<()>;
    /// Every conversation the user was ever a member of, with whom a profile change is shared.
    async fn conversations_of(&self, user: UserId) -> StoreResult<Vec<ConversationId>>;
    /// Renames accounts deleted before `before` to `~<id>` (no valid username looks like
    /// that) and drops their skeleton, so their old usernames may be registered again.
    async fn release_usernames(&self, before: DateTime<Utc>) -> StoreResult<()>;
    /// Adds a provider identity to an account; `Conflict("identity")` when it belongs to one.
    async fn link_identity(
        &self,
        user: UserId,
        provider: &str,
        subject: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The providers an account has identities with, by id.
    async fn linked_providers(&self, user: UserId) -> StoreResult<Vec<String>>;
    /// Whether some account's current picture is at `url`.
    async fn picture_in_use(&self, url: &str) -> StoreResult<bool>;
    /// The user's messages that are not deleted yet, by conversation.
    async fn live_messages_of(&self, user: UserId)
    -> StoreResult<Vec<(ConversationId, MessageId)>>;
}

/// The bodies both twins share, written once over sqlx's `Database` (sqlx numbers `$N`
/// parameters on SQLite too; `CAST($1 AS BIGINT)` types a maybe-NULL parameter for PostgreSQL
/// and means nothing to SQLite). The twins keep what differs: transactions that lock
/// (`BEGIN IMMEDIATE` against a row lock), conflict mapping, caches.
pub mod shared {
    use super::Invite;
    use crate::model::{ConversationId, MessageId, UserId};
    use crate::store::log::shared::Affected;
    use crate::store::log::{Columns, time};
    use crate::store::{StoreError, StoreResult};
    use chrono::{DateTime, Utc};
    use sqlx::{ColumnIndex, Database, Encode, Executor, IntoArguments, Type};

    const INVITE_COLUMNS: &str =
        "id, code, created_by, created_at, expires_at, max_uses, uses, revoked_at";

    fn invite_at<'r, R: Columns<'r>>(row: &'r R) -> Result<Invite, sqlx::Error> {
        Ok(Invite {
            id: row.int(0)?,
            code: row.text(1)?,
            created_by: UserId(row.int(2)?),
            created_at: time(row.int(3)?),
            expires_at: time(row.int(4)?),
            max_uses: row.int(5)?,
            uses: row.int(6)?,
            revoked_at: row.opt_int(7)?.map(time),
        })
    }

    pub async fn create_invite<DB>(
        pool: &sqlx::Pool<DB>,
        created_by: UserId,
        code: &str,
        now: i64,
        expires_at: DateTime<Utc>,
        max_uses: i64,
    ) -> Result<Invite, sqlx::Error>
    where
        DB: Database,
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
        usize: ColumnIndex<DB::Row>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> String: Encode<'q, DB> + Type<DB>,
        for<'r> i64: sqlx::Decode<'r, DB>,
        for<'r> String: sqlx::Decode<'r, DB>,
        DB::Arguments: IntoArguments<DB>,
    {
        let sql = format!(
            "INSERT INTO invites (code, created_by, created_at, expires_at, max_uses)
             VALUES ($1, $2, $3, $4, $5) RETURNING {INVITE_COLUMNS}"
        );
        let row = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql))
            .bind(code.to_owned())
            .bind(created_by.0)
            .bind(now)
            .bind(expires_at.timestamp_millis())
            .bind(max_uses)
            .fetch_one(pool)
            .await?;
        invite_at(&row)
    }

    /// Invites made by `created_by`, or by anyone; newest first.
    pub async fn invites<DB>(
        pool: &sqlx::Pool<DB>,
        created_by: Option<UserId>,
    ) -> Result<Vec<Invite>, sqlx::Error>
    where
        DB: Database,
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
        usize: ColumnIndex<DB::Row>,
        for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
        for<'r> i64: sqlx::Decode<'r, DB> + Type<DB>,
        for<'r> String: sqlx::Decode<'r, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
    {
        let sql = format!(
            "SELECT {INVITE_COLUMNS} FROM invites
             WHERE CAST($1 AS BIGINT) IS NULL OR created_by = $1
             ORDER BY id DESC"
        );
        let rows = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql))
            .bind(created_by.map(|u| u.0))
            .fetch_all(pool)
            .await?;
        rows.iter().map(invite_at).collect()
    }

    /// `NotFound` when no invite has this code.
    pub async fn invite<DB>(pool: &sqlx::Pool<DB>, code: &str) -> Result<Invite, sqlx::Error>
    where
        DB: Database,
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
        usize: ColumnIndex<DB::Row>,
        for<'q> String: Encode<'q, DB> + Type<DB>,
        for<'r> i64: sqlx::Decode<'r, DB> + Type<DB>,
        for<'r> String: sqlx::Decode<'r, DB>,
        DB::Arguments: IntoArguments<DB>,
    {
        let sql = format!("SELECT {INVITE_COLUMNS} FROM invites WHERE code = $1");
        let row = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql))
            .bind(code.to_owned())
            .fetch_one(pool)
            .await?;
        invite_at(&row)
    }

    /// Revokes one invite (one of `created_by`'s, or anyone's); `NotFound` otherwise.
    pub async fn revoke_invite<DB>(
        pool: &sqlx::Pool<DB>,
        id: i64,
        created_by: Option<UserId>,
        now: DateTime<Utc>,
    ) -> Result<StoreResult<()>, sqlx::Error>
    where
        DB: Database,
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
        DB::QueryResult: Affected,
    {
        let done = sqlx::query::<DB>(
            "UPDATE invites SET revoked_at = COALESCE(revoked_at, $1)
             WHERE id = $2 AND (CAST($3 AS BIGINT) IS NULL OR created_by = $3)",
        )
        .bind(now.timestamp_millis())
        .bind(id)
        .bind(created_by.map(|u| u.0))
        .execute(pool)
        .await?;
        Ok(if done.rows() == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        })
    }

    pub async fn password_hash_of<DB>(
        pool: &sqlx::Pool<DB>,
        user: UserId,
    ) -> Result<Option<String>, sqlx::Error>
    where
        DB: Database,
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
        DB::Arguments: IntoArguments<DB>,
    {
        let row: Option<(String,)> =
            sqlx::query_as::<DB, (String,)>("SELECT hash FROM passwords WHERE user_id = $1")
                .bind(user.0)
                .fetch_optional(pool)
                .await?;
        Ok(row.map(|(hash,)| hash))
    }

    /// The id and username of a live (not deleted) account, by address.
    pub async fn user_by_email<DB>(
        pool: &sqlx::Pool<DB>,
        email: &str,
    ) -> Result<Option<(UserId, String)>, sqlx::Error>
    where
        DB: Database,
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
        for<'q> String: Encode<'q, DB> + Type<DB>,
        for<'r> (i64, String): sqlx::FromRow<'r, DB::Row>,
        DB::Arguments: IntoArguments<DB>,
    {
        let row: Option<(i64, String)> = sqlx::query_as::<DB, (i64, String)>(
            "SELECT id, username FROM users WHERE email = $1 AND deleted_at IS NULL",
        )
        .bind(email.to_owned())
        .fetch_optional(pool)
        .await?;
        Ok(row.map(|(id, name)| (UserId(id), name)))
    }

    pub async fn email_of<DB>(
        pool: &sqlx::Pool<DB>,
        user: UserId,
    ) -> Result<Option<String>, sqlx::Error>
    where
        DB: Database,
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'r> (Option<String>,): sqlx::FromRow<'r, DB::Row>,
        DB::Arguments: IntoArguments<DB>,
    {
        let (email,): (Option<String>,) =
            sqlx::query_as::<DB, (Option<String>,)>("SELECT email FROM users WHERE id = $1")
                .bind(user.0)
                .fetch_one(pool)
                .await?;
        Ok(email)
    }

    /// `UPDATE users SET <column> = $1` for a live account.
    async fn set_text<DB>(
        pool: &sqlx::Pool<DB>,
        sql: &'static str,
        user: UserId,
        value: Option<&str>,
    ) -> Result<(), sqlx::Error>
    where
        DB: Database,
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
    {
        sqlx::query::<DB>(sql)
            .bind(value.map(str::to_owned))
            .bind(user.0)
            .execute(pool)
            .await?;
        Ok(())
    }

    pub async fn set_display_name<DB>(
        pool: &sqlx::Pool<DB>,
        user: UserId,
        name: Option<&str>,
    ) -> Result<(), sqlx::Error>
    where
        DB: Database,
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
    {
        set_text(
            pool,
            "UPDATE users SET display_name = $1 WHERE id = $2 AND deleted_at IS NULL",
            user,
            name,
        )
        .await
    }

    pub async fn set_picture<DB>(
        pool: &sqlx::Pool<DB>,
        user: UserId,
        url: Option<&str>,
    ) -> Result<(), sqlx::Error>
    where
        DB: Database,
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
    {
        set_text(
            pool,
            "UPDATE users SET picture = $1 WHERE id = $2 AND deleted_at IS NULL",
            user,
            url,
        )
        .await
    }

    pub async fn conversations_of<DB>(
        pool: &sqlx::Pool<DB>,
        user: UserId,
    ) -> Result<Vec<ConversationId>, sqlx::Error>
    where
        DB: Database,
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
        DB::Arguments: IntoArguments<DB>,
    {
        let rows: Vec<(i64,)> = sqlx::query_as::<DB, (i64,)>(
            "SELECT DISTINCT conversation_id FROM member_spans WHERE user_id = $1
             ORDER BY conversation_id",
        )
        .bind(user.0)
        .fetch_all(pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| ConversationId(id)).collect())
    }

    pub async fn release_usernames<DB>(
        pool: &sqlx::Pool<DB>,
        before: i64,
    ) -> Result<(), sqlx::Error>
    where
        DB: Database,
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
    {
        sqlx::query::<DB>(
            "UPDATE users SET username = '~' || CAST(id AS TEXT), skeleton = NULL
             WHERE deleted_at IS NOT NULL AND deleted_at < $1 AND username NOT LIKE '~%'",
        )
        .bind(before)
        .execute(pool)
        .await?;
        Ok(())
    }

    pub async fn link_identity<DB>(
        pool: &sqlx::Pool<DB>,
        user: UserId,
        provider: &str,
        subject: &str,
        now: DateTime<Utc>,
    ) -> Result<StoreResult<()>, sqlx::Error>
    where
        DB: Database,
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> String: Encode<'q, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
        DB::QueryResult: Affected,
    {
        let done = sqlx::query::<DB>(
            "INSERT INTO identities (provider, subject, user_id, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (provider, subject) DO NOTHING",
        )
        .bind(provider.to_owned())
        .bind(subject.to_owned())
        .bind(user.0)
        .bind(now.timestamp_millis())
        .execute(pool)
        .await?;
        Ok(if done.rows() == 0 {
            Err(StoreError::Conflict("identity"))
        } else {
            Ok(())
        })
    }

    pub async fn linked_providers<DB>(
        pool: &sqlx::Pool<DB>,
        user: UserId,
    ) -> Result<Vec<String>, sqlx::Error>
    where
        DB: Database,
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
        DB::Arguments: IntoArguments<DB>,
    {
        let rows: Vec<(String,)> = sqlx::query_as::<DB, (String,)>(
            "SELECT DISTINCT provider FROM identities WHERE user_id = $1 ORDER BY provider",
        )
        .bind(user.0)
        .fetch_all(pool)
        .await?;
        Ok(rows.into_iter().map(|(p,)| p).collect())
    }

    pub async fn picture_in_use<DB>(pool: &sqlx::Pool<DB>, url: &str) -> Result<bool, sqlx::Error>
    where
        DB: Database,
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
        for<'q> String: Encode<'q, DB> + Type<DB>,
        for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
        DB::Arguments: IntoArguments<DB>,
    {
        let found: Option<(i64,)> = sqlx::query_as::<DB, (i64,)>(
            "SELECT id FROM users WHERE picture = $1 AND deleted_at IS NULL LIMIT 1",
        )
        .bind(url.to_owned())
        .fetch_optional(pool)
        .await?;
        Ok(found.is_some())
    }

    pub async fn live_messages_of<DB>(
        pool: &sqlx::Pool<DB>,
        user: UserId,
    ) -> Result<Vec<(ConversationId, MessageId)>, sqlx::Error>
    where
        DB: Database,
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'r> (i64, i64): sqlx::FromRow<'r, DB::Row>,
        DB::Arguments: IntoArguments<DB>,
    {
        let rows: Vec<(i64, i64)> = sqlx::query_as::<DB, (i64, i64)>(
            "SELECT conversation_id, id FROM messages WHERE sender_id = $1 AND deleted_at IS NULL
             ORDER BY id",
        )
        .bind(user.0)
        .fetch_all(pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(c, m)| (ConversationId(c), MessageId(m)))
            .collect())
    }
}
