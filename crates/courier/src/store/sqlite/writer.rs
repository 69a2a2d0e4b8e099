//! The group-commit writer: the one task that appends messages to the SQLite file.
//!
//! Sends queue on a channel; each turn takes everything queued (up to `MAX_GROUP`) into one
//! transaction, so one fsync serves the whole group however many senders wait on it. Because
//! this task is the only appender (the database lock file keeps other processes out), it can
//! assign message ids itself (`next_id`), in commit order, and cache what it would otherwise
//! query per message: each conversation's participants and each user's inbox head. The whole
//! group is then written with a few multi-row statements instead of several per message.
//! Any failure rolls the group back, answers every send with an error, and drops the caches.

use super::{MESSAGE_COLUMNS, WriteJob, message_at, now_ms, time};
use crate::model::{ConversationId, Message, MessageId, Recipient, UserId};
use crate::store::{Appended, NewMessage, StoreError, StoreResult};
use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::{Arguments, Connection};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The largest number of sends that share one transaction.
pub(super) const MAX_GROUP: usize = 512;
/// An idempotency key answers retries for this long.
const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Default)]
struct Caches {
    /// The newest id handed out; `None` until read from the database.
    last_id: Option<i64>,
    /// Participants per conversation. 1:1 membership never changes once created; a future
    /// change of membership must go through this writer (or clear this cache).
    members: HashMap<ConversationId, Arc<[UserId]>>,
    /// Each user's newest inbox position.
    heads: HashMap<UserId, MessageId>,
}

/// One accepted message of the group, not yet written.
struct Row {
    message: Message,
    key: Option<String>,
}

pub(super) async fn run(mut conn: SqliteConnection, mut jobs: mpsc::Receiver<WriteJob>) {
    let mut caches = Caches::default();
    let mut group = Vec::with_capacity(MAX_GROUP);
    while jobs.recv_many(&mut group, MAX_GROUP).await > 0 {
        match commit_group(&mut conn, &mut caches, &group).await {
            Ok(results) => {
                for (job, result) in group.drain(..).zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                caches = Caches::default();
                tracing::error!(error = %e, size = group.len(), "message commit failed");
                let reason = e.to_string();
                for job in group.drain(..) {
                    let _ = job
                        .reply
                        .send(Err(StoreError::Unavailable(reason.clone().into())));
                }
            }
        }
    }
}

async fn commit_group(
    conn: &mut SqliteConnection,
    caches: &mut Caches,
    group: &[WriteJob],
) -> Result<Vec<StoreResult<Appended>>, sqlx::Error> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut last_id = match caches.last_id {
        Some(id) => id,
        None => {
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM messages")
                .fetch_one(&mut *tx)
                .await?
        }
    };
    let mut heads = HashMap::new();
    let mut rows: Vec<Row> = Vec::with_capacity(group.len());
    let mut results = Vec::with_capacity(group.len());
    for job in group {
        let new = &job.new;
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
            if let Some(earlier) = earlier_send(&mut tx, new, now).await? {
                results.push(replay(&earlier, new));
                continue;
            }
        }
        let members = match caches.members.get(&new.conversation) {
            Some(members) => members.clone(),
            None => {
                let members: Arc<[UserId]> = sqlx::query_scalar(
                    "SELECT user_id FROM participants WHERE conversation_id = ?",
                )
                .bind(new.conversation.0)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(UserId)
                .collect();
                if !members.is_empty() {
                    caches.members.insert(new.conversation, members.clone());
                }
                members
            }
        };
        if !members.contains(&new.sender) {
            results.push(Err(StoreError::NotFound));
            continue;
        }
        last_id += 1;
        let mut recipients = Vec::with_capacity(members.len());
        for &user in members.iter() {
            let prev = match heads.get(&user).or_else(|| caches.heads.get(&user)) {
                Some(head) => *head,
                None => inbox_head(&mut tx, user).await?,
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
        };
        results.push(Ok(Appended {
            message: message.clone(),
            recipients,
            replayed: false,
        }));
        rows.push(Row {
            message,
            key: new.idempotency_key.clone(),
        });
    }
    if !rows.is_empty() {
        write_rows(&mut tx, &rows).await?;
    }
    tx.commit().await?;
    // Only a committed group moves the caches.
    caches.last_id = Some(last_id);
    caches.heads.extend(heads);
    Ok(results)
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
async fn earlier_send(
    conn: &mut SqliteConnection,
    new: &NewMessage,
    now: i64,
) -> Result<Option<Message>, sqlx::Error> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM idempotency_keys k JOIN messages m ON m.id = k.message_id
         WHERE k.user_id = ? AND k.key = ? AND k.created_at > ?"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(new.sender.0)
        .bind(new.idempotency_key.as_deref())
        .bind(now - IDEMPOTENCY_WINDOW_MS)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| message_at(&r, 0)).transpose()
}

