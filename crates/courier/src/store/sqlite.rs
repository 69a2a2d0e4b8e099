//! `SqliteStore`: sqlx over one SQLite file in WAL mode.
//!
//! Reads go through a pool. Every write goes through one writer thread (`writer`) that owns
//! its own connections and commits messages in groups: the sends that queue up while one commit is syncing
//! share the next transaction and its single fsync. One writer is also what makes message
//! ids follow commit order, so a stream cursor never skips a message that commits late.
//!
//! Checkpoints: SQLite copies the WAL back into the database file inside the commit that takes
//! the WAL past `wal_autocheckpoint` pages, and the sends queued behind that commit wait for the
//! copy and its sync. At SQLite's default of 1,000 pages a single-message send (~14 WAL pages)
//! paid for one every ~70 sends, and as conversations grow each copy touches more distinct pages:
//! those 1–2.5 ms commits were the quiet p99 and made it climb round after round
//! (docs/benchmarks.md, "Issue 12, eighth pass"). [`WAL_CHECKPOINT_PAGES`] makes them ten times
//! rarer (each is longer, 2.5–5 ms; in one run the commits over 1 ms fell from 425 to 111), so
//! the sends behind them stay under the p99. A checkpoint on a thread of its own was tried and measured slower
//! (seventh pass): its syncs beside the WAL's slowed every commit.

mod accounts;
mod admin;
pub mod backup;
mod people;
mod presence;
mod reader;
mod search;
mod search_backlog;
mod writer;

use super::lifecycle::{self, Decorate};
use super::log::MESSAGE_COLUMNS;
pub(super) use super::log::message_at;
use super::log::shared;
use super::log::{self, CONVERSATION_VIEW, SORT_KEY, conversation_view, member_at, user_at};
use super::{Appended, Changed, NewMessage, Store, StoreError, StoreResult};
use crate::model::{
    ChangeRequest, ConversationId, ConversationView, LogEntry, Member, Message, MessageId,
    READ_POSITIONS_MAX, User, UserId, Username,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, SqliteExecutor};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// WAL pages (4 KiB each) after which a commit checkpoints: 40 MiB, SQLite's default ten times
/// over (see the module docs). The WAL file keeps that size on disk and is reused from its start.
pub(super) const WAL_CHECKPOINT_PAGES: u32 = 10_000;

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// `FULL` syncs the WAL on every commit: a 201 means the message is on disk.
    pub synchronous_full: bool,
    pub read_connections: u32,
    pub busy_timeout: Duration,
    /// Run first on the writer thread (the app asks there for its scheduler slice).
    pub on_writer_thread: fn(),
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous_full: true,
            read_connections: 8,
            busy_timeout: Duration::from_secs(5),
            on_writer_thread: || {},
        }
    }
}

pub struct SqliteStore {
    pool: SqlitePool,
    /// Held for the store's life: one process per database file (see `lock_database`).
    _lock: Option<std::fs::File>,
    writer: mpsc::Sender<WriteJob>,
    instance: String,
    /// Shared with the writer, which invalidates what its changes make stale.
    members: Arc<presence::MemberCache>,
    /// The newest committed position, kept by the writer (the only appender), so a stream
    /// that resumes checks its cursor without a read.
    head: writer::CommittedHead,
    /// Connections for the catch-up read (see `reader`).
    readers: reader::Readers,
}

