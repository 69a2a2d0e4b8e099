//! The group-commit writer: the one thread that appends to the SQLite file.
//!
//! Sends queue on a channel; each turn takes everything queued (up to `MAX_GROUP`) into one
//! transaction, so one fsync serves the whole group however many senders wait on it. Because
//! this thread is the only appender (the database lock file keeps other processes out), it can
//! assign message ids itself, in commit order, and cache what it would otherwise query per
//! message: each conversation's participants and each user's inbox head. Any failure rolls
//! the group back, answers every send with an error, and drops the caches.
//!
//! Why a thread with rusqlite rather than a task with sqlx: sqlx runs each SQLite statement on
//! its own worker thread and wakes the task for each answer, so a group of a dozen statements
//! cost two dozen thread hand-offs, which the profile of durable sends showed as the largest
//! cost after the fsync. Here the group's statements run back to back on one thread; the only
//! hand-offs left are the send's arrival and its answer.
//!
//! Group changes (create, rename, add, remove, leave, role) come through the same channel and
//! commit one at a time, in order between the send groups around them, so a send queued after
//! a removal is judged by the membership after it. A committed change drops the cached
//! members of its conversation and moves the recipients' cached heads to its position.
//!
//! Bookkeeping writes (session and last-seen touches) come through it too: on a pool
//! connection they would hold the write lock when the next group begins, and SQLite's busy
//! handler sleeps in whole milliseconds. They yield to messages: a statement runs only when
//! no job is waiting, or once it has waited `BOOKKEEPING_MAX_WAIT`, and the queue is checked
//! again before each next one. So a send waits for at most the one short statement
//! (`TOUCH_CHUNK` rows) it arrived during, never for a turn's whole batch: under presence
//! churn those batches held the writer ~1 % of the time, for 1–10 ms each, which is just
//! where a message p99 sits. Each statement commits without its own fsync (see `run_execs`),
//! on the send connection. Group changes also invalidate the store's member cache
//! (`MemberCache`).

use super::presence::MemberCache;
use super::reader::Lite;
use super::search_backlog::SearchBacklog;
use super::{MESSAGE_COLUMNS, WriteJob, now_ms, time};
use crate::model::{
    ChangeRequest, ConversationEvent, ConversationId, History, Message, MessageId, Plan, Recipient,
    UserId,
};
use crate::store::{Appended, Changed, NewMessage, StoreError, StoreResult};
use crate::store::{lifecycle, log};
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The largest number of sends that share one transaction.
pub(super) const MAX_GROUP: usize = 512;
/// A bookkeeping statement waits for queued jobs at most this long before it runs anyway.
const BOOKKEEPING_MAX_WAIT: std::time::Duration = std::time::Duration::from_millis(100);
/// An idempotency key answers retries for this long.
const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Default)]
struct Caches {
    /// The newest id handed out; `None` until read from the database.
    last_id: Option<i64>,
    /// Members per conversation and the seq of its last message. Membership changes go
    /// through this writer, which drops the entry of the conversation they change.
    members: HashMap<ConversationId, Members>,
    /// Each user's newest inbox position.
    heads: HashMap<UserId, MessageId>,
}

impl Caches {
    /// Forgets everything after a failed transaction (the database decides again).
    fn reset(&mut self) {
        *self = Caches::default();
    }
}

/// The newest committed position, shared with the store's readers (`Store::head`): moved
/// right after each commit, before anyone hears of it, so no cursor a client holds is ahead.
pub(super) type CommittedHead = Arc<std::sync::atomic::AtomicI64>;

fn publish_head(head: &CommittedHead, position: i64) {
    head.fetch_max(position, std::sync::atomic::Ordering::AcqRel);
}

#[derive(Clone)]
struct Members {
    users: Arc<[UserId]>,
    last_seq: i64,
}

/// One accepted message of the group, not yet written.
struct Row {
    seq: i64,
    message: Message,
    key: Option<String>,
    attachment_claim: Option<String>,
}

type Send = (
    NewMessage,
    tokio::sync::oneshot::Sender<StoreResult<Appended>>,
);

/// A bookkeeping statement, its arguments, its answer, and when the writer took it.
type Exec = (
    &'static str,
    Vec<rusqlite::types::Value>,
    tokio::sync::oneshot::Sender<StoreResult<()>>,
    std::time::Instant,
);

