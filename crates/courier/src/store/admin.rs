//! `trait AdminStore`: what the server's admin sees and changes beyond ordinary accounts:
//! every person (with search), disabled accounts, admin grants, and reported messages. Every
//! `Store` is also an `AdminStore`. The SQL is written once in `shared` below; `sqlite/admin.rs`
//! and `postgres/admin.rs` only map each store's errors.

use super::StoreResult;
use crate::model::{ConversationId, MessageId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// A person as the admin sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUser {
    pub id: UserId,
    pub username: String,
    pub created_at: DateTime<Utc>,
    pub is_admin: bool,
    pub deleted: bool,
    pub disabled_at: Option<DateTime<Utc>>,
}

/// A reported message, with enough of it for the admin to decide without opening it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub id: i64,
    pub reporter: UserId,
    pub reporter_name: String,
    pub conversation: ConversationId,
    pub message: MessageId,
    pub sender: UserId,
    pub sender_name: String,
    /// The message text now ('' once deleted).
    pub content: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub resolved_by: Option<UserId>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A person's own records, for a data-protection export: (conversation, kind, title, role),
/// (conversation, message, content, created, edited, deleted) and (message, emoji, created),
/// times in milliseconds since the epoch.
/// (conversation, message, content, created, edited, deleted).
pub type SentMessageRow = (i64, i64, String, i64, Option<i64>, Option<i64>);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportRows {
    pub memberships: Vec<(i64, String, Option<String>, String)>,
    pub messages: Vec<SentMessageRow>,
    pub reactions: Vec<(i64, String, i64)>,
}

#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Up to `limit` people whose username contains `search` (any case), by username.
    async fn admin_users(&self, search: Option<&str>, limit: u32) -> StoreResult<Vec<AdminUser>>;
    /// `NotFound` when the user does not exist.
    async fn admin_user(&self, user: UserId) -> StoreResult<AdminUser>;
    /// Disables (`Some(now)`) or enables (`None`) an account; `NotFound` when it does not exist.
    async fn set_disabled(&self, user: UserId, at: Option<DateTime<Utc>>) -> StoreResult<()>;
    /// Grants or revokes the server admin role; `NotFound` when the user does not exist.
    async fn set_admin(&self, user: UserId, admin: bool) -> StoreResult<()>;

    /// Files a report; `Conflict("report")` when the reporter has an open one on the message.
    async fn create_report(
        &self,
        reporter: UserId,
        conversation: ConversationId,
        message: MessageId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<i64>;
    /// Newest first: open ones only, or all of them.
    async fn reports(&self, open_only: bool, limit: u32) -> StoreResult<Vec<Report>>;
    /// Everything `user` sent, reacted and belongs to, oldest first.
    async fn export_rows(&self, user: UserId) -> StoreResult<ExportRows>;
    /// Resolves an open report; `NotFound` when it is unknown or already resolved.
    async fn resolve_report(&self, id: i64, by: UserId, now: DateTime<Utc>) -> StoreResult<()>;
}

