//! `PgStore`: sqlx over PostgreSQL, shared by every node of a cluster.
//!
//! Message ids must follow commit order (see `store`), and a sequence does not give that:
//! `nextval` hands out 10 to A and 11 to B, B commits first, and a stream that sent 11 and
//! resumes from it skips 10 forever. So ids come from the single row of `message_position`:
//! every append transaction locks that row before it reads anything an id, a `prev` or a
//! replay depends on, and keeps the lock until it commits. Appends, on every node, therefore
//! run one after another: the next transaction can only read the counter once the previous
//! one has committed and is visible (PostgreSQL releases row locks after the commit is visible
//! to new snapshots). A reader that sees position p thus sees every position below p. The same
//! lock makes `prev` (a recipient's inbox head before this message) exact: no other append can
//! commit between reading the heads and writing the messages.
//!
//! The one read before the lock is the participants of the group's conversations, which
//! cannot go stale: a conversation commits together with its participants, and 1:1
//! membership never changes afterwards. (A future change of membership must be read under
//! the lock instead.)
//!
//! Like `SqliteStore`, sends go through one writer task per node (`writer`) that commits in
//! groups; changes (group changes, message edits, reactions, receipts) take the same lock in
//! their own transaction.
//!
//! Connection failures (refused, reset, admin shutdown, pool timeout) become
//! `StoreError::Unavailable` (503). The pool tests connections before handing them out and
//! waits at most `acquire_timeout` for one, so when PostgreSQL returns the next request simply
//! gets a fresh connection: no restart needed.

mod accounts;
mod admin;
mod people;
mod presence;
mod search;
mod writer;

use super::lifecycle::{self, Decorate};
use super::log::MESSAGE_COLUMNS;
use super::log::shared;
use super::log::{
    self, CONVERSATION_VIEW, SORT_KEY, change_at, conversation_view, member_at, message_at, time,
    user_at,
};
use super::{Appended, NewMessage, Store, StoreError, StoreResult};
use super::{Changed, log::merge};
use crate::model::{
    ChangeRequest, ConversationId, ConversationView, LogEntry, Member, Message, MessageId,
    READ_POSITIONS_MAX, User, UserId, Username,
};
use async_trait::async_trait;
use chrono::Utc;
use sqlx::PgExecutor;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use writer::{MAX_GROUP, WriteJob, change_under_lock, write_loop};

#[derive(Debug, Clone)]
pub struct PgOptions {
    pub max_connections: u32,
    /// How long a request waits for a connection before it gets 503.
    pub acquire_timeout: Duration,
    /// A transaction left idle this long (a stalled node) is aborted, releasing the counter lock.
    pub idle_in_transaction_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            idle_in_transaction_timeout: Duration::from_secs(15),
        }
    }
}

pub struct PgStore {
    pool: PgPool,
    writer: mpsc::Sender<WriteJob>,
    instance: String,
}

impl PgStore {
    /// Connects to `url` and applies the embedded migrations (safe to run from several nodes
    /// at once: sqlx serialises them with an advisory lock).
    pub async fn open(url: &str, options: &PgOptions) -> StoreResult<Self> {
        let idle = format!("{}ms", options.idle_in_transaction_timeout.as_millis());
        let connect = PgConnectOptions::from_str(url)
            .map_err(other)?
            .application_name("courier")
            .options([("idle_in_transaction_session_timeout", idle.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(true)
            .connect_with(connect)
            .await
            .map_err(classify)?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(other)?;
        backfill_skeletons(&pool).await?;

        sqlx::query("INSERT INTO meta (key, value) VALUES ('instance', $1) ON CONFLICT DO NOTHING")
            .bind(super::sqlite::random_instance_id())
            .execute(&pool)
            .await
            .map_err(classify)?;
        let instance: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'instance'")
            .fetch_one(&pool)
            .await
            .map_err(classify)?;

        let (writer, jobs) = mpsc::channel(MAX_GROUP * 4);
        tokio::spawn(write_loop(pool.clone(), jobs));
        Ok(Self {
            pool,
            writer,
            instance,
        })
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Other(Box::new(e))
}

/// True when the error means "the database cannot be reached right now", not "this request is wrong".
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P: admin/crash shutdown, cannot connect now;
            // 53: insufficient resources (too many connections, disk full).
            code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
        }),
        _ => false,
    }
}

fn classify(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        e if is_unavailable(&e) => StoreError::Unavailable(Box::new(e)),
        e => StoreError::Other(Box::new(e)),
    }
}

