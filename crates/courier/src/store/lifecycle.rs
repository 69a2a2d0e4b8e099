//! What both stores share about a message after it is sent: reading the message an op is
//! about, writing an edit, a tombstone or a reaction, and filling in quotes and reactions on
//! the messages a read returns. Written once over sqlx's `Database`, like `log::shared`.
//!
//! A delete really removes the text: the row keeps its place as a tombstone (content `''`,
//! `deleted_at`), its reactions go, and every earlier `edited` event of it is rewritten with
//! no content, so neither a history read nor a replay from any cursor can bring it back.

use super::log::{Columns, time};
use crate::model::{
    Change, ConversationId, Message, MessageId, MessageWrite, Quote, Reaction, Target, User, UserId,
};
use sqlx::{ColumnIndex, Database, Encode, Executor, IntoArguments, QueryBuilder, Type};
use std::collections::HashMap;

/// The message `$1` of conversation `$4` with its reaction counts for actor `$2`, emoji `$3`.
const TARGET: &str = "
    SELECT m.sender_id, m.created_at, m.deleted_at, m.content,
           (SELECT COUNT(DISTINCT r.emoji) FROM reactions r WHERE r.message_id = m.id),
           (SELECT COUNT(*) FROM reactions r WHERE r.message_id = m.id AND r.user_id = $2),
           (SELECT COUNT(*) FROM reactions r WHERE r.message_id = m.id AND r.emoji = $3),
           (SELECT COUNT(*) FROM reactions r
            WHERE r.message_id = m.id AND r.emoji = $3 AND r.user_id = $2)
    FROM messages m WHERE m.id = $1 AND m.conversation_id = $4";

/// Reads the message an op is about, inside the writer's transaction; `None` if it is not a
/// message of `conversation`.
pub async fn target<DB>(
    conn: &mut DB::Connection,
    conversation: ConversationId,
    id: MessageId,
    actor: UserId,
    emoji: &str,
) -> Result<Option<Target>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    for<'r> String: sqlx::Decode<'r, DB>,
    String: Type<DB>,
    DB::Arguments: IntoArguments<DB>,
{
    let row = sqlx::query::<DB>(TARGET)
        .bind(id.0)
        .bind(actor.0)
        .bind(emoji.to_owned())
        .bind(conversation.0)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(Target {
        id,
        sender: UserId(row.int(0)?),
        created_at: time(row.int(1)?),
        deleted: row.opt_int(2)?.is_some(),
        content: row.text(3)?,
        distinct_emoji: row.int(4)?,
        actor_reactions: row.int(5)?,
        emoji_count: row.int(6)?,
        actor_reacted: row.int(7)? > 0,
    }))
}