/// The writer's two connections to the one file. Sends go through `sends` (rusqlite): the
/// whole group's statements run here, on the writer's own thread, with no hand-off per
/// statement, and so does bookkeeping. Group changes go through `changes` (sqlx), whose
/// statements are shared with the PostgreSQL store (`log::shared::decide`,
/// `lifecycle::write`). Only this thread writes through either, one transaction at a time, so
/// they never meet each other's write lock.
pub(super) struct Connections {
    pub(super) sends: rusqlite::Connection,
    pub(super) changes: SqliteConnection,
}

/// Opens the send connection on the same file with the settings the pool's connections use.
pub(super) fn open_sends(
    path: &std::path::Path,
    options: &super::SqliteOptions,
) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(options.busy_timeout)?;
    conn.pragma_update(
        None,
        "synchronous",
        if options.synchronous_full {
            "FULL"
        } else {
            "NORMAL"
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "wal_autocheckpoint", super::WAL_CHECKPOINT_PAGES)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Either connection's failure; a transaction that meets one rolls back whole.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Sends(#[from] rusqlite::Error),
    #[error(transparent)]
    Changes(#[from] sqlx::Error),
}

/// The writer's thread: takes what is queued (up to `MAX_GROUP`), commits the sends as one
/// group, each change on its own, then the bookkeeping when nothing else waits. It ends when
/// the store is dropped.
/// `runtime` drives the sqlx connection, which is async.
pub(super) fn run(
    mut conns: Connections,
    mut jobs: mpsc::Receiver<WriteJob>,
    members: Arc<MemberCache>,
    head: CommittedHead,
    mut search: SearchBacklog,
    runtime: tokio::runtime::Handle,
) {
    let mut caches = Caches::default();
    let mut queued = Vec::with_capacity(MAX_GROUP);
    let mut sends: Vec<Send> = Vec::with_capacity(MAX_GROUP);
    let mut execs: std::collections::VecDeque<Exec> = std::collections::VecDeque::new();
    loop {
        // With search words pending, wait for a job only until they are due.
        let next = match search.due_in() {
            None => jobs.blocking_recv(),
            // The timer is made inside `block_on`: it needs the runtime's context.
            Some(left) => {
                match runtime.block_on(async { tokio::time::timeout(left, jobs.recv()).await }) {
                    Ok(next) => next,
                    Err(_) => {
                        index_batch(&conns.sends, &mut search);
                        continue;
                    }
                }
            }
        };
        let Some(first) = next else { break };
        queued.push(first);
        while queued.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => queued.push(job),
                Err(_) => break,
            }
        }
        for job in queued.drain(..) {
            match job {
                WriteJob::Send { new, reply } => sends.push((new, reply)),
                WriteJob::Exec { sql, args, reply } => {
                    execs.push_back((sql, args, reply, std::time::Instant::now()))
                }
                WriteJob::IndexSearch { reply } => {
                    // Sends queued ahead of the search are part of what it must find.
                    flush(&conns.sends, &mut caches, &mut sends, &head);
                    search.committed(caches.last_id.unwrap_or(0));
                    let _ = reply.send(search.index_all(&conns.sends).map_err(|e| {
                        tracing::warn!(error = %e, "search indexing failed");
                        StoreError::Unavailable(e.to_string().into())
                    }));
                }
                WriteJob::Change { request, reply } => {
                    flush(&conns.sends, &mut caches, &mut sends, &head);
                    let result = match runtime.block_on(commit_change(
                        &mut conns,
                        &mut caches,
                        &members,
                        &request,
                    )) {
                        Ok(result) => {
                            publish_head(&head, caches.last_id.unwrap_or(0));
                            result
                        }
                        Err(e) => {
                            caches.reset();
                            tracing::error!(error = %e, "change commit failed");
                            Err(StoreError::Unavailable(e.to_string().into()))
                        }
                    };
                    let _ = reply.send(result);
                }
            }
        }
        flush(&conns.sends, &mut caches, &mut sends, &head);
        // After the sends, and only while nothing waits: bookkeeping never delays a message
        // it queued beside. What stays pending is run after the jobs now queued (so the
        // `blocking_recv` above never sleeps on it).
        if let Err(e) = run_execs(&conns.sends, &mut execs, &jobs) {
            // Fail closed: a send committed after this would not be synced.
            tracing::error!(error = %e, "writer: could not restore synchronous after bookkeeping; stopping");
            break;
        }
        search.committed(caches.last_id.unwrap_or(0));
        if search.due() {
            index_batch(&conns.sends, &mut search);
        }
    }
}

