//! `PgStore`: sqlx over PostgreSQL, shared by every node of a cluster.
//!
//! **What a stream needs.** A user's stream reads "the entries visible to me with a position
//! above my cursor" and checks each entry's `prev` for that user (`realtime`). So positions
//! need not follow commit order across the whole store, only per user: once an entry visible
//! to U is visible, every entry visible to U at a smaller position must be visible too, and
//! `prev` must name U's previous entry exactly. Entries of users who share nothing may commit
//! out of position order; no stream can tell.
//!
//! **How appends keep it** (sends in `writer`, changes in `apply_change`). Positions come from
//! the sequence `log_position`. A bare sequence is not enough: `nextval` hands 10 to A and 11
//! to B, B commits first, and a stream that sent 11 would skip 10 forever. So every append
//! transaction, before it takes a position, locks its audience (`audience`), in one global
//! order that rules out deadlock:
//! 1. the conversations it writes in, ascending; then it reads their membership, which
//!    cannot change underneath (a membership change locks the conversation too);
//! 2. the stripe (user id mod `USER_STRIPES`) of every user whose stream shows the entry: the
//!    members at its position, the added and the removed included, and the sender;
//! 3. then `nextval` for its positions, the inbox heads for `prev`, the writes, COMMIT.
//!
//! The stripes are held from before `nextval` until after the commit is visible (PostgreSQL
//! releases locks after that). Two appends reaching U share U's stripe: the second takes its
//! positions only after the first committed, so they are larger *and* become visible later.
//! Hence U's entries commit in position order, and U's inbox heads, read under the stripe,
//! are exact. The sequence must hand out values in call order across backends (`CACHE 1`,
//! see migration 0018), or the second could get a smaller value than the first.
//!
//! An audience too large for the lock budget takes one exclusive "wide" lock instead, which
//! every other append holds shared: it then runs alone in the cluster (`audience`).
//!
//! **Readers** need one snapshot: a stream's catch-up (`inbox_after`) reads messages and
//! changes in one statement (`log::inbox_sql`), since two statements see two moments and a
//! message committed between them, under a change seen by the second, would be skipped.
//!
//! **Readers of a global position**, and why each is still right:
//! - `head` (the newest committed position) only rejects cursors "from the future" (a
//!   restored backup): a cursor a stream handed out names a committed entry, so it is never
//!   above `head`. It must never be a stream's *starting* cursor: an uncommitted lower
//!   position of that user would then be skipped. Streams start from `inbox_head`.
//! - `inbox_head(U)` is the newest of U's conversations' `last_position` (or where U left).
//!   Every entry of a conversation locks all its members' stripes, read receipts included
//!   (they move `last_position` for everyone), so that value is U's own newest committed
//!   entry and nothing of U's below it is still in flight.
//! - The conversation list orders by last message position and pages by it; it is a
//!   display order, not a cursor, and each conversation's own value moves under its lock.
//! - Read markers, unread counts (`seq`) and the newest message of a conversation are read
//!   and written under the conversation's lock, as before under the global one.
//! - Search pages backwards by message id (`before`); one conversation's history too, but
//!   its messages commit in order under its lock. A search hit committed late either lands
//!   on a later page or above the first one, as a newer message would; neither is a cursor.
//! - `message_position`, the global counter that serialised every append until migration 0018,
//!   is kept for the upgrade fixtures and no longer read; a trigger refuses writes to it, so
//!   a node of an older release left running fails its appends instead of misordering them.
//!
//! Connection failures (refused, reset, admin shutdown, pool timeout) become
//! `StoreError::Unavailable` (503). The pool tests connections before handing them out and
//! waits at most `acquire_timeout` for one, so when PostgreSQL returns the next request simply
//! gets a fresh connection: no restart needed.

mod accounts;
mod admin;
mod audience;
mod people;
mod presence;
mod search;
mod writer;

use super::Changed;
use super::lifecycle::{self, Decorate};
use super::log::MESSAGE_COLUMNS;
use super::log::shared;
use super::log::{
    self, CONVERSATION_VIEW, SORT_KEY, conversation_view, member_at, message_at, user_at,
};
use super::{Appended, NewMessage, Store, StoreError, StoreResult};
use crate::model::{
    ChangeRequest, ConversationId, ConversationView, LogEntry, Member, Message, MessageId, Op,
    READ_POSITIONS_MAX, User, UserId, Username,
};
use async_trait::async_trait;
use audience::{LOCKS_MAX, Reach};
use chrono::Utc;
use sqlx::PgExecutor;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use writer::{QUEUE, WriteJob, change_under_lock, write_loop};

pub use audience::{USER_STRIPES, user_lock};

#[derive(Debug, Clone)]
pub struct PgOptions {
    pub max_connections: u32,
    /// How long a request waits for a connection before it gets 503.
    pub acquire_timeout: Duration,
    /// A transaction left idle this long (a stalled node) is aborted, releasing its locks.
    pub idle_in_transaction_timeout: Duration,
    /// Writer tasks committing queued sends at once (`--pg-writers`).
    pub writers: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            idle_in_transaction_timeout: Duration::from_secs(15),
            writers: 4,
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

