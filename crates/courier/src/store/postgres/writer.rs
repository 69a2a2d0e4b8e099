//! The PostgreSQL writers: `W` tasks per node (`--pg-writers`) that append queued sends in
//! groups, and the change path. Both lock their audience first (`audience`, and
//! `store::postgres` for why that keeps every stream gap-free).
//!
//! The sends that queue while the writers are busy share the next transaction, its locks
//! and its single WAL flush; several writers run at once, on one node as on many, and wait
//! for each other only where their audiences meet. A transaction costs a constant number of
//! round trips whatever the group's size: lock the conversations; read their members;
//! lock the members' stripes; look up the group's idempotency keys (only if a send has one);
//! take positions and read every recipient's inbox head in one statement, and chain each
//! recipient's `prev` through the group; write the messages, last messages, senders' read
//! positions and keys in one statement; COMMIT. A group whose audience does not fit the lock budget commits the
//! sends that fit and carries the rest into the writer's next transaction.

use super::audience::{self, LOCKS_MAX, Reach};
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
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};

/// The largest number of sends that share one transaction: a group of 1:1 sends (one
/// conversation lock and two user stripes each, beside the wide lock) then fits the lock
/// budget. Larger groups would not commit faster: several writers commit at once.
pub(super) const MAX_GROUP: usize = (LOCKS_MAX - 1) / 3;
/// Sends waiting for a writer, at most; beyond, `append_message` waits for room.
pub(super) const QUEUE: usize = 2048;
/// An idempotency key answers retries for this long.
const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

pub(super) struct WriteJob {
    pub(super) new: NewMessage,
    pub(super) reply: oneshot::Sender<StoreResult<Appended>>,
}

/// The newest visible position of each user in `$1`: per span, its end or its conversation's
/// newest position. That is one primary-key lookup per span, on purpose: as a join, the planner
/// hashed the whole `conversations` table, which every send rewrites.
macro_rules! heads_sql {
    () => {
        "SELECT s.user_id,
                COALESCE(MAX(CASE WHEN s.to_position IS NULL
                                  THEN (SELECT c.last_position FROM conversations c
                                        WHERE c.id = s.conversation_id)
                                  ELSE s.to_position END), 0)::BIGINT
         FROM member_spans s
         WHERE s.user_id = ANY($1) GROUP BY s.user_id"
    };
}

/// Decides and writes one change at `position`, inside the transaction holding its audience's
/// locks (`PgStore::apply_change`).
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
    let heads: Vec<(i64, i64)> = sqlx::query_as(heads_sql!())
        .bind(users)
        .fetch_all(conn)
        .await?;
    Ok(heads.into_iter().collect())
}

/// The writers' shared queue: each writer takes what is waiting (up to `MAX_GROUP`) while it
/// holds the lock, then commits without it, so the others take the next groups meanwhile.
pub(super) type Queue = Arc<Mutex<mpsc::Receiver<WriteJob>>>;

/// One writer: drains queued sends into one transaction at a time.
pub(super) async fn write_loop(pool: PgPool, queue: Queue) {
    // Sends cut from the last transaction (their audience did not fit), oldest first.
    let mut group: Vec<WriteJob> = Vec::with_capacity(MAX_GROUP);
    loop {
        {
            let mut jobs = queue.lock().await;
            if group.is_empty() {
                if jobs.recv_many(&mut group, MAX_GROUP).await == 0 {
                    return;
                }
            } else {
                while group.len() < MAX_GROUP {
                    let Ok(job) = jobs.try_recv() else { break };
                    group.push(job);
                }
            }
        }
        let news: Vec<&NewMessage> = group.iter().map(|job| &job.new).collect();
        let started = std::time::Instant::now();
        let results = commit_first(&pool, &news).await;
        crate::store::record_commit("postgres", started, results.len());
        for (job, result) in group.drain(..results.len()).zip(results) {
            let _ = job.reply.send(result);
        }
    }
}