/// One batch of pending search words; on failure they stay pending for the next.
fn index_batch(conn: &rusqlite::Connection, search: &mut SearchBacklog) {
    if let Err(e) = search.index_batch(conn) {
        tracing::warn!(error = %e, "search indexing failed; the next batch retries");
        search.failed();
    }
}

/// Runs bookkeeping statements, each in its own transaction, while no job waits (or the
/// oldest statement is overdue); the rest stay in `execs` for a later turn.
///
/// Their commits skip the fsync (`synchronous = NORMAL` while they run): what they record
/// (session activity, last seen) is already a second old when written, and the next send's
/// synced commit takes their WAL frames to disk with its own. Run on the send connection, with
/// no hand-off to sqlx's thread, a 64-row statement held the writer 0.32 ms on average under
/// the `signals` load instead of 0.85 ms (docs/benchmarks.md, "Issue 12, nineteenth pass").
fn run_execs(
    conn: &rusqlite::Connection,
    execs: &mut std::collections::VecDeque<Exec>,
    jobs: &mpsc::Receiver<WriteJob>,
) -> rusqlite::Result<()> {
    let mut unsynced = None;
    while let Some((_, _, _, taken)) = execs.front() {
        if !jobs.is_empty() && taken.elapsed() < BOOKKEEPING_MAX_WAIT {
            break;
        }
        let Some((sql, args, reply, _)) = execs.pop_front() else {
            break;
        };
        if unsynced.is_none() {
            unsynced = Some(relax_sync(conn));
        }
        let started = std::time::Instant::now();
        let done = conn
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute(rusqlite::params_from_iter(args)));
        metrics::histogram!("courier_store_bookkeeping_duration_seconds").record(started.elapsed());
        let _ = reply.send(done.map(|_| ()).map_err(|e| {
            tracing::warn!(error = %e, "bookkeeping write failed");
            StoreError::Unavailable(e.to_string().into())
        }));
    }
    match unsynced {
        Some(Some(level)) => conn.pragma_update(None, "synchronous", level),
        _ => Ok(()),
    }
}

/// Sets `synchronous = NORMAL` on the writer's connection for bookkeeping, returning the level
/// to put back (`None` when it already was NORMAL or could not be read or changed).
fn relax_sync(conn: &rusqlite::Connection) -> Option<i64> {
    let level: i64 = conn
        .pragma_query_value(None, "synchronous", |row| row.get(0))
        .ok()?;
    if level <= 1 {
        return None;
    }
    conn.pragma_update(None, "synchronous", "NORMAL").ok()?;
    Some(level)
}

/// Commits the queued sends as one group and answers them.
fn flush(
    conn: &rusqlite::Connection,
    caches: &mut Caches,
    sends: &mut Vec<Send>,
    head: &CommittedHead,
) {
    if sends.is_empty() {
        return;
    }
    let news: Vec<&NewMessage> = sends.iter().map(|(new, _)| new).collect();
    let started = std::time::Instant::now();
    let committed = commit_group(conn, caches, &news);
    crate::store::record_commit("sqlite", started, news.len());
    match committed {
        Ok(results) => {
            publish_head(head, caches.last_id.unwrap_or(0));
            for ((_, reply), result) in sends.drain(..).zip(results) {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            caches.reset();
            tracing::error!(error = %e, size = sends.len(), "message commit failed");
            let reason = e.to_string();
            for (_, reply) in sends.drain(..) {
                let _ = reply.send(Err(StoreError::Unavailable(reason.clone().into())));
            }
        }
    }
}

/// The newest position: the cached one, else read (every write goes through this thread, so
/// a read outside a transaction sees what the next transaction will).
fn last_position(conn: &rusqlite::Connection, caches: &Caches) -> rusqlite::Result<i64> {
    match caches.last_id {
        Some(id) => Ok(id),
        None => conn.query_row(
            "SELECT MAX((SELECT COALESCE(MAX(id), 0) FROM messages),
                        (SELECT COALESCE(MAX(position), 0) FROM conversation_events))",
            [],
            |row| row.get(0),
        ),
    }
}