        let (writer, jobs) = mpsc::channel(QUEUE);
        let queue = Arc::new(tokio::sync::Mutex::new(jobs));
        for _ in 0..options.writers.max(1) {
            tokio::spawn(write_loop(pool.clone(), queue.clone()));
        }
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

/// One try at a change: done (`None` inside when it changes nothing), or not tried because
/// a narrow try's audience does not fit the lock budget.
enum Attempt {
    Done(Option<Changed>),
    TooWide,
}

impl PgStore {
    /// A change under its audience's locks (see the module docs).
    async fn change(&self, request: &ChangeRequest, reach: Reach) -> StoreResult<Attempt> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(classify)?;
        // A new group has no lock yet: nobody else can write in it before it commits.
        audience::lock_conversations(&mut tx, reach, changed_conversation(request))
            .await
            .map_err(classify)?;
        let reached = audience_of(&mut tx, request).await.map_err(classify)?;
        if reach == Reach::Narrow {
            let stripes: BTreeSet<i32> = reached
                .iter()
                .map(|&user| audience::stripe(UserId(user)))
                .collect();
            // Beside the wide lock and the conversation's.
            if stripes.len() + 2 > LOCKS_MAX {
                // Release the shared wide lock now: the retry takes it exclusively.
                tx.rollback().await.map_err(classify)?;
                return Ok(Attempt::TooWide);
            }
            audience::lock_stripes(&mut tx, &stripes)
                .await
                .map_err(classify)?;
        }
        let position = audience::positions(&mut tx, 1)
            .await
            .map_err(classify)?
            .pop()
            .ok_or_else(|| other(sqlx::Error::RowNotFound))?;
        let changed = match change_under_lock(&mut tx, position, request).await {
            Ok(Ok(Some(changed))) => changed,
            // Nothing changes: the rollback on drop leaves a gap in the sequence, no entry.
            Ok(Ok(None)) => return Ok(Attempt::Done(None)),
            Ok(Err(refused)) => return Err(refused),
            Err(e) => return Err(classify(e)),
        };
        // The decision read the same membership under the same lock; a recipient outside the
        // locked audience would be a bug that breaks that user's commit order, so refuse it.
        if let Some(outside) = changed
            .recipients
            .iter()
            .find(|r| !reached.contains(&r.user.0))
        {
            let reason = format!("user {} is outside the locked audience", outside.user);
            return Err(StoreError::Other(reason.into()));
        }
        tx.commit().await.map_err(classify)?;
        Ok(Attempt::Done(Some(changed)))
    }
}

/// The conversation a change writes in; none for a group not created yet.
fn changed_conversation(request: &ChangeRequest) -> Option<i64> {
    match request {
        ChangeRequest::Create { .. } => None,
        ChangeRequest::Update { conversation, .. }
        | ChangeRequest::Read { conversation, .. }
        | ChangeRequest::Message { conversation, .. }
        | ChangeRequest::Close { conversation, .. }
        | ChangeRequest::Profile { conversation, .. } => Some(conversation.0),
    }
}

/// Every user whose stream may show the change: the conversation's members (read under its
/// lock), everyone the request names (the created, added, removed, re-roled) and the actor.
async fn audience_of(
    conn: &mut sqlx::PgConnection,
    request: &ChangeRequest,
) -> Result<BTreeSet<i64>, sqlx::Error> {
    let mut users = BTreeSet::new();
    match request {
        ChangeRequest::Create {
            creator, members, ..
        } => {
            users.insert(creator.id.0);
            users.extend(members.iter().map(|m| m.id.0));
        }
        ChangeRequest::Update { actor, op, .. } => {
            users.insert(actor.id.0);
            match op {
                Op::Add { users: added, .. } => users.extend(added.iter().map(|u| u.id.0)),
                Op::Remove(user) | Op::SetRole(user, _) => {
                    users.insert(user.id.0);
                }
                Op::Rename(_) | Op::Leave => {}
            }
        }
        ChangeRequest::Read { actor, .. }
        | ChangeRequest::Message { actor, .. }
        | ChangeRequest::Close { actor, .. }
        | ChangeRequest::Profile { actor, .. } => {
            users.insert(actor.id.0);
        }
    }
    if let Some(conversation) = changed_conversation(request) {
        let members: Vec<i64> =
            sqlx::query_scalar("SELECT user_id FROM participants WHERE conversation_id = $1")
                .bind(conversation)
                .fetch_all(&mut *conn)
                .await?;
        users.extend(members);
    }
    Ok(users)
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

    async fn push_subscribers(&self) -> StoreResult<Vec<UserId>> {
        shared::push_subscribers(&self.pool).await.map_err(classify)
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
        // One statement: see `log::inbox_sql` for why two reads would skip entries. Only the
        // limit, a number, is written into it.
        let rows = sqlx::query(sqlx::AssertSqlSafe(log::inbox_sql(limit)))
            .bind(user.0)
            .bind(after.0)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let mut read = log::InboxRows::default();
        for row in &rows {
            read.push(row).map_err(classify)?;
        }
        lifecycle::decorate_known(
            &self.pool,
            user,
            &mut read.messages,
            Decorate::Quotes,
            &read.with_files,
        )
        .await
        .map_err(classify)?;
        Ok(read.entries())
    }

    async fn head(&self) -> StoreResult<MessageId> {
        // Committed entries only: positions taken by transactions still in flight may lie
        // below it (see the module docs: never a stream's starting cursor).
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
        match self.change(&request, Reach::Narrow).await? {
            Attempt::Done(changed) => Ok(changed),
            Attempt::TooWide => match self.change(&request, Reach::Wide).await? {
                Attempt::Done(changed) => Ok(changed),
                Attempt::TooWide => unreachable!("a wide change takes no stripes"),
            },
        }
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