/// Commits the longest prefix of `news` whose audience fits one transaction (at least the
/// first send) and answers for exactly that prefix.
async fn commit_first(pool: &PgPool, news: &[&NewMessage]) -> Vec<StoreResult<Appended>> {
    match commit_group(pool, news, Reach::Narrow).await {
        Ok(Commit::Done(results)) => results,
        Ok(Commit::TooWide { first_stripes }) => {
            vec![commit_alone(pool, news[0], first_stripes).await]
        }
        // One bad send must not fail its neighbours: retry them one by one, unless the
        // database is gone or the COMMIT itself failed (its outcome is then unknown, and a
        // retry could store a message twice; the client's idempotency key covers that).
        Err(GroupError {
            error,
            at_commit: false,
            sends,
        }) if sends > 1 && !is_unavailable(&error) => {
            tracing::warn!(error = %error, size = sends, "group commit failed; retrying singly");
            let mut results = Vec::with_capacity(sends);
            for new in &news[..sends] {
                results.push(commit_alone(pool, new, 0).await);
            }
            results
        }
        Err(e) => {
            let reason = e.error.to_string();
            let unavailable = is_unavailable(&e.error);
            tracing::error!(error = %reason, size = e.sends, "message commit failed");
            (0..e.sends)
                .map(|_| {
                    Err(if unavailable || e.at_commit {
                        StoreError::Unavailable(reason.clone().into())
                    } else {
                        StoreError::Other(reason.clone().into())
                    })
                })
                .collect()
        }
    }
}