/// The user's newest inbox position among committed messages.
async fn inbox_head(conn: &mut SqliteConnection, user: UserId) -> Result<MessageId, sqlx::Error> {
    let id: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(c.last_message_id), 0) FROM participants p
         JOIN conversations c ON c.id = p.conversation_id WHERE p.user_id = ?",
    )
    .bind(user.0)
    .fetch_one(conn)
    .await?;
    Ok(MessageId(id))
}

/// Writes the group: the messages, each conversation's last message, each sender's read
/// position, and the idempotency keys, one multi-row statement each.
async fn write_rows(conn: &mut SqliteConnection, rows: &[Row]) -> Result<(), sqlx::Error> {
    let mut args = SqliteArguments::default();
    for row in rows {
        let m = &row.message;
        args.add(m.id.0).map_err(sqlx::Error::Encode)?;
        args.add(m.conversation_id.0).map_err(sqlx::Error::Encode)?;
        args.add(m.sender_id.0).map_err(sqlx::Error::Encode)?;
        args.add(m.content.clone()).map_err(sqlx::Error::Encode)?;
        args.add(m.created_at.timestamp_millis())
            .map_err(sqlx::Error::Encode)?;
    }
    let sql = format!(
        "INSERT INTO messages (id, conversation_id, sender_id, content, created_at) VALUES {}",
        placeholders(rows.len(), 5)
    );
    sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
        .execute(&mut *conn)
        .await?;

    // Rows are in id order, so the last write per key wins with the newest id.
    let last_by_conversation: HashMap<i64, i64> = rows
        .iter()
        .map(|r| (r.message.conversation_id.0, r.message.id.0))
        .collect();
    let mut args = SqliteArguments::default();
    for (conversation, id) in &last_by_conversation {
        args.add(*conversation).map_err(sqlx::Error::Encode)?;
        args.add(*id).map_err(sqlx::Error::Encode)?;
    }
    let sql = format!(
        "UPDATE conversations SET last_message_id = v.column2 FROM (VALUES {}) AS v
         WHERE conversations.id = v.column1",
        placeholders(last_by_conversation.len(), 2)
    );
    sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
        .execute(&mut *conn)
        .await?;

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
    let mut args = SqliteArguments::default();
    for ((conversation, sender), id) in &read_by_sender {
        args.add(*conversation).map_err(sqlx::Error::Encode)?;
        args.add(*sender).map_err(sqlx::Error::Encode)?;
        args.add(*id).map_err(sqlx::Error::Encode)?;
    }
    let sql = format!(
        "UPDATE participants SET last_read_message_id = v.column3 FROM (VALUES {}) AS v
         WHERE participants.conversation_id = v.column1 AND participants.user_id = v.column2",
        placeholders(read_by_sender.len(), 3)
    );
    sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
        .execute(&mut *conn)
        .await?;

    let keyed: Vec<&Row> = rows.iter().filter(|r| r.key.is_some()).collect();
    if !keyed.is_empty() {
        let mut args = SqliteArguments::default();
        for row in &keyed {
            let m = &row.message;
            args.add(m.sender_id.0).map_err(sqlx::Error::Encode)?;
            args.add(row.key.clone()).map_err(sqlx::Error::Encode)?;
            args.add(m.conversation_id.0).map_err(sqlx::Error::Encode)?;
            args.add(m.id.0).map_err(sqlx::Error::Encode)?;
            args.add(m.created_at.timestamp_millis())
                .map_err(sqlx::Error::Encode)?;
        }
        let sql = format!(
            "INSERT INTO idempotency_keys (user_id, key, conversation_id, message_id, created_at)
             VALUES {} ON CONFLICT (user_id, key) DO UPDATE SET
                 conversation_id = excluded.conversation_id,
                 message_id = excluded.message_id, created_at = excluded.created_at",
            placeholders(keyed.len(), 5)
        );
        sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// `(?, ?), (?, ?)` for `rows` tuples of `width` values.
fn placeholders(rows: usize, width: usize) -> String {
    let tuple = format!("({})", vec!["?"; width].join(", "));
    vec![tuple; rows].join(", ")
}