/// The oldest message position the member may read; `NotFound` unless they are a member.
async fn is_participant(
    db: impl PgExecutor<'_>,
    user: UserId,
    conversation: ConversationId,
) -> StoreResult<i64> {
    sqlx::query_scalar(
        "SELECT history_from FROM participants WHERE conversation_id = $1 AND user_id = $2",
    )
    .bind(conversation.0)
    .bind(user.0)
    .fetch_optional(db)
    .await
    .map_err(classify)?
    .ok_or(StoreError::NotFound)
}

/// Gives names from before migration 0004 their skeleton; a lookalike of an older name
/// keeps none (see the migration). Nodes starting together may race: the loser's UPDATE
/// finds the row done or the skeleton taken, and skips it.
async fn backfill_skeletons(pool: &PgPool) -> StoreResult<()> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, username FROM users WHERE skeleton IS NULL ORDER BY id")
            .fetch_all(pool)
            .await
            .map_err(classify)?;
    for (id, name) in rows {
        let Ok(name) = Username::parse(&name) else {
            continue;
        };
        sqlx::query(
            "UPDATE users SET skeleton = $1 WHERE id = $2 AND skeleton IS NULL
             AND NOT EXISTS (SELECT 1 FROM users WHERE skeleton = $1)",
        )
        .bind(name.skeleton())
        .bind(id)
        .execute(pool)
        .await
        .or_else(|e| match e.as_database_error() {
            Some(db) if db.is_unique_violation() => Ok(Default::default()),
            _ => Err(classify(e)),
        })?;
    }
    Ok(())
}

super::uploads::upload_store!(PgStore, sqlx::Postgres);