/// The SQL both stores run for `AdminStore`, written once over sqlx's `Database` like
/// `lifecycle` and `search`; only a username search and the admin flag's type differ, chosen by
/// the store's `Dialect`. Errors stay `sqlx::Error`: each store classifies its own.
pub mod shared {
    use super::{AdminUser, ExportRows, Report};
    use crate::model::{ConversationId, MessageId, UserId};
    use crate::store::log::{Columns, shared::Affected, time};
    use crate::store::search::{Dialect, Indexed};
    use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Type};

    const fn user_columns(dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite => {
                "id, username, created_at, is_admin <> 0, deleted_at IS NOT NULL, disabled_at"
            }
            Dialect::Postgres => {
                "id, username, created_at, is_admin, deleted_at IS NOT NULL, disabled_at"
            }
        }
    }

    /// `$1` (a search, or NULL for everyone) found in the username, any case.
    const fn username_contains(dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite => "$1 IS NULL OR instr(lower(username), lower($1)) > 0",
            Dialect::Postgres => "$1::TEXT IS NULL OR strpos(lower(username), lower($1)) > 0",
        }
    }

    fn user_at<'r, R: Columns<'r> + sqlx::Row>(row: &'r R) -> Result<AdminUser, sqlx::Error>
    where
        usize: ColumnIndex<R>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
    {
        Ok(AdminUser {
            id: UserId(row.int(0)?),
            username: row.text(1)?,
            created_at: time(row.int(2)?),
            is_admin: row.try_get(3)?,
            deleted: row.try_get(4)?,
            disabled_at: row.opt_int(5)?.map(time),
        })
    }

    fn report_at<'r, R: Columns<'r>>(row: &'r R) -> Result<Report, sqlx::Error> {
        Ok(Report {
            id: row.int(0)?,
            reporter: UserId(row.int(1)?),
            reporter_name: row.text(2)?,
            conversation: ConversationId(row.int(3)?),
            message: MessageId(row.int(4)?),
            sender: UserId(row.int(5)?),
            sender_name: row.text(6)?,
            content: row.text(7)?,
            reason: row.text(8)?,
            created_at: time(row.int(9)?),
            resolved_by: row.opt_int(10)?.map(UserId),
            resolved_at: row.opt_int(11)?.map(time),
        })
    }

    pub async fn admin_users<DB>(
        pool: &Pool<DB>,
        search: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AdminUser>, sqlx::Error>
    where
        DB: Indexed,
        for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
        usize: ColumnIndex<DB::Row>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
        for<'r> i64: Decode<'r, DB>,
        for<'r> String: Decode<'r, DB>,
        for<'r> bool: Decode<'r, DB> + Type<DB>,
        String: Type<DB>,
        DB::Arguments: IntoArguments<DB>,
    {
        let sql = format!(
            "SELECT {} FROM users WHERE {} ORDER BY lower(username) LIMIT $2",
            user_columns(DB::DIALECT),
            username_contains(DB::DIALECT),
        );
        let rows = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql))
            .bind(search.filter(|s| !s.is_empty()).map(str::to_owned))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
        rows.iter().map(user_at).collect()
    }

    pub async fn admin_user<DB>(pool: &Pool<DB>, user: UserId) -> Result<AdminUser, sqlx::Error>
    where
        DB: Indexed,
        for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
        usize: ColumnIndex<DB::Row>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'r> i64: Decode<'r, DB>,
        for<'r> String: Decode<'r, DB>,
        for<'r> bool: Decode<'r, DB> + Type<DB>,
        String: Type<DB>,
        DB::Arguments: IntoArguments<DB>,
    {
        let sql = format!(
            "SELECT {} FROM users WHERE id = $1",
            user_columns(DB::DIALECT)
        );
        let row = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql))
            .bind(user.0)
            .fetch_one(pool)
            .await?;
        user_at(&row)
    }

    /// Rows changed: 0 when the user does not exist.
    pub async fn set_disabled<DB>(
        pool: &Pool<DB>,
        user: UserId,
        at: Option<i64>,
    ) -> Result<u64, sqlx::Error>
    where
        DB: Indexed,
        for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
        DB::QueryResult: Affected,
    {
        let done = sqlx::query::<DB>("UPDATE users SET disabled_at = $1 WHERE id = $2")
            .bind(at)
            .bind(user.0)
            .execute(pool)
            .await?;
        Ok(done.rows())
    }

    /// Rows changed: 0 when the user does not exist.
    pub async fn set_admin<DB>(
        pool: &Pool<DB>,
        user: UserId,
        admin: bool,
    ) -> Result<u64, sqlx::Error>
    where
        DB: Indexed,
        for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> bool: Encode<'q, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
        DB::QueryResult: Affected,
    {
        let done = sqlx::query::<DB>("UPDATE users SET is_admin = $1 WHERE id = $2")
            .bind(admin)
            .bind(user.0)
            .execute(pool)
            .await?;
        Ok(done.rows())
    }

    pub async fn create_report<DB>(
        pool: &Pool<DB>,
        reporter: UserId,
        conversation: ConversationId,
        message: MessageId,
        reason: &str,
        now: i64,
    ) -> Result<i64, sqlx::Error>
    where
        DB: Indexed,
        for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
        usize: ColumnIndex<DB::Row>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> String: Encode<'q, DB> + Type<DB>,
        for<'r> i64: Decode<'r, DB>,
        for<'r> String: Decode<'r, DB>,
        String: Type<DB>,
        DB::Arguments: IntoArguments<DB>,
    {
        let row = sqlx::query::<DB>(
            "INSERT INTO reports (reporter_id, conversation_id, message_id, reason, created_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(reporter.0)
        .bind(conversation.0)
        .bind(message.0)
        .bind(reason.to_owned())
        .bind(now)
        .fetch_one(pool)
        .await?;
        row.int(0)
    }

    pub async fn reports<DB>(
        pool: &Pool<DB>,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<Report>, sqlx::Error>
    where
        DB: Indexed,
        for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
        usize: ColumnIndex<DB::Row>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> bool: Encode<'q, DB> + Type<DB>,
        for<'r> i64: Decode<'r, DB>,
        for<'r> String: Decode<'r, DB>,
        String: Type<DB>,
        DB::Arguments: IntoArguments<DB>,
    {
        let rows = sqlx::query::<DB>(
            "SELECT r.id, r.reporter_id, ru.username, r.conversation_id, r.message_id,
                    m.sender_id, su.username, m.content, r.reason, r.created_at,
                    r.resolved_by, r.resolved_at
             FROM reports r
             JOIN users ru ON ru.id = r.reporter_id
             JOIN messages m ON m.id = r.message_id
             JOIN users su ON su.id = m.sender_id
             WHERE NOT $1 OR r.resolved_at IS NULL
             ORDER BY r.id DESC LIMIT $2",
        )
        .bind(open_only)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
        rows.iter().map(report_at).collect()
    }

    pub async fn export_rows<DB>(pool: &Pool<DB>, user: UserId) -> Result<ExportRows, sqlx::Error>
    where
        DB: Indexed,
        for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'r> (i64, String, Option<String>, String): sqlx::FromRow<'r, DB::Row>,
        for<'r> super::SentMessageRow: sqlx::FromRow<'r, DB::Row>,
        for<'r> (i64, String, i64): sqlx::FromRow<'r, DB::Row>,
        DB::Arguments: IntoArguments<DB>,
    {
        let memberships = sqlx::query_as::<DB, _>(
            "SELECT p.conversation_id, c.kind, c.title, p.role
             FROM participants p JOIN conversations c ON c.id = p.conversation_id
             WHERE p.user_id = $1 ORDER BY p.conversation_id",
        )
        .bind(user.0)
        .fetch_all(pool)
        .await?;
        let messages = sqlx::query_as::<DB, _>(
            "SELECT conversation_id, id, content, created_at, edited_at, deleted_at
             FROM messages WHERE sender_id = $1 ORDER BY id",
        )
        .bind(user.0)
        .fetch_all(pool)
        .await?;
        let reactions = sqlx::query_as::<DB, _>(
            "SELECT message_id, emoji, created_at FROM reactions WHERE user_id = $1
             ORDER BY created_at, message_id",
        )
        .bind(user.0)
        .fetch_all(pool)
        .await?;
        Ok(ExportRows {
            memberships,
            messages,
            reactions,
        })
    }

    /// Rows changed: 0 when the report is unknown or already resolved.
    pub async fn resolve_report<DB>(
        pool: &Pool<DB>,
        id: i64,
        by: UserId,
        now: i64,
    ) -> Result<u64, sqlx::Error>
    where
        DB: Indexed,
        for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
        DB::QueryResult: Affected,
    {
        let done = sqlx::query::<DB>(
            "UPDATE reports SET resolved_by = $1, resolved_at = $2
             WHERE id = $3 AND resolved_at IS NULL",
        )
        .bind(by.0)
        .bind(now)
        .bind(id)
        .execute(pool)
        .await?;
        Ok(done.rows())
    }
}