/// What the one writer thread commits: sends (grouped), group changes (one at a time), and
/// bookkeeping writes (session and last-seen touches, all of a turn in one transaction).
enum WriteJob {
    Send {
        new: NewMessage,
        reply: oneshot::Sender<StoreResult<Appended>>,
    },
    Change {
        request: ChangeRequest,
        reply: oneshot::Sender<StoreResult<Option<Changed>>>,
    },
    /// One statement. It runs on the writer's connection because a write from a pool
    /// connection would take SQLite's one write lock: the writer's next `BEGIN IMMEDIATE`
    /// then meets `SQLITE_BUSY` and sleeps in the busy handler (1, 2, 5, 10… ms), so a
    /// bookkeeping write cost queued sends milliseconds, and under load up to a second.
    Exec {
        sql: &'static str,
        args: Vec<rusqlite::types::Value>,
        reply: oneshot::Sender<StoreResult<()>>,
    },
    /// Index every message still waiting for its search words (`search_backlog`).
    IndexSearch {
        reply: oneshot::Sender<StoreResult<()>>,
    },
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and applies the embedded migrations.
    pub async fn open(url: &str, options: &SqliteOptions) -> StoreResult<Self> {
        // The writer thread and the catch-up readers open the file by its path; an in-memory
        // database would be a different, empty one on each of their connections.
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::Other(
                "an in-memory SQLite database is not supported: give a file (sqlite://PATH)".into(),
            ));
        }
        let connect = SqliteConnectOptions::from_str(url).map_err(other)?;
        if connect.get_filename().as_os_str().is_empty() {
            return Err(StoreError::Other(
                "the SQLite URL names no file: give one (sqlite://PATH)".into(),
            ));
        }
        let lock = lock_database_waiting(connect.get_filename()).await?;
        let connect = connect
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if options.synchronous_full {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(options.busy_timeout)
            // sqlx hands rows from its SQLite thread to the task through a channel of this
            // size; at the default 50 a read of hundreds of rows
            // parks and wakes that thread once per row past the 50th. Roomier than the
            // largest read, it runs each statement to the end in one go.
            .row_buffer_size(1024)
            .pragma("wal_autocheckpoint", WAL_CHECKPOINT_PAGES.to_string())
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.read_connections.max(1))
            .connect_with(connect.clone())
            .await
            .map_err(classify)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(other)?;
        backfill_skeletons(&pool).await?;

        sqlx::query("INSERT INTO meta (key, value) VALUES ('instance', ?) ON CONFLICT DO NOTHING")
            .bind(random_instance_id())
            .execute(&pool)
            .await
            .map_err(classify)?;
        let instance: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'instance'")
            .fetch_one(&pool)
            .await
            .map_err(classify)?;

        let changes = SqliteConnection::connect_with(&connect)
            .await
            .map_err(classify)?;
        let sends = writer::open_sends(connect.get_filename(), options).map_err(other)?;
        let search = search_backlog::SearchBacklog::load(&sends).map_err(other)?;
        let conns = writer::Connections { sends, changes };
        let (writer, jobs) = mpsc::channel(writer::MAX_GROUP * 4);
        let members = Arc::new(presence::MemberCache::default());
        let head = Arc::new(std::sync::atomic::AtomicI64::new(
            head(&pool).await.map_err(classify)?.0,
        ));
        let runtime = tokio::runtime::Handle::current();
        let (thread_members, thread_head) = (members.clone(), head.clone());
        let on_writer_thread = options.on_writer_thread;
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                on_writer_thread();
                writer::run(conns, jobs, thread_members, thread_head, search, runtime)
            })
            .map_err(other)?;
        Ok(Self {
            pool,
            _lock: lock,
            writer,
            instance,
            members,
            head,
            readers: reader::Readers::new(connect.get_filename(), options),
        })
    }

    /// Waits until every committed message is in the search index.
    async fn index_search(&self) -> StoreResult<()> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(WriteJob::IndexSearch { reply })
            .await
            .map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
    }

    /// Runs one write statement on the writer's connection (see `WriteJob::Exec`).
    async fn write(&self, sql: &'static str, args: Vec<rusqlite::types::Value>) -> StoreResult<()> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(WriteJob::Exec { sql, args, reply })
            .await
            .map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
    }
}