fn commit_group(
    conn: &rusqlite::Connection,
    caches: &mut Caches,
    group: &[&NewMessage],
) -> Result<Vec<StoreResult<Appended>>, WriteError> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let mut last_id = last_position(&tx, caches)?;
    let mut heads = HashMap::new();
    let mut seqs: HashMap<ConversationId, i64> = HashMap::new();
    let mut rows: Vec<Row> = Vec::with_capacity(group.len());
    let mut results = Vec::with_capacity(group.len());
    for new in group {
        let new = *new;
        let now = now_ms();
        if let Some(key) = &new.idempotency_key {
            // A retry inside this same group answers with the first one's message.
            if let Some(first) = rows
                .iter()
                .find(|r| r.key.as_ref() == Some(key) && r.message.sender_id == new.sender)
            {
                results.push(replay(&first.message, new));
                continue;
            }
            if let Some(earlier) = earlier_send(&tx, new, now)? {
                results.push(replay(&earlier, new));
                continue;
            }
        }
        let members = match caches.members.get(&new.conversation) {
            Some(members) => members.clone(),
            None => {
                let users: Arc<[UserId]> = tx
                    .prepare_cached("SELECT user_id FROM participants WHERE conversation_id = ?")?
                    .query_map([new.conversation.0], |row| row.get(0).map(UserId))?
                    .collect::<rusqlite::Result<_>>()?;
                let last_seq: i64 = tx
                    .prepare_cached(
                        "SELECT COALESCE((SELECT m.seq FROM conversations c
                                          JOIN messages m ON m.id = c.last_message_id
                                          WHERE c.id = ?), 0)",
                    )?
                    .query_row([new.conversation.0], |row| row.get(0))?;
                let members = Members { users, last_seq };
                if !members.users.is_empty() {
                    caches.members.insert(new.conversation, members.clone());
                }
                members
            }
        };
        if !members.users.contains(&new.sender) {
            results.push(Err(StoreError::NotFound));
            continue;
        }
        let seq = seqs.entry(new.conversation).or_insert(members.last_seq);
        *seq += 1;
        let seq = *seq;
        let members = members.users;
        last_id += 1;
        let mut recipients = Vec::with_capacity(members.len());
        for &user in members.iter() {
            let prev = match heads.get(&user).or_else(|| caches.heads.get(&user)) {
                Some(head) => *head,
                None => inbox_head(&tx, user)?,
            };
            heads.insert(user, MessageId(last_id));
            recipients.push(Recipient { user, prev });
        }
        let message = Message {
            id: MessageId(last_id),
            conversation_id: new.conversation,
            sender_id: new.sender,
            content: new.content.as_str().to_owned(),
            created_at: time(now),
            reply_to: new.reply_to,
            ..Default::default()
        };
        results.push(Ok(Appended {
            message: message.clone(),
            recipients,
            replayed: false,
        }));
        rows.push(Row {
            seq,
            message,
            key: new.idempotency_key.clone(),
            attachment_claim: new.attachment_claim.clone(),
        });
    }
    if !rows.is_empty() {
        write_rows(&tx, &rows)?;
    }
    tx.commit()?;
    // Only a committed group moves the caches.
    caches.last_id = Some(last_id);
    caches.heads.extend(heads);
    for (conversation, seq) in seqs {
        if let Some(members) = caches.members.get_mut(&conversation) {
            members.last_seq = seq;
        }
    }
    Ok(results)
}

