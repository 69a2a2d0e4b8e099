//! The PostgreSQL writer: the one task per node that appends sends in groups, and the change
//! path, both under the `message_position` row lock (see `store::postgres`).
//!
//! The sends that queue while one transaction holds the lock share the next one, its single
//! lock acquisition and its single WAL flush. Unlike SQLite's writer, this one keeps nothing
//! between transactions (other nodes append too), but it still holds the lock for a constant
//! number of round trips whatever the group's size: read the counter; look up the group's
//! idempotency keys (only if a send has one); read every recipient's inbox head; assign ids
//! counter+1.. in group order and chain each recipient's `prev` through the group; write the
//! messages, last messages, senders' read positions, keys and counter in one statement; COMMIT.

use super::{classify, is_unavailable, now_ms};
use crate::model::{
    ChangeRequest, ConversationEvent, ConversationId, History, Message, MessageId, Plan, Recipient,
    UserId,
};
use crate::store::lifecycle;
use crate::store::log::{MESSAGE_COLUMNS, message_at, shared, time};
use crate::store::{Appended, Changed, NewMessage, StoreError, StoreResult};
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool};
use std::collections::{HashMap, HashSet};
use tokio::sync::{mpsc, oneshot};

/// The largest number of sends that share one transaction.
pub(super) const MAX_GROUP: usize = 512;
/// An idempotency key answers retries for this long.
const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

pub(super) struct WriteJob {
    pub(super) new: NewMessage,
    pub(super) reply: oneshot::Sender<StoreResult<Appended>>,
}

/// Decides and writes one change at `position`, inside the transaction holding the counter.
pub(super) async fn change_under_lock(
    conn: &mut PgConnection,
    position: i64,
    request: &ChangeRequest,
) -> Result<StoreResult<Option<Changed>>, sqlx::Error> {
    let now = now_ms();
    let shared::Decided {
        conversation,
        plan,
        actor,
        history,
        write,
    } = match shared::decide::<sqlx::Postgres>(&mut *conn, position, now, request).await? {
        Ok(Some(decided)) => decided,
        Ok(None) => return Ok(Ok(None)),
        Err(refused) => return Ok(Err(refused)),
    };
    let heads = heads_of(&mut *conn, &plan.recipients).await?;
    let recipients = plan
        .recipients
        .iter()
        .map(|&user| Recipient {
            user,
            prev: MessageId(heads.get(&user.0).copied().unwrap_or(0)),
        })
        .collect();
    if let Some(write) = &write {
        lifecycle::write::<sqlx::Postgres>(&mut *conn, write, now).await?;
    }
    write_plan(&mut *conn, conversation, position, &plan, history, now).await?;
    let event = ConversationEvent {
        position: MessageId(position),
        conversation_id: conversation,
        actor: actor.clone(),
        change: plan.change.clone(),
        created_at: time(now),
    };
    shared::record_change(&mut *conn, &event).await?;
    Ok(Ok(Some(Changed { event, recipients })))
}

/// Writes a decided change: members added (with an open span), removed (span closed at this
/// position), roles, and the conversation's title, size and newest position.
async fn write_plan(
    conn: &mut PgConnection,
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
    let added: Vec<i64> = plan.add.iter().map(|(u, _)| u.0).collect();
    let roles: Vec<String> = plan
        .add
        .iter()
        .map(|(_, r)| r.as_str().to_owned())
        .collect();
    let removed: Vec<i64> = plan.remove.iter().map(|u| u.0).collect();
    let role_users: Vec<i64> = plan.set_roles.iter().map(|(u, _)| u.0).collect();
    let new_roles: Vec<String> = plan
        .set_roles
        .iter()
        .map(|(_, r)| r.as_str().to_owned())
        .collect();
    sqlx::query(
        "WITH a AS (
             INSERT INTO participants (conversation_id, user_id, role, joined_at, joined_position,
                                       history_from, last_read_message_id)
             SELECT $1, v.user_id, v.role, $2, $3, $4,
                    COALESCE((SELECT last_message_id FROM conversations WHERE id = $1), 0)
             FROM UNNEST($5::BIGINT[], $6::TEXT[]) AS v (user_id, role)),
         s AS (
             INSERT INTO member_spans (conversation_id, user_id, from_position)
             SELECT $1, v.user_id, $3 FROM UNNEST($5::BIGINT[]) AS v (user_id)),
         d AS (
             DELETE FROM participants WHERE conversation_id = $1 AND user_id = ANY($7)),
         e AS (
             UPDATE member_spans SET to_position = $3
             WHERE conversation_id = $1 AND user_id = ANY($7) AND to_position IS NULL),
         r AS (
             UPDATE participants SET role = v.role
             FROM UNNEST($8::BIGINT[], $9::TEXT[]) AS v (user_id, role)
             WHERE participants.conversation_id = $1 AND participants.user_id = v.user_id)
         UPDATE conversations SET title = COALESCE($10, title), member_count = $11,
                                  last_position = $3
         WHERE id = $1",
    )
    .bind(conversation.0)
    .bind(now)
    .bind(position)
    .bind(history_from)
    .bind(added)
    .bind(roles)
    .bind(removed)
    .bind(role_users)
    .bind(new_roles)
    .bind(plan.title.as_deref())
    .bind(plan.member_count as i64)
    .execute(conn)
    .await?;
    Ok(())
}

