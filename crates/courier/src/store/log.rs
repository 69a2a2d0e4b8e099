//! What both stores share about the log: the SQL both dialects accept (sqlx numbers `$N`
//! parameters on SQLite too) and the merge of the two tables a replay reads.
//!
//! Positions: one counter numbers every durable change. A message's id is its position; a
//! change (group created, renamed, members added, removed or left, a role changed) is a row of
//! `conversation_events` at its own position. Each store hands positions out in commit order
//! per user (SQLite: its one writer thread; PostgreSQL: the locks of each append's audience), so
//! "everything visible to me after p" is complete once my p is visible, whatever the kinds.
//!
//! Visibility: `member_spans` says from which position to which a user was a member. An entry
//! at position p of conversation c goes to user u iff some span of (u, c) has
//! `from_position <= p <= to_position` (an open span has no end). A removal or leave closes
//! the span *at* its own position, so the one leaving gets that event and nothing after it.

use crate::model::{
    ConversationEvent, ConversationId, ConversationKind, ConversationView, History, LogEntry,
    Member, Message, MessageId, Role, Session, User, UserId,
};
use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Decode, Row, Type};

/// Row mapping both stores share: the column types Courier uses decode alike on both, and on
/// the SQLite store's own rusqlite readers (`store::sqlite::reader`).
pub trait Columns<'r> {
    fn int(&'r self, at: usize) -> Result<i64, sqlx::Error>;
    fn opt_int(&'r self, at: usize) -> Result<Option<i64>, sqlx::Error>;
    fn text(&'r self, at: usize) -> Result<String, sqlx::Error>;
    fn opt_text(&'r self, at: usize) -> Result<Option<String>, sqlx::Error>;
}

impl<'r, R> Columns<'r> for R
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    fn int(&'r self, at: usize) -> Result<i64, sqlx::Error> {
        self.try_get(at)
    }
    fn opt_int(&'r self, at: usize) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(at)
    }
    fn text(&'r self, at: usize) -> Result<String, sqlx::Error> {
        self.try_get(at)
    }
    fn opt_text(&'r self, at: usize) -> Result<Option<String>, sqlx::Error> {
        self.try_get(at)
    }
}

pub fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The columns `session_at` reads, for `sessions`.
pub const SESSION_COLUMNS: &str = "id, user_id, device, created_at, last_seen_at, expires_at";

/// `SESSION_COLUMNS` from column 0.
pub fn session_at<'r, R: Columns<'r>>(row: &'r R) -> Result<Session, sqlx::Error> {
    Ok(Session {
        id: row.text(0)?,
        user: UserId(row.int(1)?),
        device: row.text(2)?,
        created_at: time(row.int(3)?),
        last_seen_at: time(row.int(4)?),
        expires_at: time(row.int(5)?),
    })
}

/// The columns `message_at` reads, for a `messages m`.
pub const MESSAGE_COLUMNS: &str = "m.id, m.conversation_id, m.sender_id, m.content, m.created_at, \
     m.edited_at, m.deleted_at, m.reply_to";

/// `MESSAGE_COLUMNS` from column `at`. Quotes and reactions come from `shared::decorate`.
pub fn message_at<'r, R: Columns<'r>>(row: &'r R, at: usize) -> Result<Message, sqlx::Error> {
    Ok(Message {
        id: MessageId(row.int(at)?),
        conversation_id: ConversationId(row.int(at + 1)?),
        sender_id: UserId(row.int(at + 2)?),
        content: row.text(at + 3)?,
        created_at: time(row.int(at + 4)?),
        edited_at: row.opt_int(at + 5)?.map(time),
        deleted_at: row.opt_int(at + 6)?.map(time),
        reply_to: row.opt_int(at + 7)?.map(MessageId),
        quote: None,
        reactions: Vec::new(),
        attachments: Vec::new(),
    })
}

/// The columns `user_at` reads, for a `users u`: the picture is the uploaded one, else the
/// provider's; a deleted account shows neither name nor picture.
pub const USER_COLUMNS: &str =
    "u.id, u.username, COALESCE(u.picture, u.avatar_url), u.display_name, u.deleted_at";

/// `USER_COLUMNS` from column `at`.
pub fn user_at<'r, R: Columns<'r>>(row: &'r R, at: usize) -> Result<User, sqlx::Error> {
    Ok(user_from((
        row.int(at)?,
        row.text(at + 1)?,
        row.opt_text(at + 2)?,
        row.opt_text(at + 3)?,
        row.opt_int(at + 4)?,
    )))
}

/// A `USER_COLUMNS` row as a tuple.
pub type UserRow = (i64, String, Option<String>, Option<String>, Option<i64>);

pub fn user_from((id, username, avatar_url, display_name, deleted_at): UserRow) -> User {
    let deleted = deleted_at.is_some();
    User {
        id: UserId(id),
        username,
        avatar_url: if deleted { None } else { avatar_url },
        display_name: if deleted { None } else { display_name },
        deleted,
    }
}

/// A row of `CONVERSATION_VIEW`.
pub fn conversation_view<'r, R: Columns<'r>>(row: &'r R) -> Result<ConversationView, sqlx::Error> {
    let last_message = match row.opt_int(14)? {
        Some(_) => Some(message_at(row, 14)?),
        None => None,
    };
    let other_participant = match row.opt_int(7)? {
        Some(_) => Some(user_at(row, 7)?),
        None => None,
    };
    let unread_count = (row.opt_int(13)?.unwrap_or(0) - row.int(6)?).max(0);
    Ok(ConversationView {
        id: ConversationId(row.int(0)?),
        kind: ConversationKind::from_db(&row.text(1)?),
        title: row.opt_text(2)?,
        member_count: row.int(3)?,
        history: History::parse(&row.text(4)?).unwrap_or(History::Shared),
        role: Role::from_db(&row.text(5)?),
        other_participant,
        has_unread_messages: unread_count > 0,
        unread_count,
        last_message,
        muted: row.int(12)? != 0,
        last_message_read_by: row.int(22)?,
        read_positions: None,
        last_message_delivered_to: row.int(23)?,
        delivered_positions: None,
    })
}

/// A row of `INBOX_CHANGES` (`at` 0), or its columns from `at` in a wider row.
pub fn change_at<'r, R: Columns<'r>>(
    row: &'r R,
    at: usize,
) -> Result<ConversationEvent, sqlx::Error> {
    Ok(ConversationEvent {
        position: MessageId(row.int(at)?),
        conversation_id: ConversationId(row.int(at + 1)?),
        change: serde_json::from_str(&row.text(at + 2)?)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        created_at: time(row.int(at + 3)?),
        actor: user_at(row, at + 4)?,
    })
}

/// Where the other members of `$1` (not `$2`) have read to, newest first, at most
/// `READ_POSITIONS_MAX` (20): only those who share read receipts, and nothing unless `$2`
/// shares theirs. The limit is written into the SQL, not bound: SQLite re-prepares a statement
/// on every execution once a bound value can shape its plan, and a bound `LIMIT` does.
pub const READ_POSITIONS: &str = "
    SELECT o.user_id, o.last_read_message_id
    FROM participants o JOIN users ou ON ou.id = o.user_id
    WHERE o.conversation_id = $1 AND o.user_id <> $2 AND ou.read_receipts <> 0
      AND (SELECT me.read_receipts FROM users me WHERE me.id = $2) <> 0
    ORDER BY o.last_read_message_id DESC, o.user_id LIMIT 20";

/// How far each other member of `$1` (not `$2`) has the conversation on a device (delivered,
/// or read), at most `READ_POSITIONS_MAX` (20; written in, as above).
pub const DELIVERED_POSITIONS: &str = "
    SELECT o.user_id,
           CASE WHEN ou.delivered_position > o.last_read_message_id
                THEN ou.delivered_position ELSE o.last_read_message_id END
    FROM participants o JOIN users ou ON ou.id = o.user_id
    WHERE o.conversation_id = $1 AND o.user_id <> $2
    ORDER BY o.user_id LIMIT 20";

/// `$2`'s read marker in `$1`, the conversation's newest message (0 if none), and whether
/// `$2` shares read receipts.
pub const READ_MARKER: &str = "
    SELECT p.last_read_message_id, COALESCE(c.last_message_id, 0), u.read_receipts
    FROM participants p JOIN conversations c ON c.id = p.conversation_id
    JOIN users u ON u.id = p.user_id
    WHERE p.conversation_id = $1 AND p.user_id = $2";

/// Moves `$2`'s read marker in `$1` forward to `$3`.
pub const ADVANCE_READ_MARKER: &str = "
    UPDATE participants SET last_read_message_id = $3
    WHERE conversation_id = $1 AND user_id = $2 AND last_read_message_id < $3";

/// Sets the caller's mute flag (`$3`: 0 or 1) on a conversation they are in.
pub const SET_MUTED: &str =
    "UPDATE participants SET muted = $3 WHERE conversation_id = $1 AND user_id = $2";

/// Push subscriptions: insert or take over an endpoint ($1 endpoint, $2 user, $3 p256dh,
/// $4 auth, $5 hide_content, $6 created_at).
pub const SAVE_PUSH: &str = "
    INSERT INTO push_subscriptions (endpoint, user_id, p256dh, auth, hide_content, created_at)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (endpoint) DO UPDATE SET user_id = excluded.user_id, p256dh = excluded.p256dh,
        auth = excluded.auth, hide_content = excluded.hide_content";
pub const DELETE_PUSH: &str = "DELETE FROM push_subscriptions WHERE user_id = $1 AND endpoint = $2";
pub const DROP_PUSH: &str = "DELETE FROM push_subscriptions WHERE endpoint = $1";
pub const PUSH_SUBSCRIBERS: &str = "SELECT DISTINCT user_id FROM push_subscriptions";
/// Spends an OAuth flow id: no row is inserted when it was already spent.
pub const SPEND_FLOW: &str =
    "INSERT INTO oauth_flows (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING";
/// Forgets spent flows that have expired (their cookies are refused as expired anyway).
pub const PURGE_FLOWS: &str = "DELETE FROM oauth_flows WHERE expires_at < $1";
/// Members of `$1` other than `$2` who have not muted it, with their subscriptions.
pub const PUSH_TARGETS: &str = "
    SELECT s.user_id, s.endpoint, s.p256dh, s.auth, s.hide_content
    FROM participants p JOIN push_subscriptions s ON s.user_id = p.user_id
    WHERE p.conversation_id = $1 AND p.user_id <> $2 AND p.muted = 0";

/// A row of `PUSH_TARGETS`.
pub fn push_target_at<'r, R: Columns<'r>>(row: &'r R) -> Result<super::PushTarget, sqlx::Error> {
    Ok(super::PushTarget {
        user: UserId(row.int(0)?),
        endpoint: row.text(1)?,
        p256dh: row.text(2)?,
        auth: row.text(3)?,
        hide_content: row.int(4)? != 0,
    })
}

/// A row of `MEMBERS`.
pub fn member_at<'r, R: Columns<'r>>(row: &'r R) -> Result<Member, sqlx::Error> {
    Ok(Member {
        user: user_at(row, 0)?,
        role: Role::from_db(&row.text(5)?),
        joined_at: time(row.int(6)?),
    })
}

/// The newest position visible to `$1` (0 if none): each span ends at its conversation's
/// newest position (a primary-key lookup per span, never a scan of the often rewritten
/// `conversations`), or where it was closed.
pub const INBOX_HEAD: &str = "
    SELECT COALESCE(MAX(CASE WHEN s.to_position IS NULL THEN (SELECT c.last_position
                                                           FROM conversations c
                                                           WHERE c.id = s.conversation_id)
                             ELSE s.to_position END), 0)
    FROM member_spans s
    WHERE s.user_id = $1";

/// `$1`'s messages after position `$2`, oldest first, at most `$3`.
pub const INBOX_MESSAGES: &str = "
    SELECT m.id, m.conversation_id, m.sender_id, m.content, m.created_at,
           m.edited_at, m.deleted_at, m.reply_to
    FROM member_spans s
    JOIN messages m ON m.conversation_id = s.conversation_id AND m.id >= s.from_position
                   AND (s.to_position IS NULL OR m.id <= s.to_position)
    WHERE s.user_id = $1 AND m.id > $2
    ORDER BY m.id LIMIT $3";

/// `$1`'s change events after position `$2`, oldest first, at most `$3`. An event about a
/// message older than the span (joined history) is not theirs: they cannot read that message.
pub const INBOX_CHANGES: &str = "
    SELECT e.position, e.conversation_id, e.payload, e.created_at,
           u.id, u.username, COALESCE(u.picture, u.avatar_url), u.display_name, u.deleted_at
    FROM member_spans s
    JOIN conversation_events e ON e.conversation_id = s.conversation_id
                              AND e.position >= s.from_position
                              AND (s.to_position IS NULL OR e.position <= s.to_position)
    JOIN users u ON u.id = e.actor_id
    WHERE s.user_id = $1 AND e.position > $2
      AND (e.message_id IS NULL OR e.message_id >= s.from_position
           OR (SELECT c.history FROM conversations c WHERE c.id = s.conversation_id) = 'shared')
      AND (e.actor_id = $1 OR e.payload NOT LIKE '{\"change\":\"read\"%'
           OR (SELECT me.read_receipts FROM users me WHERE me.id = $1) <> 0)
    ORDER BY e.position LIMIT $3";

/// `$1`'s log after position `$2`, messages and changes together in position order, at most
/// `{limit}` (written in, see `with_limit`). One statement, so one snapshot: read as two, a
/// message and then a change committing between the reads would come back as the change alone,
/// and a stream continuing from the change would skip the message for ever (PostgreSQL's
/// per-statement snapshots did exactly that). Portable SQL, read with `inbox_entry_at`.
/// Columns: 0 kind (0 message, 1 change), 1 position (both), 1..=8 `MESSAGE_COLUMNS` for a
/// message, 9 whether it has attachments (deleted ones keep none), 10..=18 a change's
/// `INBOX_CHANGES` columns.
pub fn inbox_sql(limit: u32) -> String {
    let messages = with_limit(INBOX_MESSAGES, limit).replacen(
        "m.edited_at, m.deleted_at, m.reply_to",
        "m.edited_at, m.deleted_at, m.reply_to,
           CASE WHEN m.deleted_at IS NULL
                     AND EXISTS (SELECT 1 FROM uploads f WHERE f.message_id = m.id)
                THEN CAST(1 AS BIGINT) ELSE CAST(0 AS BIGINT) END,
           {N_INT}, {N_INT}, {N_TEXT}, {N_INT}, {N_INT}, {N_TEXT}, {N_TEXT}, {N_TEXT}, {N_INT}",
        1,
    );
    let messages = messages.replacen("SELECT m.id", "SELECT CAST(0 AS BIGINT), m.id", 1);
    let changes = with_limit(INBOX_CHANGES, limit).replacen(
        "SELECT e.position, e.conversation_id, e.payload, e.created_at,
           u.id,",
        "SELECT CAST(1 AS BIGINT), e.position,
           {N_INT}, {N_INT}, {N_TEXT}, {N_INT}, {N_INT}, {N_INT}, {N_INT},
           CAST(0 AS BIGINT), e.position, e.conversation_id, e.payload, e.created_at, u.id,",
        1,
    );
    // PostgreSQL types an untyped NULL in a derived table as TEXT, which then fails to
    // match the other branch's BIGINT: every filler NULL says its type.
    let typed = |sql: String| {
        sql.replace("{N_INT}", "CAST(NULL AS BIGINT)")
            .replace("{N_TEXT}", "CAST(NULL AS TEXT)")
    };
    let (messages, changes) = (typed(messages), typed(changes));
    debug_assert!(
        messages.contains("CAST(0 AS BIGINT), m.id")
            && changes.contains("CAST(1 AS BIGINT), e.position")
    );
    format!(
        "SELECT * FROM ({messages}) AS inbox_messages
         UNION ALL SELECT * FROM ({changes}) AS inbox_changes ORDER BY 2 LIMIT {limit}"
    )
}

/// A row of `inbox_sql`, and whether it is a message with attachments.
pub fn inbox_entry_at<'r, R: Columns<'r>>(row: &'r R) -> Result<(LogEntry, bool), sqlx::Error> {
    if row.int(0)? == 0 {
        return Ok((LogEntry::Message(message_at(row, 1)?), row.int(9)? != 0));
    }
    Ok((LogEntry::Change(change_at(row, 10)?), false))
}

/// The rows of one `inbox_sql` read, sorted out: messages (to decorate before they are sent),
/// changes, the messages that have attachments, and how many rows came back.
#[derive(Default)]
pub struct InboxRows {
    pub messages: Vec<Message>,
    pub changes: Vec<LogEntry>,
    pub with_files: Vec<i64>,
    pub read: usize,
}

impl InboxRows {
    pub fn push<'r, R: Columns<'r>>(&mut self, row: &'r R) -> Result<(), sqlx::Error> {
        self.read += 1;
        match inbox_entry_at(row)? {
            (LogEntry::Message(message), files) => {
                if files {
                    self.with_files.push(message.id.0);
                }
                self.messages.push(message);
            }
            (change, _) => self.changes.push(change),
        }
        Ok(())
    }

    /// Every entry in position order. Messages and changes are both complete up to the last
    /// row read (one LIMIT over both), so nothing is cut.
    pub fn entries(self) -> Vec<LogEntry> {
        let messages = self.messages.into_iter().map(LogEntry::Message).collect();
        merge(messages, self.changes, self.read)
    }
}

/// `sql` (ending `LIMIT $3`) with the limit written in. SQLite re-prepares a statement whose
/// LIMIT is a bound parameter every time it runs (seen as `sqlite3Reprepare` in profiles of
/// stream catch-ups); a literal keeps one prepared statement per limit in sqlx's cache.
pub fn with_limit(sql: &str, limit: u32) -> String {
    let base = sql
        .strip_suffix("LIMIT $3")
        .expect("the query ends with LIMIT $3");
    format!("{base}LIMIT {limit}")
}

/// One row per conversation as `$1` sees it; the caller appends WHERE/ORDER clauses.
/// Columns: 0 id, 1 kind, 2 title, 3 member_count, 4 history, 5 role, 6 last read seq,
/// 7..=11 the other participant (direct only, `USER_COLUMNS`), 12 muted, 13 the last message's
/// seq, 14..=21 the last message (`MESSAGE_COLUMNS`), 22 how many other members have read it (0
/// when the viewer does not share read receipts: receipts are mutual), 23 how many have it on
/// a device (delivered; reading counts).
pub const CONVERSATION_VIEW: &str = "
    SELECT c.id, c.kind, c.title, c.member_count, c.history, p.role,
           COALESCE(r.seq, 0),
           u.id, u.username, COALESCE(u.picture, u.avatar_url), u.display_name, u.deleted_at,
           p.muted, m.seq,
           m.id, m.conversation_id, m.sender_id, m.content, m.created_at,
           m.edited_at, m.deleted_at, m.reply_to,
           (SELECT COUNT(*) FROM participants o JOIN users ou ON ou.id = o.user_id
            WHERE o.conversation_id = c.id AND o.user_id <> p.user_id AND ou.read_receipts <> 0
              AND o.last_read_message_id >= c.last_message_id
              AND (SELECT me.read_receipts FROM users me WHERE me.id = p.user_id) <> 0),
           (SELECT COUNT(*) FROM participants o JOIN users ou ON ou.id = o.user_id
            WHERE o.conversation_id = c.id AND o.user_id <> p.user_id
              AND (ou.delivered_position >= c.last_message_id
                   OR o.last_read_message_id >= c.last_message_id))
    FROM participants p
    JOIN conversations c ON c.id = p.conversation_id
    LEFT JOIN users u ON c.kind = 'direct' AND u.id =
        (SELECT o.user_id FROM participants o
         WHERE o.conversation_id = c.id AND o.user_id <> p.user_id
         ORDER BY o.joined_at, o.user_id LIMIT 1)
    LEFT JOIN messages m ON m.id = c.last_message_id AND m.id >= p.history_from
    LEFT JOIN messages r ON r.id = p.last_read_message_id
    WHERE p.user_id = $1";

/// Where a conversation sorts in the list: its last message, or for a group without one,
/// its creation. A direct conversation without a message is not listed (as in the seed).
pub const SORT_KEY: &str = "COALESCE(c.last_message_id, c.created_position)";

/// A page of members of `$1`, in user id order after `$2`, at most `$3`.
pub const MEMBERS: &str = "
    SELECT u.id, u.username, COALESCE(u.picture, u.avatar_url), u.display_name, u.deleted_at,
           p.role, p.joined_at
    FROM participants p JOIN users u ON u.id = p.user_id
    WHERE p.conversation_id = $1 AND p.user_id > $2
    ORDER BY p.user_id LIMIT $3";

/// The roster a change is decided against: user, role, joined position, history start.
pub const ROSTER: &str = "
    SELECT user_id, role, joined_position, history_from FROM participants
    WHERE conversation_id = $1";

/// Merges a replay's two reads into position order. When a read came back full, entries past
/// its last position may be missing from it, so the merge stops there; the caller reads on
/// from the last entry it got.
pub fn merge(messages: Vec<LogEntry>, changes: Vec<LogEntry>, limit: usize) -> Vec<LogEntry> {
    let cut = [&messages, &changes]
        .iter()
        .filter(|list| list.len() >= limit)
        .filter_map(|list| list.last().map(LogEntry::position))
        .min();
    let mut all: Vec<LogEntry> = messages.into_iter().chain(changes).collect();
    all.sort_by_key(LogEntry::position);
    if let Some(cut) = cut {
        all.retain(|e| e.position() <= cut);
    }
    all.truncate(limit);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConversationId, Message, MessageId, UserId};

    fn m(id: i64) -> LogEntry {
        LogEntry::Message(Message {
            id: MessageId(id),
            conversation_id: ConversationId(1),
            sender_id: UserId(1),
            ..Default::default()
        })
    }

    fn positions(entries: &[LogEntry]) -> Vec<i64> {
        entries.iter().map(|e| e.position().0).collect()
    }

    #[test]
    fn merge_stops_where_a_full_read_may_have_left_entries_out() {
        // Messages came back full (3) up to 6; changes at 7 and 9 may hide messages at 8.
        let merged = merge(vec![m(2), m(4), m(6)], vec![m(3), m(7), m(9)], 3);
        assert_eq!(positions(&merged), vec![2, 3, 4]);
        let merged = merge(vec![m(2), m(4), m(6)], vec![m(7)], 3);
        assert_eq!(positions(&merged), vec![2, 4, 6]);
        let merged = merge(vec![m(2)], vec![m(1), m(5)], 3);
        assert_eq!(positions(&merged), vec![1, 2, 5]);
    }
}

/// Statements both stores run alike, written once over sqlx's `Database` (SQLite and
/// PostgreSQL both decode these columns as `i64` and `String`).
pub mod shared {
    use super::{
        Columns, DELETE_PUSH, DROP_PUSH, PURGE_FLOWS, PUSH_TARGETS, ROSTER, SAVE_PUSH, SET_MUTED,
        SPEND_FLOW, USER_COLUMNS, user_at,
    };
    use crate::model::{
        Authority, Change, ChangeRequest, ConversationEvent, ConversationId, ConversationKind,
        History, MessageId, MessageOp, MessageWrite, Plan, Refusal, Role, RosterEntry, User,
        UserId, plan, plan_close, plan_create, plan_message,
    };
    use crate::store::{PushTarget, StoreError};
    use sqlx::{ColumnIndex, Database, Encode, Executor, IntoArguments, Type};

    /// Rows changed by a statement.
    pub trait Affected {
        fn rows(&self) -> u64;
    }

    impl Affected for sqlx::sqlite::SqliteQueryResult {
        fn rows(&self) -> u64 {
            self.rows_affected()
        }
    }

    #[cfg(feature = "postgres")]
    impl Affected for sqlx::postgres::PgQueryResult {
        fn rows(&self) -> u64 {
            self.rows_affected()
        }
    }

    pub async fn set_muted<'e, DB, E>(
        db: E,
        viewer: UserId,
        conversation: ConversationId,
        muted: bool,
    ) -> Result<u64, sqlx::Error>
    where
        DB: Database,
        usize: ColumnIndex<DB::Row>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
        DB::QueryResult: Affected,
        E: Executor<'e, Database = DB>,
    {
        let done = sqlx::query::<DB>(SET_MUTED)
            .bind(conversation.0)
            .bind(viewer.0)
            .bind(i64::from(muted))
            .execute(db)
            .await?;
        Ok(done.rows())
    }

    pub async fn save_push<'e, DB, E>(db: E, t: &PushTarget, now: i64) -> Result<(), sqlx::Error>
    where
        DB: Database,
        usize: ColumnIndex<DB::Row>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> String: Encode<'q, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
        E: Executor<'e, Database = DB>,
    {
        sqlx::query::<DB>(SAVE_PUSH)
            .bind(t.endpoint.clone())
            .bind(t.user.0)
            .bind(t.p256dh.clone())
            .bind(t.auth.clone())
            .bind(i64::from(t.hide_content))
            .bind(now)
            .execute(db)
            .await?;
        Ok(())
    }

    pub async fn delete_push<'e, DB, E>(
        db: E,
        user: UserId,
        endpoint: &str,
    ) -> Result<u64, sqlx::Error>
    where
        DB: Database,
        usize: ColumnIndex<DB::Row>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> String: Encode<'q, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
        DB::QueryResult: Affected,
        E: Executor<'e, Database = DB>,
    {
        let done = sqlx::query::<DB>(DELETE_PUSH)
            .bind(user.0)
            .bind(endpoint.to_owned())
            .execute(db)
            .await?;
        Ok(done.rows())
    }

    /// Spends a flow id; `false` when it was spent before (a replay).
    pub async fn spend_flow<'e, DB, E>(
        db: E,
        id: &str,
        expires_ms: i64,
    ) -> Result<bool, sqlx::Error>
    where
        DB: Database,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> String: Encode<'q, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
        DB::QueryResult: Affected,
        E: Executor<'e, Database = DB>,
    {
        let done = sqlx::query::<DB>(SPEND_FLOW)
            .bind(id.to_owned())
            .bind(expires_ms)
            .execute(db)
            .await?;
        Ok(done.rows() == 1)
    }

    /// Deletes spent flows that expired before `before_ms`; returns rows deleted.
    pub async fn purge_flows<'e, DB, E>(db: E, before_ms: i64) -> Result<u64, sqlx::Error>
    where
        DB: Database,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
        DB::QueryResult: Affected,
        E: Executor<'e, Database = DB>,
    {
        let done = sqlx::query::<DB>(PURGE_FLOWS)
            .bind(before_ms)
            .execute(db)
            .await?;
        Ok(done.rows())
    }

    pub async fn drop_push<'e, DB, E>(db: E, endpoint: &str) -> Result<(), sqlx::Error>
    where
        DB: Database,
        usize: ColumnIndex<DB::Row>,
        for<'q> String: Encode<'q, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
        E: Executor<'e, Database = DB>,
    {
        sqlx::query::<DB>(DROP_PUSH)
            .bind(endpoint.to_owned())
            .execute(db)
            .await?;
        Ok(())
    }

    pub async fn push_subscribers<'e, DB, E>(db: E) -> Result<Vec<UserId>, sqlx::Error>
    where
        DB: Database,
        for<'r> i64: sqlx::Decode<'r, DB> + Type<DB>,
        (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
        DB::Arguments: IntoArguments<DB>,
        E: Executor<'e, Database = DB>,
    {
        let ids: Vec<i64> = sqlx::query_scalar::<DB, i64>(super::PUSH_SUBSCRIBERS)
            .fetch_all(db)
            .await?;
        Ok(ids.into_iter().map(UserId).collect())
    }

    pub async fn push_targets<'e, DB, E>(
        db: E,
        conversation: ConversationId,
        sender: UserId,
    ) -> Result<Vec<PushTarget>, sqlx::Error>
    where
        DB: Database,
        usize: ColumnIndex<DB::Row>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'r> i64: sqlx::Decode<'r, DB>,
        for<'r> String: sqlx::Decode<'r, DB>,
        String: Type<DB>,
        DB::Arguments: IntoArguments<DB>,
        E: Executor<'e, Database = DB>,
    {
        let rows = sqlx::query::<DB>(PUSH_TARGETS)
            .bind(conversation.0)
            .bind(sender.0)
            .fetch_all(db)
            .await?;
        rows.iter().map(super::push_target_at).collect()
    }

    /// A conversation's kind and history setting, as stored; `None` if there is none.
    pub async fn kind_and_history<'e, DB, E>(
        db: E,
        conversation: ConversationId,
    ) -> Result<Option<(String, String)>, sqlx::Error>
    where
        DB: Database,
        usize: ColumnIndex<DB::Row>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'r> i64: sqlx::Decode<'r, DB>,
        for<'r> String: sqlx::Decode<'r, DB>,
        String: Type<DB>,
        DB::Arguments: IntoArguments<DB>,
        E: Executor<'e, Database = DB>,
    {
        let row = sqlx::query::<DB>("SELECT kind, history FROM conversations WHERE id = $1")
            .bind(conversation.0)
            .fetch_optional(db)
            .await?;
        row.map(|row| Ok((row.text(0)?, row.text(1)?))).transpose()
    }

    /// The roster a change is decided against.
    pub async fn roster<'e, DB, E>(
        db: E,
        conversation: ConversationId,
    ) -> Result<Vec<RosterEntry>, sqlx::Error>
    where
        DB: Database,
        usize: ColumnIndex<DB::Row>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'r> i64: sqlx::Decode<'r, DB>,
        for<'r> String: sqlx::Decode<'r, DB>,
        String: Type<DB>,
        DB::Arguments: IntoArguments<DB>,
        E: Executor<'e, Database = DB>,
    {
        let rows = sqlx::query::<DB>(ROSTER)
            .bind(conversation.0)
            .fetch_all(db)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(RosterEntry {
                    user: UserId(row.int(0)?),
                    role: Role::from_db(&row.text(1)?),
                    joined: MessageId(row.int(2)?),
                    history_from: MessageId(row.int(3)?),
                })
            })
            .collect()
    }

    /// A change decided against the roster: where, what, by whom, under which history, and
    /// for a message op what it does to the message.
    pub struct Decided<'a> {
        pub conversation: ConversationId,
        pub plan: Plan,
        pub actor: &'a User,
        pub history: History,
        pub write: Option<MessageWrite>,
    }

    /// Decides `request` at `position` inside the caller's write transaction (which already
    /// holds the store's ordering: SQLite's writer thread, PostgreSQL's audience locks). A new
    /// group's row is created here. `Ok(Err(..))` is a refusal and `Ok(Ok(None))` a change
    /// that changes nothing (the same reaction twice); either way nothing was written.
    pub async fn decide<'a, DB>(
        conn: &mut DB::Connection,
        position: i64,
        now: i64,
        request: &'a ChangeRequest,
    ) -> Result<Result<Option<Decided<'a>>, StoreError>, sqlx::Error>
    where
        DB: Database,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        usize: ColumnIndex<DB::Row>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> String: Encode<'q, DB> + Type<DB>,
        for<'r> i64: sqlx::Decode<'r, DB>,
        for<'r> String: sqlx::Decode<'r, DB>,
        for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
        for<'r> (String, String): sqlx::FromRow<'r, DB::Row>,
        DB::Arguments: IntoArguments<DB>,
    {
        match request {
            ChangeRequest::Create {
                creator,
                members,
                title,
                history,
                max_members,
            } => {
                let plan = plan_create(creator, members, title);
                if plan.member_count > *max_members {
                    return Ok(Err(StoreError::Refused(Refusal::TooManyMembers(
                        *max_members,
                    ))));
                }
                let (id,): (i64,) = sqlx::query_as::<DB, (i64,)>(
                    "INSERT INTO conversations (kind, title, history, created_position, created_at)
                     VALUES ('group', $1, $2, $3, $4) RETURNING id",
                )
                .bind(title.as_str().to_owned())
                .bind(history.as_str().to_owned())
                .bind(position)
                .bind(now)
                .fetch_one(&mut *conn)
                .await?;
                Ok(Ok(Some(Decided {
                    conversation: ConversationId(id),
                    plan,
                    actor: creator,
                    history: *history,
                    write: None,
                })))
            }
            ChangeRequest::Update {
                actor,
                conversation,
                op,
            } => {
                let found = kind_and_history::<DB, _>(&mut *conn, *conversation).await?;
                let Some((kind, history)) = found else {
                    return Ok(Err(StoreError::NotFound));
                };
                let roster = roster::<DB, _>(&mut *conn, *conversation).await?;
                Ok(
                    match plan(ConversationKind::from_db(&kind), &roster, actor, op) {
                        Ok(plan) => Ok(Some(Decided {
                            conversation: *conversation,
                            plan,
                            actor,
                            history: History::parse(&history).unwrap_or(History::Shared),
                            write: None,
                        })),
                        Err(None) => Err(StoreError::NotFound),
                        Err(Some(refusal)) => Err(StoreError::Refused(refusal)),
                    },
                )
            }
            ChangeRequest::Read {
                actor,
                conversation,
            } => decide_read::<DB>(conn, actor, *conversation).await,
            ChangeRequest::Close {
                actor,
                conversation,
            } => {
                let found = kind_and_history::<DB, _>(&mut *conn, *conversation).await?;
                let Some((_, history)) = found else {
                    return Ok(Err(StoreError::NotFound));
                };
                let sql = format!(
                    "SELECT {USER_COLUMNS}
                     FROM participants p JOIN users u ON u.id = p.user_id
                     WHERE p.conversation_id = $1 ORDER BY u.id"
                );
                let rows = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql))
                    .bind(conversation.0)
                    .fetch_all(&mut *conn)
                    .await?;
                let members = rows
                    .iter()
                    .map(|r| user_at(r, 0))
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                let (plan, write) = plan_close(*conversation, members);
                Ok(Ok(Some(Decided {
                    conversation: *conversation,
                    plan,
                    actor,
                    history: History::parse(&history).unwrap_or(History::Shared),
                    write: Some(write),
                })))
            }
            ChangeRequest::Profile {
                actor,
                conversation,
            } => {
                let found = kind_and_history::<DB, _>(&mut *conn, *conversation).await?;
                let Some((_, history)) = found else {
                    return Ok(Err(StoreError::NotFound));
                };
                let roster = roster::<DB, _>(&mut *conn, *conversation).await?;
                if roster.is_empty() {
                    return Ok(Ok(None));
                }
                let plan = Plan {
                    change: Change::Profile {
                        display_name: actor.display_name.clone(),
                        avatar_url: actor.avatar_url.clone(),
                        deleted: actor.deleted,
                    },
                    title: None,
                    add: Vec::new(),
                    remove: Vec::new(),
                    set_roles: Vec::new(),
                    recipients: roster.iter().map(|m| m.user).collect(),
                    member_count: roster.len(),
                };
                Ok(Ok(Some(Decided {
                    conversation: *conversation,
                    plan,
                    actor,
                    history: History::parse(&history).unwrap_or(History::Shared),
                    write: None,
                })))
            }
            ChangeRequest::Message {
                actor,
                conversation,
                message,
                op,
                authority,
            } => {
                let found = kind_and_history::<DB, _>(&mut *conn, *conversation).await?;
                let Some((kind, history)) = found else {
                    return Ok(Err(StoreError::NotFound));
                };
                let mut roster = roster::<DB, _>(&mut *conn, *conversation).await?;
                let operator = *authority == Authority::Operator;
                // A deleted account takes its messages back from groups it had left too: it
                // acts as a member for that one delete, and neither counts nor hears of it.
                let outsider = !operator && !roster.iter().any(|m| m.user == actor.id);
                if outsider && actor.deleted && matches!(op, MessageOp::Delete) {
                    roster.push(RosterEntry {
                        user: actor.id,
                        role: Role::Member,
                        joined: MessageId(0),
                        history_from: MessageId(0),
                    });
                } else if outsider {
                    return Ok(Err(StoreError::NotFound));
                }
                let emoji = match op {
                    MessageOp::React { emoji, .. } => emoji.as_str(),
                    _ => "",
                };
                let target = crate::store::lifecycle::target::<DB>(
                    conn,
                    *conversation,
                    *message,
                    actor.id,
                    emoji,
                )
                .await?;
                let Some(target) = target else {
                    return Ok(Err(StoreError::NotFound));
                };
                let history = History::parse(&history).unwrap_or(History::Shared);
                let decided = plan_message(
                    ConversationKind::from_db(&kind),
                    history == History::Shared,
                    &roster,
                    actor,
                    *authority,
                    &target,
                    op,
                    super::time(now),
                );
                Ok(match decided {
                    Ok(Some((mut plan, write))) => Ok(Some(Decided {
                        plan: {
                            if outsider {
                                plan.member_count -= 1;
                                plan.recipients.retain(|&u| u != actor.id);
                            }
                            plan
                        },
                        conversation: *conversation,
                        actor,
                        history,
                        write: Some(write),
                    })),
                    Ok(None) => Ok(None),
                    Err(None) => Err(StoreError::NotFound),
                    Err(Some(refusal)) => Err(StoreError::Refused(refusal)),
                })
            }
        }
    }

    /// A read marker moves to the conversation's newest message, if that is ahead of it and
    /// the reader shares receipts. The receipt goes to the reader's own streams (their other
    /// devices) and to the members who share theirs too (receipts are mutual).
    async fn decide_read<'a, DB>(
        conn: &mut DB::Connection,
        actor: &'a User,
        conversation: ConversationId,
    ) -> Result<Result<Option<Decided<'a>>, StoreError>, sqlx::Error>
    where
        DB: Database,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        usize: ColumnIndex<DB::Row>,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'r> i64: sqlx::Decode<'r, DB>,
        for<'r> String: sqlx::Decode<'r, DB>,
        String: Type<DB>,
        DB::Arguments: IntoArguments<DB>,
    {
        let found = sqlx::query::<DB>(
            "SELECT p.last_read_message_id, COALESCE(c.last_message_id, 0), u.read_receipts,
                    c.member_count, c.history
             FROM participants p JOIN conversations c ON c.id = p.conversation_id
             JOIN users u ON u.id = p.user_id
             WHERE p.conversation_id = $1 AND p.user_id = $2",
        )
        .bind(conversation.0)
        .bind(actor.id.0)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = found else {
            return Ok(Err(StoreError::NotFound));
        };
        let (marker, last, shares) = (row.int(0)?, row.int(1)?, row.int(2)? != 0);
        if last <= marker {
            return Ok(Ok(None));
        }
        let recipients: Vec<UserId> = if shares {
            let rows = sqlx::query::<DB>(
                "SELECT p.user_id FROM participants p JOIN users u ON u.id = p.user_id
                 WHERE p.conversation_id = $1 AND (u.read_receipts <> 0 OR p.user_id = $2)",
            )
            .bind(conversation.0)
            .bind(actor.id.0)
            .fetch_all(&mut *conn)
            .await?;
            rows.iter()
                .map(|r| r.int(0).map(UserId))
                .collect::<Result<_, _>>()?
        } else {
            vec![actor.id]
        };
        let message = MessageId(last);
        Ok(Ok(Some(Decided {
            conversation,
            plan: Plan {
                change: crate::model::Change::Read {
                    message_id: message,
                },
                title: None,
                add: Vec::new(),
                remove: Vec::new(),
                set_roles: Vec::new(),
                recipients,
                member_count: row.int(3)? as usize,
            },
            actor,
            history: History::parse(&row.text(4)?).unwrap_or(History::Shared),
            write: Some(MessageWrite::ReadUpTo {
                conversation,
                user: actor.id,
                message,
            }),
        })))
    }

    /// Writes a change's row of `conversation_events`.
    pub async fn record_change<'e, DB, E>(
        db: E,
        event: &ConversationEvent,
    ) -> Result<(), sqlx::Error>
    where
        DB: Database,
        for<'q> i64: Encode<'q, DB> + Type<DB>,
        for<'q> Option<i64>: Encode<'q, DB>,
        for<'q> String: Encode<'q, DB> + Type<DB>,
        DB::Arguments: IntoArguments<DB>,
        E: Executor<'e, Database = DB>,
    {
        let payload =
            serde_json::to_string(&event.change).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query::<DB>(
            "INSERT INTO conversation_events
                 (position, conversation_id, actor_id, payload, created_at, message_id)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(event.position.0)
        .bind(event.conversation_id.0)
        .bind(event.actor.id.0)
        .bind(payload)
        .bind(event.created_at.timestamp_millis())
        .bind(event.change.message_id().map(|m| m.0))
        .execute(db)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn the_written_in_limits_are_read_positions_max() {
        let limit = format!("LIMIT {}", crate::model::READ_POSITIONS_MAX);
        assert!(READ_POSITIONS.trim_end().ends_with(&limit));
        assert!(DELIVERED_POSITIONS.trim_end().ends_with(&limit));
    }
}