/// Gives names from before migration 0004 their skeleton; a lookalike of an older name
/// keeps none (see the migration).
async fn backfill_skeletons(pool: &SqlitePool) -> StoreResult<()> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, username FROM users WHERE skeleton IS NULL ORDER BY id")
            .fetch_all(pool)
            .await
            .map_err(classify)?;
    for (id, name) in rows {
        let Ok(name) = Username::parse(&name) else {
            continue;
        };
        sqlx::query("UPDATE OR IGNORE users SET skeleton = ? WHERE id = ?")
            .bind(name.skeleton())
            .bind(id)
            .execute(pool)
            .await
            .map_err(classify)?;
    }
    Ok(())
}

/// `lock_database`, waiting up to `LOCK_WAIT` while another holder lets go: a server
/// restarted in place (systemd, a test) may find its predecessor still ending its last tasks.
async fn lock_database_waiting(path: &std::path::Path) -> StoreResult<Option<std::fs::File>> {
    const LOCK_WAIT: Duration = Duration::from_secs(3);
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match try_lock_database(path)? {
            Locked::Held(file) => return Ok(file),
            Locked::Busy if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Locked::Busy => return Err(in_use(path)),
        }
    }
}

enum Locked {
    Held(Option<std::fs::File>),
    Busy,
}

/// Takes an exclusive lock on `<database>.lock`. The writer thread caches inbox heads and is
/// the only source of message ids, which holds only while one process owns the file; a second
/// `courier` on the same data directory stops at start-up instead of corrupting the `prev` links.
fn lock_database(path: &std::path::Path) -> StoreResult<Option<std::fs::File>> {
    match try_lock_database(path)? {
        Locked::Held(file) => Ok(file),
        Locked::Busy => Err(in_use(path)),
    }
}

fn in_use(path: &std::path::Path) -> StoreError {
    StoreError::Other(
        format!(
            "{} is in use by another courier process; run one process per SQLite file (use PostgreSQL for several nodes)",
            path.display()
        )
        .into(),
    )
}

fn try_lock_database(path: &std::path::Path) -> StoreResult<Locked> {
    if path.as_os_str().is_empty() || path == std::path::Path::new(":memory:") {
        return Ok(Locked::Held(None));
    }
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Other(Box::new(e)))?;
    match file.try_lock() {
        Ok(()) => Ok(Locked::Held(Some(file))),
        Err(std::fs::TryLockError::WouldBlock) => Ok(Locked::Busy),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Other(Box::new(e))),
    }
}

pub(crate) fn random_instance_id() -> String {
    hex::encode(rand::random::<[u8; 6]>())
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Other(Box::new(e))
}

fn classify(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            StoreError::Unavailable(Box::new(e))
        }
        e if is_unavailable(&e) => StoreError::Unavailable(Box::new(e)),
        e => StoreError::Other(Box::new(e)),
    }
}

/// SQLite's "not now" results (primary codes, extended codes folded): BUSY, LOCKED, IOERR,
/// FULL, CANTOPEN. A request that meets one gets 503 and is retried, never a sign-out.
fn is_unavailable(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    db.code()
        .and_then(|code| code.parse::<i64>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6 | 10 | 13 | 14))
}

/// The oldest message position the member may read; `NotFound` unless they are a member.
async fn is_participant(
    db: impl SqliteExecutor<'_>,
    user: UserId,
    conversation: ConversationId,
) -> StoreResult<i64> {
    sqlx::query_scalar(
        "SELECT history_from FROM participants WHERE conversation_id = ? AND user_id = ?",
    )
    .bind(conversation.0)
    .bind(user.0)
    .fetch_optional(db)
    .await
    .map_err(classify)?
    .ok_or(StoreError::NotFound)
}

super::uploads::upload_store!(SqliteStore, sqlx::Sqlite);

#[async_trait]
impl Store for SqliteStore {
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
        // No conflict target: the name (any case) or its lookalike skeleton may be taken.
        sqlx::query(
            "INSERT INTO users (username, skeleton, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
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
        let row = sqlx::query("SELECT u.id, u.username, COALESCE(u.picture, u.avatar_url), u.display_name, u.deleted_at FROM users u WHERE u.id = ?")
            .bind(id.0)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        user_at(&row, 0).map_err(classify)
    }

