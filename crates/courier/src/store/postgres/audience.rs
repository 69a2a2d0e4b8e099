//! The locks of an append's audience, and the positions taken under them (see
//! `store::postgres` for why they keep every stream gap-free).
//!
//! Every lock is a transaction-scoped advisory lock `(class, key)`, released at COMMIT or
//! ROLLBACK after the commit is visible, and taken in one global order: the wide lock
//! (class 0), then conversations (class 1), then user stripes (class 2), each ascending.
//! A transaction that only ever waits for keys above every key it holds cannot be part of a
//! cycle, so appends never deadlock, on one node or across nodes.
//!
//! Budget: a transaction takes at most `LOCKS_MAX` advisory locks. PostgreSQL sizes its
//! shared lock table as `max_locks_per_transaction` (default 64) slots per connection, so
//! however many of Courier's pooled connections append at once they never hold more than
//! their own share of it. An audience too large for the budget takes the wide lock
//! exclusively instead of its stripes: that excludes every other append in the cluster for
//! the length of one transaction, and costs two locks.

use crate::model::UserId;
use sqlx::postgres::PgConnection;
use std::collections::BTreeSet;

/// User stripes: a user's stream is guarded by the lock of stripe `id mod USER_STRIPES`.
/// More stripes make two unrelated users share a lock less often; 1,024 keeps that rare
/// for a transaction of a few dozen users while a stripe set still fits in a small array.
pub const USER_STRIPES: i64 = 1024;
/// Advisory locks one append transaction takes, at most (see the module docs).
pub(super) const LOCKS_MAX: usize = 64;

const WIDE: i32 = 0;
const CONVERSATION: i32 = 1;
const USER: i32 = 2;

/// How an append excludes the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reach {
    /// The wide lock shared, then the audience's stripes.
    Narrow,
    /// The wide lock exclusive: no other append runs anywhere, so no stripes are needed.
    Wide,
}

/// The advisory lock `(class, key)` guarding `user`'s stream; public so tests (and an
/// operator reading `pg_locks`) can find it.
pub fn user_lock(user: UserId) -> (i32, i32) {
    (USER, stripe(user))
}

pub(super) fn stripe(user: UserId) -> i32 {
    user.0.rem_euclid(USER_STRIPES) as i32
}

/// Conversation ids fold into the lock key's 31 bits; two ids 2³¹ apart share a lock, which
/// only costs them some waiting.
fn conversation_key(conversation: i64) -> i32 {
    conversation.rem_euclid(1 << 31) as i32
}

/// Phase one: the wide lock (shared for `Narrow`), then each conversation in ascending order.
/// Membership is read after this, so it cannot change underneath the transaction.
pub(super) async fn lock_conversations(
    conn: &mut PgConnection,
    reach: Reach,
    conversations: impl IntoIterator<Item = i64>,
) -> Result<(), sqlx::Error> {
    let keys: BTreeSet<i32> = conversations.into_iter().map(conversation_key).collect();
    let mut locks = vec![(WIDE, 0, reach == Reach::Wide)];
    locks.extend(keys.into_iter().map(|key| (CONVERSATION, key, true)));
    take(conn, &locks).await
}

/// Phase two: the stripes of every user whose stream shows the entries, ascending.
pub(super) async fn lock_stripes(
    conn: &mut PgConnection,
    stripes: &BTreeSet<i32>,
) -> Result<(), sqlx::Error> {
    let locks: Vec<(i32, i32, bool)> = stripes.iter().map(|&key| (USER, key, true)).collect();
    take(conn, &locks).await
}

/// `count` fresh positions, ascending. Only after the audience is locked: a stripe held from
/// before `nextval` until COMMIT is what makes one user's positions commit in order.
pub(super) async fn positions(
    conn: &mut PgConnection,
    count: usize,
) -> Result<Vec<i64>, sqlx::Error> {
    let mut taken: Vec<i64> =
        sqlx::query_scalar("SELECT nextval('log_position') FROM generate_series(1, $1)")
            .bind(count as i64)
            .fetch_all(conn)
            .await?;
    taken.sort_unstable();
    Ok(taken)
}

/// Takes the locks in the order given (callers pass them sorted), in one round trip.
/// PostgreSQL evaluates a volatile select list row by row after the ORDER BY.
async fn take(conn: &mut PgConnection, locks: &[(i32, i32, bool)]) -> Result<(), sqlx::Error> {
    if locks.is_empty() {
        return Ok(());
    }
    debug_assert!(
        locks
            .windows(2)
            .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1))
    );
    let classes: Vec<i32> = locks.iter().map(|l| l.0).collect();
    let keys: Vec<i32> = locks.iter().map(|l| l.1).collect();
    let exclusive: Vec<bool> = locks.iter().map(|l| l.2).collect();
    sqlx::query(
        "SELECT CASE WHEN v.exclusive THEN pg_advisory_xact_lock(v.class, v.key)
                     ELSE pg_advisory_xact_lock_shared(v.class, v.key) END
         FROM UNNEST($1::INT4[], $2::INT4[], $3::BOOL[]) WITH ORDINALITY
              AS v (class, key, exclusive, n)
         ORDER BY v.n",
    )
    .bind(classes)
    .bind(keys)
    .bind(exclusive)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_and_conversation_keys_stay_in_range() {
        for id in [0, 1, 1023, 1024, 1025, i64::MAX, -1] {
            let s = stripe(UserId(id));
            assert!((0..USER_STRIPES as i32).contains(&s), "{id} -> {s}");
        }
        assert_eq!(stripe(UserId(1)), stripe(UserId(1 + USER_STRIPES)));
        assert_ne!(stripe(UserId(1)), stripe(UserId(2)));
        for id in [0, 1, (1 << 31) - 1, 1 << 31, i64::MAX] {
            assert!(conversation_key(id) >= 0);
        }
        assert_eq!(conversation_key(5), 5);
    }
}
