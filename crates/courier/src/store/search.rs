//! Full-text search over the messages a viewer may read, and history around one message.
//!
//! **What is indexed.** `model::search::index_text(content)`: the message's folded words
//! joined by spaces (one tokenizer for both stores, see `model::search`). The index is
//! written by the store in the same transaction as an edit (the new words replace the old)
//! and a delete (the row leaves the index), through `index_write`, called from
//! `lifecycle::write`. A new message's words are written in the same transaction as the
//! message on PostgreSQL; on SQLite the writer writes them in batches just behind the sends,
//! and every search first waits for the batch (`sqlite/search_backlog.rs`), so a message is
//! found once its send is answered. A tombstone has nothing left to find.
//!
//! **SQLite: FTS5, contentless with `contentless_delete`** (migration 0012), not triggers:
//! a trigger cannot run the Rust tokenizer that splits Han and kana into single characters,
//! and a contentless table holds no second copy of every message. PostgreSQL: a `tsvector`
//! column with a GIN index, not `pg_trgm`: words and phrases (`<->`) are what the query
//! language asks for, a GIN index on lexemes answers them without scanning, and trigram
//! matching would find "cat" inside "concatenate". The `'simple'` configuration does no
//! stemming on either store (people write in many languages; a wrong stem hides messages).
//! `websearch_to_tsquery` is not used: the query is parsed once, in `model::search`, and the
//! store receives only quoted letter-and-digit words, so both stores agree on its meaning.
//!
//! **Who sees what.** Exactly what `GET /conversations/{id}/messages` shows: the current
//! members of a conversation, from their `history_from` on (a member who left sees nothing of
//! it, a member of a `joined` conversation nothing before they joined), tombstones never.
//!
//! **Order and paging.** Newest first, by message id. `before` is the id of the last hit of
//! the previous page: ids only grow, so a page never shifts while new messages arrive, and a
//! deleted or edited message only drops out. Ranking by relevance (bm25, `ts_rank`) was left
//! out on purpose: its scores change as the corpus grows, so a relevance cursor would repeat
//! or skip hits, and it must score every match where newest-first can stop at the page.

use super::StoreResult;
use super::log::{Columns, message_at, user_at};
use super::{Store, StoreError};
use crate::model::{ConversationId, Message, MessageId, SearchQuery, User, UserId, Username};
use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Encode, Executor, IntoArguments, QueryBuilder, Type};

/// Whether new sends are indexed. Always, except in a benchmark's control run, which sets the
/// hidden environment variable `COURIER_BENCH_UNINDEXED_SENDS=1` to measure what indexing costs
/// a send (SQLite only; such a server's new messages cannot be found).
pub fn index_sends() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("COURIER_BENCH_UNINDEXED_SENDS").as_deref() != Ok("1"))
}

/// One search: the parsed query, optionally one conversation, the page.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: SearchQuery,
    pub conversation: Option<ConversationId>,
    /// Only hits with a smaller message id (the previous page's last hit).
    pub before: Option<MessageId>,
    pub limit: u32,
}

/// A matching message (not decorated: a result list needs no quotes or reactions), who sent
/// it, and which conversation it is in.
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub message: Message,
    pub sender: User,
    pub conversation_kind: String,
    pub conversation_title: Option<String>,
}

#[async_trait]
pub trait SearchStore: Send + Sync {
    /// The viewer's visible messages matching the request, newest first.
    async fn search(&self, viewer: UserId, request: &SearchRequest) -> StoreResult<Vec<SearchHit>>;
    /// Up to `each_side` messages older than `around`, `around` itself and up to `each_side`
    /// newer, newest first, decorated like a history page; `NotFound` unless the viewer is a
    /// member who may read `around`.
    async fn messages_around(
        &self,
        viewer: UserId,
        conversation: ConversationId,
        around: MessageId,
        each_side: u32,
    ) -> StoreResult<Vec<Message>>;
}

/// How a store matches the index; the rest of the query is shared.
#[derive(Debug, Clone, Copy)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The statements that keep the index in step, `$1` the message id, `$2` its indexed
    /// words: (after an insert or edit, after a delete).
    pub const fn index_statements(self) -> (&'static str, &'static str) {
        match self {
            Dialect::Sqlite => (
                "INSERT OR REPLACE INTO message_search (rowid, words) VALUES ($1, $2)",
                "DELETE FROM message_search WHERE rowid = $1",
            ),
            Dialect::Postgres => (
                "UPDATE messages SET search_words = to_tsvector('simple', $2) WHERE id = $1",
                "UPDATE messages SET search_words = NULL WHERE id = $1",
            ),
        }
    }
}

/// A database whose index statements `lifecycle::write` runs.
pub trait Indexed: Database {
    const DIALECT: Dialect;
}

impl Indexed for sqlx::Sqlite {
    const DIALECT: Dialect = Dialect::Sqlite;
}

#[cfg(feature = "postgres")]
impl Indexed for sqlx::Postgres {
    const DIALECT: Dialect = Dialect::Postgres;
}