/// The newest visible position of each user, in one query.
async fn heads_of(
    conn: &mut PgConnection,
    users: &[UserId],
) -> Result<HashMap<i64, i64>, sqlx::Error> {
    let users: Vec<i64> = users.iter().map(|u| u.0).collect();
    let heads: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT s.user_id,
                COALESCE(MAX(CASE WHEN s.to_position IS NULL THEN c.last_position
                                  ELSE s.to_position END), 0)::BIGINT
         FROM member_spans s JOIN conversations c ON c.id = s.conversation_id
         WHERE s.user_id = ANY($1) GROUP BY s.user_id",
    )
    .bind(users)
    .fetch_all(conn)
    .await?;
    Ok(heads.into_iter().collect())
}

/// Drains queued sends into one transaction at a time.
pub(super) async fn write_loop(pool: PgPool, mut jobs: mpsc::Receiver<WriteJob>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while jobs.recv_many(&mut group, MAX_GROUP).await > 0 {
        let news: Vec<&NewMessage> = group.iter().map(|job| &job.new).collect();
        let started = std::time::Instant::now();
        let committed = commit_group(&pool, &news).await;
        crate::store::record_commit("postgres", started, news.len());
        let results = match committed {
            Ok(results) => results,
            // One bad send must not fail its neighbours: retry them one by one, unless the
            // database is gone or the COMMIT itself failed (its outcome is then unknown, and a
            // retry could store a message twice; the client's idempotency key covers that).
            Err(GroupError {
                error,
                at_commit: false,
            }) if news.len() > 1 && !is_unavailable(&error) => {
                tracing::warn!(error = %error, size = news.len(), "group commit failed; retrying singly");
                let mut results = Vec::with_capacity(news.len());
                for new in &news {
                    results.push(match commit_group(&pool, &[new]).await {
                        Ok(mut one) => one.pop().unwrap_or(Err(StoreError::NotFound)),
                        Err(e) => Err(failed(e.error)),
                    });
                }
                results
            }
            Err(e) => {
                let reason = e.error.to_string();
                let unavailable = is_unavailable(&e.error);
                tracing::error!(error = %reason, size = news.len(), "message commit failed");
                news.iter()
                    .map(|_| {
                        Err(if unavailable || e.at_commit {
                            StoreError::Unavailable(reason.clone().into())
                        } else {
                            StoreError::Other(reason.clone().into())
                        })
                    })
                    .collect()
            }
        };
        for (job, result) in group.drain(..).zip(results) {
            let _ = job.reply.send(result);
        }
    }
}

fn failed(e: sqlx::Error) -> StoreError {
    tracing::error!(error = %e, "message commit failed");
    classify(e)
}

struct GroupError {
    error: sqlx::Error,
    at_commit: bool,
}

impl From<sqlx::Error> for GroupError {
    fn from(error: sqlx::Error) -> Self {
        Self {
            error,
            at_commit: false,
        }
    }
}

/// One accepted send of the group, not yet written.
struct Accepted {
    seq: i64,
    message: Message,
    key: Option<String>,
    attachment_claim: Option<String>,
}

/// What an earlier send with the same key left: its conversation and, if still stored, its message.
struct Earlier {
    conversation: i64,
    message: Option<Message>,
}