/// Commits one send in its own transaction: narrow if its `stripes` (0: not known yet) fit
/// the budget, else wide.
async fn commit_alone(pool: &PgPool, new: &NewMessage, stripes: usize) -> StoreResult<Appended> {
    // Alone it holds the wide lock and one conversation lock besides its stripes.
    let mut reach = if stripes + 2 > LOCKS_MAX {
        Reach::Wide
    } else {
        Reach::Narrow
    };
    loop {
        match commit_group(pool, &[new], reach).await {
            Ok(Commit::Done(mut one)) => return one.pop().unwrap_or(Err(StoreError::NotFound)),
            Ok(Commit::TooWide { .. }) if reach == Reach::Narrow => reach = Reach::Wide,
            Ok(Commit::TooWide { .. }) => unreachable!("a wide commit takes no stripes"),
            Err(e) => return Err(failed(e.error)),
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
    /// How many of the group's first sends the failure concerns (the rest were not tried).
    sends: usize,
}

impl From<sqlx::Error> for GroupError {
    fn from(error: sqlx::Error) -> Self {
        Self {
            error,
            at_commit: false,
            sends: 0,
        }
    }
}

enum Commit {
    /// The answers of the group's first sends, as many as fitted (at least one).
    Done(Vec<StoreResult<Appended>>),
    /// Even the first send's audience (`first_stripes` stripes) did not fit beside the
    /// group's conversation locks; nothing was written.
    TooWide { first_stripes: usize },
}

/// One accepted send of the group, not yet written; its id comes with the positions.
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
    /// A retry inside this same group: answered with that accepted row's message.
    Repeat(usize),
}

/// Commits a prefix of the group in a constant number of round trips whatever its size (see
/// the module docs). `Err` aborts the whole prefix; an `Ok` entry that is `Err` is that send's
/// own refusal.
async fn commit_group(
    pool: &PgPool,
    group: &[&NewMessage],
    reach: Reach,
) -> Result<Commit, GroupError> {
    let all = group.len();
    let to_group = |error| GroupError {
        error,
        at_commit: false,
        sends: all,
    };
    // READ COMMITTED is what makes the locks work: each statement after a lock takes a new
    // snapshot, which includes every append committed before this one got the lock.
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await
        .map_err(to_group)?;
    let conversations: BTreeSet<i64> = group.iter().map(|new| new.conversation.0).collect();
    audience::lock_conversations(&mut tx, reach, conversations.iter().copied())
        .await
        .map_err(to_group)?;
    // Under the conversation locks: no membership change can commit until this one does, so
    // each send is judged, and delivered, by the membership at its own position.
    let (members, seqs) = members(&mut tx, &conversations).await.map_err(to_group)?;
    let taken = match reach {
        Reach::Wide => all,
        Reach::Narrow => {
            let budget = LOCKS_MAX - 1 - conversations.len();
            let (taken, stripes) = match fit(group, &members, budget) {
                Ok(fitted) => fitted,
                Err(first_stripes) => {
                    // Release the shared wide lock now: the retry may want it exclusively.
                    tx.rollback().await.map_err(to_group)?;
                    return Ok(Commit::TooWide { first_stripes });
                }
            };
            audience::lock_stripes(&mut tx, &stripes)
                .await
                .map_err(to_group)?;
            taken
        }
    };
    let group = &group[..taken];
    write_group(tx, group, members, seqs)
        .await
        .map(Commit::Done)
        .map_err(|e| GroupError { sends: taken, ..e })
}

/// The stripes of everyone a send's entry reaches (the conversation's members) and of its
/// sender (whose idempotency keys it checks and writes).
fn stripes_of(new: &NewMessage, members: &HashMap<i64, Vec<i64>>) -> BTreeSet<i32> {
    let users = members.get(&new.conversation.0).into_iter().flatten();
    users
        .map(|&user| audience::stripe(UserId(user)))
        .chain([audience::stripe(new.sender)])
        .collect()
}

/// The longest prefix of `group` whose stripes number at most `budget`, with those stripes;
/// `Err` with the first send's stripe count when even it does not fit.
fn fit(
    group: &[&NewMessage],
    members: &HashMap<i64, Vec<i64>>,
    budget: usize,
) -> Result<(usize, BTreeSet<i32>), usize> {
    let mut stripes = BTreeSet::new();
    for (index, new) in group.iter().enumerate() {
        let own = stripes_of(new, members);
        if stripes.len() + own.difference(&stripes).count() > budget {
            return if index == 0 {
                Err(own.len())
            } else {
                Ok((index, stripes))
            };
        }
        stripes.extend(own);
    }
    Ok((group.len(), stripes))
}

/// Everything after the locks: keys, decisions, positions, heads, the write and COMMIT.
async fn write_group(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    group: &[&NewMessage],
    members: HashMap<i64, Vec<i64>>,
    mut seqs: HashMap<i64, i64>,
) -> Result<Vec<StoreResult<Appended>>, GroupError> {
    let now = now_ms();
    // Under the sender's stripe, so two nodes retrying the same key cannot both miss it.
    let earlier = earlier_sends(&mut tx, group, now).await?;

    // Decide every send in order; accepted ones get positions in that order.
    let mut rows: Vec<Accepted> = Vec::with_capacity(group.len());
    let mut slots = Vec::with_capacity(group.len());
    let mut keyed: HashMap<(UserId, &str), usize> = HashMap::new();
    for new in group {
        if let Some(key) = new.idempotency_key.as_deref() {
            // A retry inside this same group answers with the first one's message.
            if let Some(&first) = keyed.get(&(new.sender, key)) {
                slots.push(Slot::Repeat(first));
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
        let (positions, mut heads) = positions_and_heads(&mut tx, &rows, &members).await?;
        for (row, position) in rows.iter_mut().zip(positions) {
            row.message.id = MessageId(position);
        }
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
        write_rows(&mut tx, &rows).await?;
    }
    tx.commit().await.map_err(|error| GroupError {
        error,
        at_commit: true,
        sends: 0,
    })?;

    Ok(slots
        .into_iter()
        .zip(group)
        .map(|(slot, new)| match slot {
            Slot::Done(result) => result,
            Slot::Repeat(index) => replay(&rows[index].message, new),
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

/// The current members of each of the conversations (in user id order) and the seq
/// of each one's last message, in one query. The seq is a primary-key lookup per conversation,
/// not a join: the prepared statement's generic plan hashed the whole `messages` table for it,
/// once per group (seen as one sequential scan of `messages` per commit).
async fn members(
    conn: &mut PgConnection,
    conversations: &BTreeSet<i64>,
) -> Result<(HashMap<i64, Vec<i64>>, HashMap<i64, i64>), sqlx::Error> {
    let conversations: Vec<i64> = conversations.iter().copied().collect();
    let rows: Vec<(i64, i64, Vec<i64>)> = sqlx::query_as(
        "SELECT c.id,
                COALESCE((SELECT m.seq FROM messages m WHERE m.id = c.last_message_id), 0)::BIGINT,
                ARRAY(SELECT p.user_id FROM participants p
                      WHERE p.conversation_id = c.id ORDER BY p.user_id)
         FROM conversations c
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

/// The group's positions (one per row, ascending) and every recipient's newest visible
/// position among committed entries, in one round trip. Both only after the stripes are
/// held (`audience::positions`), and in a statement of their own: its snapshot is taken after
/// the locks, so it sees every append that held them before.
async fn positions_and_heads(
    conn: &mut PgConnection,
    rows: &[Accepted],
    members: &HashMap<i64, Vec<i64>>,
) -> Result<(Vec<i64>, HashMap<i64, i64>), sqlx::Error> {
    let users: Vec<i64> = rows
        .iter()
        .flat_map(|row| members[&row.message.conversation_id.0].iter().copied())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let (mut positions, users, heads): (Vec<i64>, Vec<i64>, Vec<i64>) = sqlx::query_as(concat!(
        "WITH h (user_id, head) AS (",
        heads_sql!(),
        ")
             SELECT ARRAY(SELECT nextval('log_position') FROM generate_series(1, $2)),
                    ARRAY(SELECT user_id FROM h ORDER BY user_id),
                    ARRAY(SELECT head FROM h ORDER BY user_id)"
    ))
    .bind(users)
    .bind(rows.len() as i64)
    .fetch_one(conn)
    .await?;
    positions.sort_unstable();
    Ok((positions, users.into_iter().zip(heads).collect()))
}

/// Writes the group in one statement: the messages, each conversation's last message, each
/// sender's read position and the idempotency keys.
async fn write_rows(conn: &mut PgConnection, rows: &[Accepted]) -> Result<(), sqlx::Error> {
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
                         $5::BIGINT[], $16::BIGINT[], $17::BIGINT[], $18::TEXT[])
                  AS v (i, c, s, t, ca, sq, r, w)),
         c AS (
             UPDATE conversations SET last_message_id = v.id, last_position = v.id
             FROM UNNEST($6::BIGINT[], $7::BIGINT[]) AS v (conversation_id, id)
             WHERE conversations.id = v.conversation_id),
         p AS (
             UPDATE participants SET last_read_message_id = v.id
             FROM UNNEST($8::BIGINT[], $9::BIGINT[], $10::BIGINT[]) AS v (conversation_id, user_id, id)
             WHERE participants.conversation_id = v.conversation_id
               AND participants.user_id = v.user_id)
         INSERT INTO idempotency_keys (user_id, key, conversation_id, message_id, created_at)
         SELECT * FROM UNNEST($11::BIGINT[], $12::TEXT[], $13::BIGINT[], $14::BIGINT[],
                              $15::BIGINT[])
         ON CONFLICT (user_id, key) DO UPDATE SET
             conversation_id = excluded.conversation_id,
             message_id = excluded.message_id, created_at = excluded.created_at",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConversationId, MessageContent};

    fn send(conversation: i64, sender: i64) -> NewMessage {
        NewMessage {
            conversation: ConversationId(conversation),
            sender: UserId(sender),
            content: MessageContent::parse("hi", 480).unwrap(),
            idempotency_key: None,
            reply_to: None,
            attachment_claim: None,
        }
    }

    #[test]
    fn a_group_takes_the_sends_whose_stripes_fit_and_leaves_the_rest() {
        // Conversation 1: users 1..=30; 2: users 31..=60; 3: users 1 and 2 (already counted).
        let members = HashMap::from([
            (1, (1..=30).collect::<Vec<i64>>()),
            (2, (31..=60).collect()),
            (3, vec![1, 2]),
        ]);
        let (a, b, c) = (send(1, 1), send(2, 31), send(3, 2));
        assert_eq!(
            fit(&[&a, &c], &members, 30).unwrap().0,
            2,
            "shared stripes count once"
        );
        assert_eq!(fit(&[&a, &b, &c], &members, 59).unwrap().0, 1);
        let (taken, stripes) = fit(&[&a, &b, &c], &members, 60).unwrap();
        assert_eq!((taken, stripes.len()), (3, 60));
        assert_eq!(
            fit(&[&b, &a], &members, 29),
            Err(30),
            "the first alone is too wide"
        );
        // A user 1,024 apart shares a stripe; a non-member sender still counts.
        let members = HashMap::from([(4, vec![5, 5 + audience::USER_STRIPES])]);
        assert_eq!(fit(&[&send(4, 7)], &members, 2).unwrap().1.len(), 2);
    }
}