    async fn user_by_username(&self, username: &Username) -> StoreResult<User> {
        let row = sqlx::query("SELECT u.id, u.username, COALESCE(u.picture, u.avatar_url), u.display_name, u.deleted_at FROM users u WHERE u.username = ?")
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
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        sqlx::query_scalar(
            "SELECT username FROM users WHERE username LIKE ? ESCAPE '\\' AND id <> ?
             ORDER BY username LIMIT ?",
        )
        .bind(pattern)
        .bind(exclude.0)
        .bind(limit)
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
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(classify)?;
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT id FROM conversations WHERE direct_key = ?")
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(classify)?;
        if let Some(id) = existing {
            return Ok((ConversationId(id), false));
        }
        let now = now_ms();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO conversations (direct_key, created_at) VALUES (?, ?) RETURNING id",
        )
        .bind(&key)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        for user in [a, b] {
            sqlx::query(
                "INSERT INTO participants (conversation_id, user_id, joined_at) VALUES (?, ?, ?)",
            )
            .bind(id)
            .bind(user.0)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            // A direct conversation's two members never change: one span from the start.
            sqlx::query(
                "INSERT INTO member_spans (conversation_id, user_id, from_position) VALUES (?, ?, 0)",
            )
            .bind(id)
            .bind(user.0)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        self.members.invalidate(Some(ConversationId(id)));
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
               AND ($2 IS NULL OR {SORT_KEY} <
                    (SELECT COALESCE(c.last_message_id, c.created_position) FROM conversations c
                     JOIN participants bp ON bp.conversation_id = c.id AND bp.user_id = $1
                     WHERE c.id = $2))
             ORDER BY {SORT_KEY} DESC LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(viewer.0)
            .bind(before.map(|b| b.0))
            .bind(limit)
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
        self.writer
            .send(WriteJob::Send { new, reply })
            .await
            .map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
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
             WHERE m.conversation_id = ?1 AND (?2 IS NULL OR m.id < ?2) AND m.id >= ?4
             ORDER BY m.id DESC LIMIT ?3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(conversation.0)
            .bind(before.map(|b| b.0))
            .bind(limit)
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
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(classify)?;
        let delivered =
            lifecycle::acknowledge::<sqlx::Sqlite>(&mut tx, user, device, position, now_ms())
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
        let head = self.readers.read(|conn| {
            conn.prepare_cached(log::INBOX_HEAD)?
                .query_row(rusqlite::named_params! {"$1": user.0}, |row| row.get(0))
                .map_err(reader::ReadError::from)
        })?;
        Ok(MessageId(head))
    }

    async fn inbox_after(
        &self,
        user: UserId,
        after: MessageId,
        limit: u32,
    ) -> StoreResult<Vec<LogEntry>> {
        let mut read = log::InboxRows::default();
        self.readers.read(|conn| {
            let mut statement = conn.prepare_cached(&log::inbox_sql(limit))?;
            let mut rows =
                statement.query(rusqlite::named_params! {"$1": user.0, "$2": after.0})?;
            while let Some(row) = rows.next()? {
                read.push(&reader::Lite(row))?;
            }
            Ok::<_, reader::ReadError>(())
        })?;
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
        Ok(MessageId(
            self.head.load(std::sync::atomic::Ordering::Acquire),
        ))
    }

    async fn apply_change(&self, request: ChangeRequest) -> StoreResult<Option<Changed>> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(WriteJob::Change { request, reply })
            .await
            .map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
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
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(member_at)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Unavailable("the SQLite writer has stopped".into())
}

/// The newest position of any kind.
async fn head(db: impl SqliteExecutor<'_>) -> Result<MessageId, sqlx::Error> {
    let id: i64 = sqlx::query_scalar(
        "SELECT MAX((SELECT COALESCE(MAX(id), 0) FROM messages),
                    (SELECT COALESCE(MAX(position), 0) FROM conversation_events))",
    )
    .fetch_one(db)
    .await?;
    Ok(MessageId(id))
}