/// Commits one group change at the next position: decides it against the roster read inside
/// the transaction, writes the plan and the event, then moves the caches.
async fn commit_change(
    conns: &mut Connections,
    caches: &mut Caches,
    members: &MemberCache,
    request: &ChangeRequest,
) -> Result<StoreResult<Option<Changed>>, WriteError> {
    // Positions and heads come from the send connection: it sees every commit, and this
    // transaction writes none before they are read.
    let position = last_position(&conns.sends, caches)? + 1;
    let mut tx = conns.changes.begin_with("BEGIN IMMEDIATE").await?;
    let written = write_change(&mut tx, &conns.sends, caches, position, request).await;
    let Ok(Ok(Some((changed, regrouped)))) = written else {
        // Rolled back here, not on drop: sqlx queues a dropped transaction's rollback to its
        // worker thread, and the send connection's next BEGIN would meet the write lock.
        tx.rollback().await?;
        return written.map(|decided| decided.map(|_| None));
    };
    tx.commit().await?;
    caches.last_id = Some(position);
    // Only a change of who is in it makes the cached members stale (receipts, edits and
    // reactions are frequent and leave them alone).
    if regrouped {
        let conversation = changed.event.conversation_id;
        caches.members.remove(&conversation);
        members.invalidate(Some(conversation));
    }
    for r in &changed.recipients {
        caches.heads.insert(r.user, MessageId(position));
    }
    Ok(Ok(Some(changed)))
}

/// Decides and writes one change inside `tx`, without committing: the change, and whether it
/// changed who is in the conversation.
async fn write_change(
    tx: &mut SqliteConnection,
    sends: &rusqlite::Connection,
    caches: &Caches,
    position: i64,
    request: &ChangeRequest,
) -> Result<StoreResult<Option<(Changed, bool)>>, WriteError> {
    let now = now_ms();
    let log::shared::Decided {
        conversation,
        plan,
        actor,
        history,
        write,
    } = match log::shared::decide::<sqlx::Sqlite>(&mut *tx, position, now, request).await? {
        Ok(Some(decided)) => decided,
        Ok(None) => return Ok(Ok(None)),
        Err(refused) => return Ok(Err(refused)),
    };
    // Heads before this change: the recipients' `prev`.
    let mut recipients = Vec::with_capacity(plan.recipients.len());
    for &user in &plan.recipients {
        let prev = match caches.heads.get(&user) {
            Some(head) => *head,
            None => inbox_head(sends, user)?,
        };
        recipients.push(Recipient { user, prev });
    }
    if let Some(write) = &write {
        lifecycle::write::<sqlx::Sqlite>(&mut *tx, write, now).await?;
    }
    write_plan(&mut *tx, conversation, position, &plan, history, now).await?;
    let event = ConversationEvent {
        position: MessageId(position),
        conversation_id: conversation,
        actor: actor.clone(),
        change: plan.change.clone(),
        created_at: time(now),
    };
    log::shared::record_change(&mut *tx, &event).await?;
    let regrouped = !plan.add.is_empty() || !plan.remove.is_empty();
    Ok(Ok(Some((Changed { event, recipients }, regrouped))))
}