/// Applies an accepted op to the message's rows (the log entry is written by the caller).
pub async fn write<DB>(
    conn: &mut DB::Connection,
    write: &MessageWrite,
    now: i64,
) -> Result<(), sqlx::Error>
where
    DB: super::search::Indexed,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
    DB::Arguments: IntoArguments<DB>,
{
    match write {
        MessageWrite::Edit { id, content } => {
            sqlx::query::<DB>("UPDATE messages SET content = $2, edited_at = $3 WHERE id = $1")
                .bind(id.0)
                .bind(content.clone())
                .bind(now)
                .execute(&mut *conn)
                .await?;
            super::search::index_write::<DB>(conn, *id, Some(content)).await?;
        }
        MessageWrite::Delete { id } => tombstone::<DB>(conn, *id, now).await?,
        MessageWrite::Scrub { conversation } => {
            let live: Vec<(i64,)> = sqlx::query_as::<DB, (i64,)>(
                "SELECT id FROM messages WHERE conversation_id = $1 AND deleted_at IS NULL",
            )
            .bind(conversation.0)
            .fetch_all(&mut *conn)
            .await?;
            // One message at a time, inside the one transaction: an operator's rare command,
            // so the plain path (index, reactions, files, edit events) is worth more than speed.
            for (id,) in live {
                tombstone::<DB>(conn, MessageId(id), now).await?;
            }
            // A direct pair may open a new conversation later.
            sqlx::query::<DB>("UPDATE conversations SET direct_key = NULL WHERE id = $1")
                .bind(conversation.0)
                .execute(&mut *conn)
                .await?;
        }
        MessageWrite::React {
            id,
            user,
            emoji,
            on: true,
        } => {
            sqlx::query::<DB>(
                "INSERT INTO reactions (message_id, user_id, emoji, created_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(id.0)
            .bind(user.0)
            .bind(emoji.clone())
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        MessageWrite::ReadUpTo {
            conversation,
            user,
            message,
        } => {
            sqlx::query::<DB>(
                "UPDATE participants SET last_read_message_id = $3
                 WHERE conversation_id = $1 AND user_id = $2 AND last_read_message_id < $3",
            )
            .bind(conversation.0)
            .bind(user.0)
            .bind(message.0)
            .execute(&mut *conn)
            .await?;
        }
        MessageWrite::React {
            id,
            user,
            emoji,
            on: false,
        } => {
            sqlx::query::<DB>(
                "DELETE FROM reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3",
            )
            .bind(id.0)
            .bind(user.0)
            .bind(emoji.clone())
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Tombstones one message: text gone (from the search index too), reactions gone, its files
/// released, and its earlier edit events scrubbed.
async fn tombstone<DB>(
    conn: &mut DB::Connection,
    id: MessageId,
    now: i64,
) -> Result<(), sqlx::Error>
where
    DB: super::search::Indexed,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    DB::Arguments: IntoArguments<DB>,
{
    super::search::index_write::<DB>(conn, id, None).await?;
    sqlx::query::<DB>("UPDATE messages SET content = '', deleted_at = $2 WHERE id = $1")
        .bind(id.0)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query::<DB>("DELETE FROM reactions WHERE message_id = $1")
        .bind(id.0)
        .execute(&mut *conn)
        .await?;
    // Its files go with it (the blobs themselves once no upload names them).
    sqlx::query::<DB>(super::uploads::DETACH)
        .bind(id.0)
        .execute(&mut *conn)
        .await?;
    let scrubbed = serde_json::to_string(&Change::Edited {
        message_id: id,
        content: None,
    })
    .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query::<DB>(
        "UPDATE conversation_events SET payload = $2
         WHERE message_id = $1 AND payload LIKE '{\"change\":\"edited\"%'",
    )
    .bind(id.0)
    .bind(scrubbed)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Which parts of a message a read fills in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decorate {
    /// Quotes and reactions: history pages and single messages.
    All,
    /// Quotes only: a replay, whose later reactions arrive as events of their own.
    Quotes,
}

/// Fills in `quote` and (for `Decorate::All`) `reactions` as `viewer` sees them: two queries
/// per page at most, none when nothing on the page needs them.
pub async fn decorate<DB>(
    pool: &sqlx::Pool<DB>,
    viewer: UserId,
    messages: &mut [Message],
    what: Decorate,
) -> Result<(), sqlx::Error>
where
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    for<'r> String: sqlx::Decode<'r, DB>,
    String: Type<DB>,
    DB::Arguments: IntoArguments<DB> + Default,
{
    let live: Vec<i64> = messages
        .iter()
        .filter(|m| m.deleted_at.is_none())
        .map(|m| m.id.0)
        .collect();
    decorate_known(pool, viewer, messages, what, &live).await
}

/// `decorate`, when the read already knew which messages have attachments (`with_files`):
/// a replay asks for the attachments of those only, usually none.
pub async fn decorate_known<DB>(
    pool: &sqlx::Pool<DB>,
    viewer: UserId,
    messages: &mut [Message],
    what: Decorate,
    with_files: &[i64],
) -> Result<(), sqlx::Error>
where
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    for<'r> String: sqlx::Decode<'r, DB>,
    String: Type<DB>,
    DB::Arguments: IntoArguments<DB> + Default,
{
    let replies: Vec<i64> = messages
        .iter()
        .filter_map(|m| m.reply_to.map(|r| r.0))
        .collect();
    if !replies.is_empty() {
        let quotes = quotes(pool, viewer, &replies).await?;
        for m in messages.iter_mut() {
            m.quote = m
                .reply_to
                .and_then(|r| quotes.get(&r.0).cloned().map(Box::new));
        }
    }
    if !with_files.is_empty() {
        let mut files = super::uploads::attachments(pool, with_files).await?;
        for m in messages.iter_mut() {
            m.attachments = files.remove(&m.id).unwrap_or_default();
        }
    }
    let live: Vec<i64> = messages
        .iter()
        .filter(|m| m.deleted_at.is_none())
        .map(|m| m.id.0)
        .collect();
    if what == Decorate::All && !live.is_empty() {
        let mut reactions = reactions(pool, viewer, &live).await?;
        for m in messages.iter_mut() {
            m.reactions = reactions.remove(&m.id.0).unwrap_or_default();
        }
    }
    Ok(())
}

/// Quotes by quoted id. The preview is the viewer's to read when the conversation shares its
/// history, or the quoted message is inside their current membership's history.
async fn quotes<DB>(
    pool: &sqlx::Pool<DB>,
    viewer: UserId,
    ids: &[i64],
) -> Result<HashMap<i64, Quote>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    for<'r> String: sqlx::Decode<'r, DB>,
    String: Type<DB>,
    DB::Arguments: IntoArguments<DB> + Default,
{
    let mut query = QueryBuilder::<DB>::new(
        "SELECT q.id, q.content, q.deleted_at, u.id, u.username, COALESCE(u.picture, u.avatar_url), u.display_name, u.deleted_at,
                CAST(CASE WHEN c.history = 'shared' THEN 1
                     WHEN q.id >= (SELECT p.history_from FROM participants p
                                   WHERE p.conversation_id = q.conversation_id
                                     AND p.user_id = ",
    );
    query.push_bind(viewer.0);
    query.push(
        ") THEN 1 ELSE 0 END AS BIGINT)
         FROM messages q JOIN users u ON u.id = q.sender_id
         JOIN conversations c ON c.id = q.conversation_id
         WHERE q.id IN (",
    );
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    query.push(")");
    let rows = query.build().fetch_all(pool).await?;
    let mut quotes = HashMap::with_capacity(rows.len());
    for row in &rows {
        let id = row.int(0)?;
        let deleted = row.opt_int(2)?.is_some();
        let visible = row.int(8)? == 1;
        let content = row.text(1)?;
        quotes.insert(
            id,
            Quote {
                id: MessageId(id),
                sender: super::log::user_at(row, 3)?,
                preview: (visible && !deleted).then(|| Quote::preview_of(&content)),
                deleted,
            },
        );
    }
    Ok(quotes)
}

/// Reaction counts by message id, each message's emoji in the order first used.
async fn reactions<DB>(
    pool: &sqlx::Pool<DB>,
    viewer: UserId,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<Reaction>>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    for<'r> String: sqlx::Decode<'r, DB>,
    String: Type<DB>,
    DB::Arguments: IntoArguments<DB> + Default,
{
    let mut query = QueryBuilder::<DB>::new(
        "SELECT message_id, emoji, COUNT(*),
                CAST(MAX(CASE WHEN user_id = ",
    );
    query.push_bind(viewer.0);
    query.push(" THEN 1 ELSE 0 END) AS BIGINT) FROM reactions WHERE message_id IN (");
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    query.push(") GROUP BY message_id, emoji ORDER BY message_id, MIN(created_at), emoji");
    let rows = query.build().fetch_all(pool).await?;
    let mut by_message: HashMap<i64, Vec<Reaction>> = HashMap::new();
    for row in &rows {
        by_message.entry(row.int(0)?).or_default().push(Reaction {
            emoji: row.text(1)?,
            count: row.int(2)?,
            mine: row.int(3)? == 1,
        });
    }
    Ok(by_message)
}

/// Who reacted to message `$1` with what, oldest first, at most `$2` rows.
pub const REACTORS: &str = "
    SELECT r.emoji, u.id, u.username, COALESCE(u.picture, u.avatar_url), u.display_name, u.deleted_at
    FROM reactions r JOIN users u ON u.id = r.user_id
    WHERE r.message_id = $1
    ORDER BY r.created_at, r.user_id LIMIT $2";

/// Message `$1` of conversation `$2`, if `$3` (the viewer's history start) lets them read it.
pub const ONE_MESSAGE: &str = "
    SELECT m.id, m.conversation_id, m.sender_id, m.content, m.created_at,
           m.edited_at, m.deleted_at, m.reply_to
    FROM messages m WHERE m.id = $1 AND m.conversation_id = $2 AND m.id >= $3";

/// `ONE_MESSAGE` decorated for the viewer, whose history starts at `history_from`.
pub async fn one<DB>(
    pool: &sqlx::Pool<DB>,
    viewer: UserId,
    conversation: ConversationId,
    id: MessageId,
    history_from: i64,
) -> Result<Option<Message>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    for<'r> String: sqlx::Decode<'r, DB>,
    String: Type<DB>,
    DB::Arguments: IntoArguments<DB> + Default,
{
    let row = sqlx::query::<DB>(ONE_MESSAGE)
        .bind(id.0)
        .bind(conversation.0)
        .bind(history_from)
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut message = [super::log::message_at(&row, 0)?];
    decorate(pool, viewer, &mut message, Decorate::All).await?;
    let [message] = message;
    Ok(Some(message))
}

/// `REACTORS` as (emoji, user) pairs.
pub async fn reactors<DB>(
    pool: &sqlx::Pool<DB>,
    id: MessageId,
    limit: u32,
) -> Result<Vec<(String, User)>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    for<'r> String: sqlx::Decode<'r, DB>,
    String: Type<DB>,
    DB::Arguments: IntoArguments<DB>,
{
    let rows = sqlx::query::<DB>(REACTORS)
        .bind(id.0)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| Ok((row.text(0)?, super::log::user_at(row, 1)?)))
        .collect()
}

/// Per conversation and sender, the newest message from someone else that lies in
/// `($2, $3]` of `$1`'s inbox.
const NEWLY_DELIVERED: &str = "
    SELECT m.conversation_id, m.sender_id, MAX(m.id)
    FROM member_spans s
    JOIN messages m ON m.conversation_id = s.conversation_id AND m.id >= s.from_position
                   AND (s.to_position IS NULL OR m.id <= s.to_position)
    WHERE s.user_id = $1 AND m.id > $2 AND m.id <= $3 AND m.sender_id <> $1
    GROUP BY m.conversation_id, m.sender_id";

/// `Store::acknowledge` on either backend, in one transaction: the device's row, the person's
/// delivered position (only forward), then what moved.
pub async fn acknowledge<DB>(
    conn: &mut DB::Connection,
    user: UserId,
    device: &str,
    position: MessageId,
    now: i64,
) -> Result<Vec<crate::store::Delivery>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    for<'r> String: sqlx::Decode<'r, DB>,
    String: Type<DB>,
    DB::Arguments: IntoArguments<DB>,
{
    // Takes the person's row lock first (a no-op update: PostgreSQL locks the row, SQLite's
    // immediate transaction already holds the file), so two devices acknowledging at once
    // cannot both report the same deliveries.
    sqlx::query::<DB>("UPDATE users SET delivered_position = delivered_position WHERE id = $1")
        .bind(user.0)
        .execute(&mut *conn)
        .await?;
    // Nobody acknowledges what is not in their inbox yet.
    let head = sqlx::query::<DB>(super::log::INBOX_HEAD)
        .bind(user.0)
        .fetch_one(&mut *conn)
        .await?
        .int(0)?;
    let position = position.0.min(head);
    sqlx::query::<DB>(
        "INSERT INTO device_acks (user_id, device, position, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, device) DO UPDATE SET
             position = CASE WHEN excluded.position > device_acks.position
                             THEN excluded.position ELSE device_acks.position END,
             updated_at = excluded.updated_at",
    )
    .bind(user.0)
    .bind(device.to_owned())
    .bind(position)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let before = sqlx::query::<DB>("SELECT delivered_position FROM users WHERE id = $1")
        .bind(user.0)
        .fetch_one(&mut *conn)
        .await?
        .int(0)?;
    if position <= before {
        return Ok(Vec::new());
    }
    sqlx::query::<DB>("UPDATE users SET delivered_position = $2 WHERE id = $1")
        .bind(user.0)
        .bind(position)
        .execute(&mut *conn)
        .await?;
    let rows = sqlx::query::<DB>(NEWLY_DELIVERED)
        .bind(user.0)
        .bind(before)
        .bind(position)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(crate::store::Delivery {
                conversation: ConversationId(row.int(0)?),
                sender: UserId(row.int(1)?),
                message: MessageId(row.int(2)?),
            })
        })
        .collect()
}

/// Whether `user` shares read receipts; `None` for an unknown user.
pub async fn read_receipts<DB>(
    pool: &sqlx::Pool<DB>,
    user: UserId,
) -> Result<Option<bool>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    DB::Arguments: IntoArguments<DB>,
{
    let row = sqlx::query::<DB>("SELECT read_receipts FROM users WHERE id = $1")
        .bind(user.0)
        .fetch_optional(pool)
        .await?;
    row.map(|r| sqlx::Row::try_get::<i64, _>(&r, 0).map(|on| on != 0))
        .transpose()
}

pub async fn set_read_receipts<DB>(
    pool: &sqlx::Pool<DB>,
    user: UserId,
    on: bool,
) -> Result<(), sqlx::Error>
where
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    DB::Arguments: IntoArguments<DB>,
{
    sqlx::query::<DB>("UPDATE users SET read_receipts = $2 WHERE id = $1")
        .bind(user.0)
        .bind(i64::from(on))
        .execute(pool)
        .await?;
    Ok(())
}

/// `READ_MARKER` for `viewer` in `conversation`: marker, newest message, shares receipts;
/// `None` unless they are a member.
pub async fn read_marker<DB>(
    pool: &sqlx::Pool<DB>,
    viewer: UserId,
    conversation: ConversationId,
) -> Result<Option<(MessageId, MessageId, bool)>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    DB::Arguments: IntoArguments<DB>,
{
    let row = sqlx::query::<DB>(super::log::READ_MARKER)
        .bind(conversation.0)
        .bind(viewer.0)
        .fetch_optional(pool)
        .await?;
    row.map(|r| {
        let int = |at: usize| sqlx::Row::try_get::<i64, _>(&r, at);
        Ok((MessageId(int(0)?), MessageId(int(1)?), int(2)? != 0))
    })
    .transpose()
}

/// `ADVANCE_READ_MARKER`: moves `viewer`'s marker in `conversation` forward to `to`.
pub async fn advance_read_marker<DB>(
    pool: &sqlx::Pool<DB>,
    viewer: UserId,
    conversation: ConversationId,
    to: MessageId,
) -> Result<(), sqlx::Error>
where
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    DB::Arguments: IntoArguments<DB>,
{
    sqlx::query::<DB>(super::log::ADVANCE_READ_MARKER)
        .bind(conversation.0)
        .bind(viewer.0)
        .bind(to.0)
        .execute(pool)
        .await?;
    Ok(())
}