/// A send's answer, or the row it will be written as.
enum Slot {
    Done(StoreResult<Appended>),
    Accepted(usize),
}

/// Commits a group in a constant number of round trips whatever its size: participants (before
/// the lock), then under the lock the counter, the idempotency keys (if any send has one), the
/// recipients' inbox heads, one statement that writes everything, and COMMIT.
/// `Err` aborts the whole group; an `Ok` entry that is `Err` is that send's own refusal.
async fn commit_group(
    pool: &PgPool,
    group: &[&NewMessage],
) -> Result<Vec<StoreResult<Appended>>, GroupError> {
    // READ COMMITTED is what makes the lock work: each statement after the lock takes a new
    // snapshot, which includes every append committed before this one got the lock.
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await?;
    // Wait for the counter row, then hold it until COMMIT. Everything an id, a `prev` or a
    // replay depends on is read after this, membership included: a group change takes the
    // same lock, so a send is judged by the membership at its own position.
    let position: i64 =
        sqlx::query_scalar("SELECT value FROM message_position WHERE single FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
    let (members, mut seqs) = members(&mut tx, group).await?;
    let now = now_ms();
    // Under the counter lock, so two nodes retrying the same key cannot both miss it.
    let earlier = earlier_sends(&mut tx, group, now).await?;

    // Decide every send in order; accepted ones get ids position+1.. in that order.
    let mut rows: Vec<Accepted> = Vec::with_capacity(group.len());
    let mut slots = Vec::with_capacity(group.len());
    let mut keyed: HashMap<(UserId, &str), usize> = HashMap::new();
    for new in group {
        if let Some(key) = new.idempotency_key.as_deref() {
            // A retry inside this same group answers with the first one's message.
            if let Some(&first) = keyed.get(&(new.sender, key)) {
                slots.push(Slot::Done(replay(&rows[first].message, new)));
                continue;
            }
            if let Some(earlier) = earlier.get(&(new.sender.0, key.to_owned())) {
                if earlier.conversation != new.conversation.0 {
                    slots.push(Slot::Done(Err(StoreError::KeyReused)));
                    continue;
                }
                let Some(message) = &earlier.message else {
                    return Err(sqlx::Error::RowNotFound.into());
                };
                slots.push(Slot::Done(replay(message, new)));
                continue;
            }
        }
        let is_member = members
            .get(&new.conversation.0)
            .is_some_and(|users| users.contains(&new.sender.0));
        if !is_member {
            slots.push(Slot::Done(Err(StoreError::NotFound)));
            continue;
        }
        let index = rows.len();
        let seq = seqs.entry(new.conversation.0).or_insert(0);
        *seq += 1;
        let seq = *seq;
        rows.push(Accepted {
            seq,
            message: Message {
                id: MessageId(position + 1 + index as i64),
                conversation_id: new.conversation,
                sender_id: new.sender,
                content: new.content.as_str().to_owned(),
                created_at: time(now),
                reply_to: new.reply_to,
                ..Default::default()
            },
            key: new.idempotency_key.clone(),
            attachment_claim: new.attachment_claim.clone(),
        });
        if let Some(key) = new.idempotency_key.as_deref() {
            keyed.insert((new.sender, key), index);
        }
        slots.push(Slot::Accepted(index));
    }

    let mut recipients: Vec<Vec<Recipient>> = Vec::with_capacity(rows.len());
    if !rows.is_empty() {
        // Each recipient's inbox head before this group, then chained through it in id order:
        // a recipient's `prev` is their previous message, in this group or before it.
        let mut heads = inbox_heads(&mut tx, &rows, &members).await?;
        for row in &rows {
            let users = &members[&row.message.conversation_id.0];
            recipients.push(
                users
                    .iter()
                    .map(|&user| {
                        let prev = heads.insert(user, row.message.id.0).unwrap_or(0);
                        Recipient {
                            user: UserId(user),
                            prev: MessageId(prev),
                        }
                    })
                    .collect(),
            );
        }
        write_rows(&mut tx, &rows, position + rows.len() as i64).await?;
    }
    tx.commit().await.map_err(|error| GroupError {
        error,
        at_commit: true,
    })?;

    Ok(slots
        .into_iter()
        .map(|slot| match slot {
            Slot::Done(result) => result,
            Slot::Accepted(index) => Ok(Appended {
                message: rows[index].message.clone(),
                recipients: std::mem::take(&mut recipients[index]),
                replayed: false,
            }),
        })
        .collect())
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

/// The current members of each of the group's conversations (in user id order) and the seq
/// of each one's last message, in one query.
async fn members(
    conn: &mut PgConnection,
    group: &[&NewMessage],
) -> Result<(HashMap<i64, Vec<i64>>, HashMap<i64, i64>), sqlx::Error> {
    let conversations: Vec<i64> = group
        .iter()
        .map(|new| new.conversation.0)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let rows: Vec<(i64, i64, Vec<i64>)> = sqlx::query_as(
        "SELECT c.id, COALESCE(m.seq, 0)::BIGINT,
                ARRAY(SELECT p.user_id FROM participants p
                      WHERE p.conversation_id = c.id ORDER BY p.user_id)
         FROM conversations c LEFT JOIN messages m ON m.id = c.last_message_id
         WHERE c.id = ANY($1)",
    )
    .bind(conversations)
    .fetch_all(conn)
    .await?;
    let mut members = HashMap::with_capacity(rows.len());
    let mut seqs = HashMap::with_capacity(rows.len());
    for (conversation, seq, users) in rows {
        seqs.insert(conversation, seq);
        if !users.is_empty() {
            members.insert(conversation, users);
        }
    }
    Ok((members, seqs))
}

/// What earlier sends with the group's idempotency keys left, within the window, by
/// (sender, key). No query when no send has a key.
async fn earlier_sends(
    conn: &mut PgConnection,
    group: &[&NewMessage],
    now: i64,
) -> Result<HashMap<(i64, String), Earlier>, sqlx::Error> {
    let (users, keys): (Vec<i64>, Vec<String>) = group
        .iter()
        .filter_map(|new| Some((new.sender.0, new.idempotency_key.clone()?)))
        .collect::<HashSet<_>>()
        .into_iter()
        .unzip();
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT k.user_id, k.key, k.conversation_id, {MESSAGE_COLUMNS}
         FROM idempotency_keys k LEFT JOIN messages m ON m.id = k.message_id
         WHERE (k.user_id, k.key) IN (SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[]))
           AND k.created_at > $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(users)
        .bind(keys)
        .bind(now - IDEMPOTENCY_WINDOW_MS)
        .fetch_all(conn)
        .await?;
    let mut earlier = HashMap::with_capacity(rows.len());
    for row in &rows {
        let message = match row.try_get::<Option<i64>, _>(3)? {
            Some(_) => Some(message_at(row, 3)?),
            None => None,
        };
        earlier.insert(
            (row.try_get(0)?, row.try_get(1)?),
            Earlier {
                conversation: row.try_get(2)?,
                message,
            },
        );
    }
    Ok(earlier)
}

/// Every recipient's newest visible position among committed entries, in one query.
async fn inbox_heads(
    conn: &mut PgConnection,
    rows: &[Accepted],
    members: &HashMap<i64, Vec<i64>>,
) -> Result<HashMap<i64, i64>, sqlx::Error> {
    let users: Vec<UserId> = rows
        .iter()
        .flat_map(|row| members[&row.message.conversation_id.0].iter().copied())
        .collect::<HashSet<_>>()
        .into_iter()
        .map(UserId)
        .collect();
    heads_of(conn, &users).await
}

/// Writes the group in one statement: the messages, each conversation's last message, each
/// sender's read position, the idempotency keys and the counter.
async fn write_rows(
    conn: &mut PgConnection,
    rows: &[Accepted],
    position: i64,
) -> Result<(), sqlx::Error> {
    let ids: Vec<i64> = rows.iter().map(|r| r.message.id.0).collect();
    let conversations: Vec<i64> = rows.iter().map(|r| r.message.conversation_id.0).collect();
    let senders: Vec<i64> = rows.iter().map(|r| r.message.sender_id.0).collect();
    let contents: Vec<String> = rows.iter().map(|r| r.message.content.clone()).collect();
    let search_words: Vec<String> = rows
        .iter()
        .map(|r| crate::model::index_text(&r.message.content))
        .collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let replies: Vec<Option<i64>> = rows
        .iter()
        .map(|r| r.message.reply_to.map(|m| m.0))
        .collect();
    let created: Vec<i64> = rows
        .iter()
        .map(|r| r.message.created_at.timestamp_millis())
        .collect();
    // Rows are in id order, so the last write per key wins with the newest id: an UPDATE
    // must not meet the same target row twice.
    let last_by_conversation: HashMap<i64, i64> = rows
        .iter()
        .map(|r| (r.message.conversation_id.0, r.message.id.0))
        .collect();
    let (last_conversations, last_ids): (Vec<i64>, Vec<i64>) =
        last_by_conversation.into_iter().unzip();
    let read_by_sender: HashMap<(i64, i64), i64> = rows
        .iter()
        .map(|r| {
            (
                (r.message.conversation_id.0, r.message.sender_id.0),
                r.message.id.0,
            )
        })
        .collect();
    let mut read_conversations = Vec::with_capacity(read_by_sender.len());
    let mut read_users = Vec::with_capacity(read_by_sender.len());
    let mut read_ids = Vec::with_capacity(read_by_sender.len());
    for ((conversation, user), id) in read_by_sender {
        read_conversations.push(conversation);
        read_users.push(user);
        read_ids.push(id);
    }
    // Keys are unique within the group (a repeat became a replay), as ON CONFLICT requires.
    let keyed: Vec<&Accepted> = rows.iter().filter(|r| r.key.is_some()).collect();
    let key_users: Vec<i64> = keyed.iter().map(|r| r.message.sender_id.0).collect();
    let keys: Vec<String> = keyed.iter().filter_map(|r| r.key.clone()).collect();
    let key_conversations: Vec<i64> = keyed.iter().map(|r| r.message.conversation_id.0).collect();
    let key_ids: Vec<i64> = keyed.iter().map(|r| r.message.id.0).collect();
    let key_created: Vec<i64> = keyed
        .iter()
        .map(|r| r.message.created_at.timestamp_millis())
        .collect();

    // The sub-statements all run; none needs to see another's effect.
    sqlx::query(
        "WITH m AS (
             INSERT INTO messages (id, conversation_id, sender_id, content, created_at, seq,
                                   reply_to, search_words)
             SELECT i, c, s, t, ca, sq, r, to_tsvector('simple', w)
             FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[],
                         $5::BIGINT[], $17::BIGINT[], $18::BIGINT[], $19::TEXT[])
                  AS v (i, c, s, t, ca, sq, r, w)),
         c AS (
             UPDATE conversations SET last_message_id = v.id, last_position = v.id
             FROM UNNEST($6::BIGINT[], $7::BIGINT[]) AS v (conversation_id, id)
             WHERE conversations.id = v.conversation_id),
         p AS (
             UPDATE participants SET last_read_message_id = v.id
             FROM UNNEST($8::BIGINT[], $9::BIGINT[], $10::BIGINT[]) AS v (conversation_id, user_id, id)
             WHERE participants.conversation_id = v.conversation_id
               AND participants.user_id = v.user_id),
         k AS (
             INSERT INTO idempotency_keys (user_id, key, conversation_id, message_id, created_at)
             SELECT * FROM UNNEST($11::BIGINT[], $12::TEXT[], $13::BIGINT[], $14::BIGINT[],
                                  $15::BIGINT[])
             ON CONFLICT (user_id, key) DO UPDATE SET
                 conversation_id = excluded.conversation_id,
                 message_id = excluded.message_id, created_at = excluded.created_at)
         UPDATE message_position SET value = $16 WHERE single",
    )
    .bind(ids)
    .bind(conversations)
    .bind(senders)
    .bind(contents)
    .bind(created)
    .bind(last_conversations)
    .bind(last_ids)
    .bind(read_conversations)
    .bind(read_users)
    .bind(read_ids)
    .bind(key_users)
    .bind(keys)
    .bind(key_conversations)
    .bind(key_ids)
    .bind(key_created)
    .bind(position)
    .bind(seqs)
    .bind(replies)
    .bind(search_words)
    .execute(&mut *conn)
    .await?;
    for row in rows {
        if let Some(claim) = &row.attachment_claim {
            sqlx::query(crate::store::uploads::ATTACH)
                .bind(row.message.id.0)
                .bind(claim)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}