/// Writes a decided change: members added (with an open span), removed (span closed at this
/// position), roles, and the conversation's title, size and newest position.
async fn write_plan(
    conn: &mut SqliteConnection,
    conversation: ConversationId,
    position: i64,
    plan: &Plan,
    history: History,
    now: i64,
) -> Result<(), sqlx::Error> {
    let history_from = match history {
        History::Shared => 0,
        History::Joined => position,
    };
    // SQLite allows 32,766 variables a statement.
    for chunk in plan.add.chunks(4000) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO participants (conversation_id, user_id, role, joined_at, joined_position,
                                       history_from, last_read_message_id) ",
        );
        insert.push_values(chunk, |mut b, (user, role)| {
            b.push_bind(conversation.0)
                .push_bind(user.0)
                .push_bind(role.as_str())
                .push_bind(now)
                .push_bind(position)
                .push_bind(history_from)
                .push("COALESCE((SELECT last_message_id FROM conversations WHERE id = ")
                .push_bind_unseparated(conversation.0)
                .push_unseparated("), 0)");
        });
        insert.build().execute(&mut *conn).await?;
        let mut spans = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO member_spans (conversation_id, user_id, from_position) ",
        );
        spans.push_values(chunk, |mut b, (user, _)| {
            b.push_bind(conversation.0)
                .push_bind(user.0)
                .push_bind(position);
        });
        spans.build().execute(&mut *conn).await?;
    }
    for user in &plan.remove {
        sqlx::query("DELETE FROM participants WHERE conversation_id = ? AND user_id = ?")
            .bind(conversation.0)
            .bind(user.0)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "UPDATE member_spans SET to_position = ?
             WHERE conversation_id = ? AND user_id = ? AND to_position IS NULL",
        )
        .bind(position)
        .bind(conversation.0)
        .bind(user.0)
        .execute(&mut *conn)
        .await?;
    }
    for (user, role) in &plan.set_roles {
        sqlx::query("UPDATE participants SET role = ? WHERE conversation_id = ? AND user_id = ?")
            .bind(role.as_str())
            .bind(conversation.0)
            .bind(user.0)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(
        "UPDATE conversations SET title = COALESCE(?, title), member_count = ?, last_position = ?
         WHERE id = ?",
    )
    .bind(plan.title.as_deref())
    .bind(plan.member_count as i64)
    .bind(position)
    .bind(conversation.0)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn replay(message: &Message, new: &NewMessage) -> StoreResult<Appended> {
    if message.conversation_id != new.conversation {
        return Err(StoreError::KeyReused);
    }
    Ok(Appended {
        message: message.clone(),
        recipients: Vec::new(),
        replayed: true,
    })
}

/// The message an earlier send with the same key created, within the idempotency window.
fn earlier_send(
    conn: &rusqlite::Connection,
    new: &NewMessage,
    now: i64,
) -> Result<Option<Message>, WriteError> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM idempotency_keys k JOIN messages m ON m.id = k.message_id
         WHERE k.user_id = ? AND k.key = ? AND k.created_at > ?"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let mut rows = statement.query(rusqlite::params![
        new.sender.0,
        new.idempotency_key.as_deref(),
        now - IDEMPOTENCY_WINDOW_MS
    ])?;
    match rows.next()? {
        Some(row) => Ok(Some(log::message_at(&Lite(row), 0)?)),
        None => Ok(None),
    }
}

/// The user's newest visible position among committed entries.
fn inbox_head(conn: &rusqlite::Connection, user: UserId) -> rusqlite::Result<MessageId> {
    conn.prepare_cached(log::INBOX_HEAD)?
        .query_row([user.0], |row| row.get(0).map(MessageId))
}