/// Re-indexes an edited message (`Some(content)`) or takes a deleted one out (`None`), inside
/// the caller's transaction.
pub async fn index_write<DB>(
    conn: &mut DB::Connection,
    id: MessageId,
    content: Option<&str>,
) -> Result<(), sqlx::Error>
where
    DB: Indexed,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    DB::Arguments: IntoArguments<DB>,
{
    let (upsert, delete) = DB::DIALECT.index_statements();
    match content {
        Some(content) => {
            // SQLite's contentless table cannot UPDATE a row: delete, then insert.
            if matches!(DB::DIALECT, Dialect::Sqlite) {
                sqlx::query::<DB>(delete)
                    .bind(id.0)
                    .execute(&mut *conn)
                    .await?;
            }
            sqlx::query::<DB>(upsert)
                .bind(id.0)
                .bind(crate::model::index_text(content))
                .execute(&mut *conn)
                .await?;
        }
        None => {
            sqlx::query::<DB>(delete)
                .bind(id.0)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// The search itself on either store; `sender` is the resolved `from:` (if any).
pub async fn search<DB>(
    pool: &sqlx::Pool<DB>,
    dialect: Dialect,
    viewer: UserId,
    request: &SearchRequest,
    sender: Option<UserId>,
) -> Result<Vec<SearchHit>, sqlx::Error>
where
    DB: Database,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB>,
    for<'r> String: sqlx::Decode<'r, DB>,
    String: Type<DB>,
    DB::Arguments: IntoArguments<DB> + Default,
{
    let words = request.query.has_words();
    let mut query = QueryBuilder::<DB>::new(format!(
        "SELECT {}, {}, c.kind, c.title FROM ",
        super::log::MESSAGE_COLUMNS,
        super::log::USER_COLUMNS
    ));
    // SQLite: CROSS JOIN fixes the order (FTS first, then primary-key lookups). Left to
    // itself the planner put the viewer's messages outside and ran the MATCH once per message:
    // 8 s for a word found nowhere in 87,000 messages.
    // (PostgreSQL has no CROSS JOIN … ON and needs no help.)
    let join = match dialect {
        Dialect::Sqlite => "CROSS JOIN",
        Dialect::Postgres => "JOIN",
    };
    if words && matches!(dialect, Dialect::Sqlite) {
        query.push(format!(
            "message_search s {join} messages m ON m.id = s.rowid "
        ));
    } else {
        query.push("messages m ");
    }
    query.push(format!(
        "{join} participants p ON p.conversation_id = m.conversation_id AND p.user_id = "
    ));
    query.push_bind(viewer.0);
    query.push(format!(
        " {join} users u ON u.id = m.sender_id
         {join} conversations c ON c.id = m.conversation_id
         WHERE m.id >= p.history_from AND m.deleted_at IS NULL"
    ));
    if words {
        match dialect {
            Dialect::Sqlite => query.push(" AND message_search MATCH "),
            Dialect::Postgres => query.push(" AND m.search_words @@ to_tsquery('simple', "),
        };
        match dialect {
            Dialect::Sqlite => query.push_bind(request.query.fts5_match()),
            Dialect::Postgres => query.push_bind(request.query.tsquery()).push(")"),
        };
    }
    if let Some(conversation) = request.conversation {
        query
            .push(" AND m.conversation_id = ")
            .push_bind(conversation.0);
    }
    if let Some(sender) = sender {
        query.push(" AND m.sender_id = ").push_bind(sender.0);
    }
    // On SQLite the FTS table's own rowid (= message id) orders and bounds the page, so FTS5
    // walks its doclists newest first and stops at the page instead of sorting every match.
    let id = if words && matches!(dialect, Dialect::Sqlite) {
        "s.rowid"
    } else {
        "m.id"
    };
    if let Some(before) = request.before {
        query.push(format!(" AND {id} < ")).push_bind(before.0);
    }
    query
        .push(format!(" ORDER BY {id} DESC LIMIT "))
        .push_bind(i64::from(request.limit));
    let rows = query.build().fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(SearchHit {
                message: message_at(row, 0)?,
                sender: user_at(row, 8)?,
                conversation_kind: row.text(13)?,
                conversation_title: row.opt_text(14)?,
            })
        })
        .collect()
}

/// The user a `from:` names; `None` when nobody has that name (no hits, not an error).
pub async fn sender(store: &dyn Store, name: &str) -> StoreResult<Option<UserId>> {
    let Ok(username) = Username::parse(name) else {
        return Ok(None);
    };
    match store.user_by_username(&username).await {
        Ok(user) => Ok(Some(user.id)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `messages_around` on either store, for a viewer whose history starts at `history_from`.
pub async fn around<DB>(
    pool: &sqlx::Pool<DB>,
    viewer: UserId,
    conversation: ConversationId,
    around: MessageId,
    each_side: u32,
    history_from: i64,
) -> Result<Option<Vec<Message>>, sqlx::Error>
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
    let columns = super::log::MESSAGE_COLUMNS;
    let older = format!(
        "SELECT {columns} FROM messages m
         WHERE m.conversation_id = $1 AND m.id <= $2 AND m.id >= $3
         ORDER BY m.id DESC LIMIT $4"
    );
    let newer = format!(
        "SELECT {columns} FROM messages m
         WHERE m.conversation_id = $1 AND m.id > $2 AND m.id >= $3
         ORDER BY m.id LIMIT $4"
    );
    let read = |sql: String, limit: u32| async move {
        let rows = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql))
            .bind(conversation.0)
            .bind(around.0)
            .bind(history_from)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
        rows.iter()
            .map(|r| message_at(r, 0))
            .collect::<Result<Vec<_>, _>>()
    };
    let older = read(older, each_side + 1).await?;
    if older.first().map(|m| m.id) != Some(around) {
        return Ok(None);
    }
    let mut page = read(newer, each_side).await?;
    page.reverse();
    page.extend(older);
    super::lifecycle::decorate(pool, viewer, &mut page, super::lifecycle::Decorate::All).await?;
    Ok(Some(page))
}