#[async_trait]
impl Store for PgStore {
    fn instance_id(&self) -> &str {
        &self.instance
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn find_or_create_user(&self, username: &Username) -> StoreResult<User> {
        // No conflict target: the arbiters are the unique indexes on lower(username) and on
        // the lookalike skeleton.
        sqlx::query(
            "INSERT INTO users (username, skeleton, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(username.as_str())
        .bind(username.skeleton())
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        match self.user_by_username(username).await {
            // Not the same name, so a lookalike holds the skeleton.
            Err(StoreError::NotFound) => Err(StoreError::Conflict("username")),
            found => found,
        }
    }

    async fn user(&self, id: UserId) -> StoreResult<User> {
        let row = sqlx::query("SELECT u.id, u.username, COALESCE(u.picture, u.avatar_url), u.display_name, u.deleted_at FROM users u WHERE u.id = $1")
            .bind(id.0)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        user_at(&row, 0).map_err(classify)
    }

    async fn user_by_username(&self, username: &Username) -> StoreResult<User> {
        let row = sqlx::query(
            "SELECT u.id, u.username, COALESCE(u.picture, u.avatar_url), u.display_name, u.deleted_at FROM users u WHERE lower(u.username) = lower($1)",
        )
        .bind(username.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        user_at(&row, 0).map_err(classify)
    }

    async fn search_usernames(
        &self,
        prefix: &str,
        exclude: UserId,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        // Escape LIKE's wildcards so "a_" means a literal underscore.
        let pattern = format!(
            "{}%",
            prefix
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        // SQLite sorts this column with NOCASE; "C" keeps the order byte-wise like it does.
        sqlx::query_scalar(
            "SELECT username FROM users WHERE lower(username) LIKE $1 ESCAPE '\\' AND id <> $2
             ORDER BY lower(username) COLLATE \"C\" LIMIT $3",
        )
        .bind(pattern)
        .bind(exclude.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)
    }

    async fn find_or_create_direct(
        &self,
        a: UserId,
        b: UserId,
    ) -> StoreResult<(ConversationId, bool)> {
        let key = format!("{}:{}", a.min(b), a.max(b));
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let now = now_ms();
        // A concurrent creator of the same pair makes this wait for its commit, then do nothing.
        let created: Option<i64> = sqlx::query_scalar(
            "INSERT INTO conversations (direct_key, created_at) VALUES ($1, $2)
             ON CONFLICT (direct_key) DO NOTHING RETURNING id",
        )
        .bind(&key)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        let Some(id) = created else {
            // Read COMMITTED: this statement's snapshot sees the winner's conversation and
            // participants, which it committed together.
            let id: i64 = sqlx::query_scalar("SELECT id FROM conversations WHERE direct_key = $1")
                .bind(&key)
                .fetch_one(&mut *tx)
                .await
                .map_err(classify)?;
            tx.commit().await.map_err(classify)?;
            return Ok((ConversationId(id), false));
        };
        for user in [a, b] {
            sqlx::query(
                "INSERT INTO participants (conversation_id, user_id, joined_at) VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(user.0)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            // A direct conversation's two members never change: one span from the start.
            sqlx::query(
                "INSERT INTO member_spans (conversation_id, user_id, from_position)
                 VALUES ($1, $2, 0)",
            )
            .bind(id)
            .bind(user.0)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok((ConversationId(id), true))
    }

    async fn conversation(
        &self,
        viewer: UserId,
        id: ConversationId,
    ) -> StoreResult<ConversationView> {
        let sql = format!("{CONVERSATION_VIEW} AND c.id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(viewer.0)
            .bind(id.0)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        let mut view = conversation_view(&row).map_err(classify)?;
        if view.member_count <= READ_POSITIONS_MAX {
            let positions: Vec<(i64, i64)> = sqlx::query_as(log::READ_POSITIONS)
                .bind(id.0)
                .bind(viewer.0)
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
            view.read_positions = Some(
                positions
                    .into_iter()
                    .map(|(u, m)| (UserId(u), MessageId(m)))
                    .collect(),
            );
            let delivered: Vec<(i64, i64)> = sqlx::query_as(log::DELIVERED_POSITIONS)
                .bind(id.0)
                .bind(viewer.0)
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
            view.delivered_positions = Some(
                delivered
                    .into_iter()
                    .map(|(u, m)| (UserId(u), MessageId(m)))
                    .collect(),
            );
        }
        Ok(view)
    }

    async fn conversations(
        &self,
        viewer: UserId,
        before: Option<ConversationId>,
        limit: u32,
    ) -> StoreResult<Vec<ConversationView>> {
        let sql = format!(
            "{CONVERSATION_VIEW} AND {SORT_KEY} IS NOT NULL
               AND ($2::BIGINT IS NULL OR {SORT_KEY} <
                    (SELECT COALESCE(c.last_message_id, c.created_position) FROM conversations c
                     JOIN participants bp ON bp.conversation_id = c.id AND bp.user_id = $1
                     WHERE c.id = $2))
             ORDER BY {SORT_KEY} DESC LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(viewer.0)
            .bind(before.map(|b| b.0))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(conversation_view)
            .collect::<Result<_, _>>()
            .map_err(classify)
    }

    async fn append_message(&self, new: NewMessage) -> StoreResult<Appended> {
        let (reply, answer) = oneshot::channel();
        let unavailable = || StoreError::Unavailable("the PostgreSQL writer has stopped".into());
        self.writer
            .send(WriteJob { new, reply })
            .await
            .map_err(|_| unavailable())?;
        answer.await.map_err(|_| unavailable())?
    }

    async fn messages(
        &self,
        viewer: UserId,
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        let history_from = is_participant(&self.pool, viewer, conversation).await?;
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m
             WHERE m.conversation_id = $1 AND ($2::BIGINT IS NULL OR m.id < $2) AND m.id >= $4
             ORDER BY m.id DESC LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(conversation.0)
            .bind(before.map(|b| b.0))
            .bind(i64::from(limit))
            .bind(history_from)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let mut page = rows
            .iter()
            .map(|r| message_at(r, 0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(classify)?;
        lifecycle::decorate(&self.pool, viewer, &mut page, Decorate::All)
            .await
            .map_err(classify)?;
        Ok(page)
    }

    async fn message(
        &self,
        viewer: UserId,
        conversation: ConversationId,
        id: MessageId,
    ) -> StoreResult<Message> {
        let history_from = is_participant(&self.pool, viewer, conversation).await?;
        lifecycle::one(&self.pool, viewer, conversation, id, history_from)
            .await
            .map_err(classify)?
            .ok_or(StoreError::NotFound)
    }

    async fn reactors(
        &self,
        viewer: UserId,
        conversation: ConversationId,
        id: MessageId,
        limit: u32,
    ) -> StoreResult<Vec<(String, User)>> {
        self.message(viewer, conversation, id).await?;
        lifecycle::reactors(&self.pool, id, limit)
            .await
            .map_err(classify)
    }

    async fn save_push_subscription(&self, target: &super::PushTarget) -> StoreResult<()> {
        shared::save_push(&self.pool, target, now_ms())
            .await
            .map_err(classify)
    }

    async fn delete_push_subscription(&self, user: UserId, endpoint: &str) -> StoreResult<()> {
        match shared::delete_push(&self.pool, user, endpoint).await {
            Ok(0) => Err(StoreError::NotFound),
            Ok(_) => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }

    async fn drop_push_endpoint(&self, endpoint: &str) -> StoreResult<()> {
        shared::drop_push(&self.pool, endpoint)
            .await
            .map_err(classify)
    }

    async fn push_targets(
        &self,
        conversation: ConversationId,
        sender: UserId,
    ) -> StoreResult<Vec<super::PushTarget>> {
        shared::push_targets(&self.pool, conversation, sender)
            .await
            .map_err(classify)
    }

    async fn set_muted(
        &self,
        viewer: UserId,
        conversation: ConversationId,
        muted: bool,
    ) -> StoreResult<()> {
        match shared::set_muted(&self.pool, viewer, conversation, muted).await {
            Ok(0) => Err(StoreError::NotFound),
            Ok(_) => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }

    async fn acknowledge(
        &self,
        user: UserId,
        device: &str,
        position: MessageId,
    ) -> StoreResult<Vec<super::Delivery>> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(classify)?;
        let delivered =
            lifecycle::acknowledge::<sqlx::Postgres>(&mut tx, user, device, position, now_ms())
                .await
                .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(delivered)
    }

    async fn read_receipts(&self, user: UserId) -> StoreResult<bool> {
        lifecycle::read_receipts(&self.pool, user)
            .await
            .map_err(classify)?
            .ok_or(StoreError::NotFound)
    }

    async fn set_read_receipts(&self, user: UserId, on: bool) -> StoreResult<()> {
        lifecycle::set_read_receipts(&self.pool, user, on)
            .await
            .map_err(classify)
    }

    async fn read_marker(
        &self,
        viewer: UserId,
        conversation: ConversationId,
    ) -> StoreResult<(MessageId, MessageId, bool)> {
        lifecycle::read_marker(&self.pool, viewer, conversation)
            .await
            .map_err(classify)?
            .ok_or(StoreError::NotFound)
    }

    async fn advance_read_marker(
        &self,
        viewer: UserId,
        conversation: ConversationId,
        to: MessageId,
    ) -> StoreResult<()> {
        lifecycle::advance_read_marker(&self.pool, viewer, conversation, to)
            .await
            .map_err(classify)
    }

    async fn inbox_head(&self, user: UserId) -> StoreResult<MessageId> {
        let id: i64 = sqlx::query_scalar(log::INBOX_HEAD)
            .bind(user.0)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        Ok(MessageId(id))
    }

    async fn inbox_after(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> StoreResult<Vec<LogEntry>> {
        let messages = sqlx::query(log::INBOX_MESSAGES)
            .bind(user.0)
            .bind(after.0)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let changes = sqlx::query(log::INBOX_CHANGES)
            .bind(user.0)
            .bind(after.0)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let mut messages = messages
            .iter()
            .map(|r| message_at(r, 0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(classify)?;
        lifecycle::decorate(&self.pool, user, &mut messages, Decorate::Quotes)
            .await
            .map_err(classify)?;
        let messages = messages.into_iter().map(LogEntry::Message).collect();
        let changes = changes
            .iter()
            .map(|r| change_at(r).map(LogEntry::Change))
            .collect::<Result<_, _>>()
            .map_err(classify)?;
        Ok(merge(messages, changes, limit as usize))
    }

    async fn head(&self) -> StoreResult<MessageId> {
        // The counter may run ahead of the last entry only inside an uncommitted
        // transaction, which this snapshot cannot see.
        let id: i64 = sqlx::query_scalar(
            "SELECT GREATEST((SELECT COALESCE(MAX(id), 0) FROM messages),
                             (SELECT COALESCE(MAX(position), 0) FROM conversation_events))",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        Ok(MessageId(id))
    }

    async fn apply_change(&self, request: ChangeRequest) -> StoreResult<Option<Changed>> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(classify)?;
        // The counter lock orders this change with every send and change on every node: the
        // roster, the heads and the position below are all read after it.
        let position: i64 =
            sqlx::query_scalar("SELECT value FROM message_position WHERE single FOR UPDATE")
                .fetch_one(&mut *tx)
                .await
                .map_err(classify)?;
        let position = position + 1;
        let changed = match change_under_lock(&mut tx, position, &request).await {
            Ok(Ok(Some(changed))) => changed,
            // Nothing changes: the rollback on drop releases the counter untouched.
            Ok(Ok(None)) => return Ok(None),
            Ok(Err(refused)) => return Err(refused),
            Err(e) => return Err(classify(e)),
        };
        sqlx::query("UPDATE message_position SET value = $1 WHERE single")
            .bind(position)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(Some(changed))
    }

    async fn members(
        &self,
        viewer: UserId,
        conversation: ConversationId,
        after: Option<UserId>,
        limit: u32,
    ) -> StoreResult<Vec<Member>> {
        is_participant(&self.pool, viewer, conversation).await?;
        let rows = sqlx::query(log::MEMBERS)
            .bind(conversation.0)
            .bind(after.map_or(0, |u| u.0))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(member_at)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }
}