/// Writes the group: the messages (and their files; their search words follow in a batch,
/// see `search_backlog`), each conversation's
/// last message, each sender's read position, and the idempotency keys. One prepared
/// statement each, stepped per row: on this thread a step costs no hand-off, and the same
/// text every time keeps them in the statement cache.
fn write_rows(conn: &rusqlite::Connection, rows: &[Row]) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO messages (id, conversation_id, sender_id, content, created_at, seq, reply_to)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )?;
    for row in rows {
        let m = &row.message;
        insert.execute(rusqlite::params![
            m.id.0,
            m.conversation_id.0,
            m.sender_id.0,
            m.content,
            m.created_at.timestamp_millis(),
            row.seq,
            m.reply_to.map(|r| r.0),
        ])?;
        if let Some(claim) = &row.attachment_claim {
            conn.prepare_cached(crate::store::uploads::ATTACH)?
                .execute(rusqlite::params![m.id.0, claim])?;
        }
    }

    // Rows are in id order, so the last write per key wins with the newest id.
    let last_by_conversation: HashMap<i64, i64> = rows
        .iter()
        .map(|r| (r.message.conversation_id.0, r.message.id.0))
        .collect();
    let mut last = conn.prepare_cached(
        "UPDATE conversations SET last_message_id = ?2, last_position = ?2 WHERE id = ?1",
    )?;
    for (conversation, id) in &last_by_conversation {
        last.execute([conversation, id])?;
    }

    // A sender has read their own message.
    let read_by_sender: HashMap<(i64, i64), i64> = rows
        .iter()
        .map(|r| {
            (
                (r.message.conversation_id.0, r.message.sender_id.0),
                r.message.id.0,
            )
        })
        .collect();
    let mut read = conn.prepare_cached(
        "UPDATE participants SET last_read_message_id = ?3
         WHERE conversation_id = ?1 AND user_id = ?2",
    )?;
    for ((conversation, sender), id) in &read_by_sender {
        read.execute([conversation, sender, id])?;
    }

    let mut keys = conn.prepare_cached(
        "INSERT INTO idempotency_keys (user_id, key, conversation_id, message_id, created_at)
         VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, key) DO UPDATE SET
             conversation_id = excluded.conversation_id,
             message_id = excluded.message_id, created_at = excluded.created_at",
    )?;
    for row in rows.iter().filter(|r| r.key.is_some()) {
        let m = &row.message;
        keys.execute(rusqlite::params![
            m.sender_id.0,
            row.key,
            m.conversation_id.0,
            m.id.0,
            m.created_at.timestamp_millis(),
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn exec(row: i64, taken: Instant) -> (Exec, tokio::sync::oneshot::Receiver<StoreResult<()>>) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        (
            (
                "INSERT INTO touched (row) VALUES (?)",
                vec![row.into()],
                reply,
                taken,
            ),
            answer,
        )
    }

    fn rows(conn: &rusqlite::Connection) -> Vec<i64> {
        let mut statement = conn
            .prepare("SELECT row FROM touched ORDER BY row")
            .expect("select");
        statement
            .query_map([], |row| row.get(0))
            .and_then(|rows| rows.collect())
            .expect("read rows")
    }

    /// A database with the `touched` table, synced like a `full` store.
    fn touched_table() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        conn.execute("CREATE TABLE touched (row INTEGER)", [])
            .expect("create");
        conn.pragma_update(None, "synchronous", "FULL")
            .expect("full");
        conn
    }

    fn synchronous(conn: &rusqlite::Connection) -> i64 {
        conn.pragma_query_value(None, "synchronous", |row| row.get(0))
            .expect("read synchronous")
    }

    #[tokio::test]
    async fn bookkeeping_waits_while_a_job_is_queued_unless_it_is_overdue() {
        let conn = touched_table();
        let (queue, mut jobs) = mpsc::channel(4);
        let (reply, _) = tokio::sync::oneshot::channel();
        queue
            .send(WriteJob::IndexSearch { reply })
            .await
            .expect("queue a job");
        let overdue_since = Instant::now() - BOOKKEEPING_MAX_WAIT - Duration::from_millis(1);
        let (old, old_answer) = exec(1, overdue_since);
        let (fresh, fresh_answer) = exec(2, Instant::now());
        let mut execs = std::collections::VecDeque::from([old, fresh]);

        run_execs(&conn, &mut execs, &jobs).expect("bookkeeping");
        assert_eq!(rows(&conn), [1], "only the overdue statement ran");
        assert!(matches!(old_answer.await, Ok(Ok(()))), "and was answered");
        assert_eq!(execs.len(), 1, "the fresh one waits for the queued job");

        jobs.try_recv().expect("the writer takes the job");
        run_execs(&conn, &mut execs, &jobs).expect("bookkeeping");
        assert_eq!(rows(&conn), [1, 2], "with nothing queued, it runs");
        assert!(matches!(fresh_answer.await, Ok(Ok(()))));
        assert!(execs.is_empty());
    }

    /// Bookkeeping commits unsynced, and the sends after it are synced again.
    #[tokio::test]
    async fn bookkeeping_runs_unsynced_and_puts_full_sync_back() {
        let conn = touched_table();
        let (_queue, jobs) = mpsc::channel::<WriteJob>(1);
        let (during, _) = exec(0, Instant::now());
        // The statement itself records the level it ran under.
        let during = (
            "INSERT INTO touched (row) SELECT synchronous FROM pragma_synchronous",
            Vec::new(),
            during.2,
            during.3,
        );
        let mut execs = std::collections::VecDeque::from([during]);
        run_execs(&conn, &mut execs, &jobs).expect("bookkeeping");
        assert_eq!(rows(&conn), [1], "it ran at synchronous = NORMAL (1)");
        assert_eq!(synchronous(&conn), 2, "FULL (2) is back for the sends");

        conn.pragma_update(None, "synchronous", "NORMAL")
            .expect("normal");
        let (again, _) = exec(5, Instant::now());
        run_execs(&conn, &mut std::collections::VecDeque::from([again]), &jobs)
            .expect("bookkeeping");
        assert_eq!(synchronous(&conn), 1, "a NORMAL store stays NORMAL");
    }
}
