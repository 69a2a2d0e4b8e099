//! PostgreSQL only: appends lock their audience, not the whole log (see `store::postgres`).
//! Entries of users who share nothing commit out of position order, on purpose here, and no
//! reader skips one; two entries of one user never commit out of order; and an append whose
//! users are all free goes ahead while another user's stripe is held.
//!
//! A raw connection beside the store holds a lock to stall an append at a chosen point, and
//! the test waits until PostgreSQL reports that append as waiting (`pg_locks`) before going
//! on: every step is ordered by observed lock state, not by time. A group too large for one
//! transaction's lock budget takes the wide lock instead, and still reaches everyone.

use crate::support::StoreBackend;
use courier::model::{
    ChangeRequest, ConversationId, History, LogEntry, MessageContent, MessageId, Title, User,
    Username,
};
use courier::store::postgres::{USER_STRIPES, user_lock};
use courier::store::{Appended, NewMessage, Store};
use sqlx::{Connection, PgConnection};
use std::sync::Arc;
use std::time::Duration;

async fn backend() -> Option<StoreBackend> {
    if !crate::reachable::postgres(&crate::support::pg::admin_url()) {
        return None;
    }
    Some(StoreBackend::postgres().await)
}

async fn user(store: &dyn Store, raw: &str) -> User {
    let name = Username::parse(raw).expect("valid username");
    store.find_or_create_user(&name).await.expect("user")
}

async fn direct(store: &dyn Store, a: &User, b: &User) -> ConversationId {
    store
        .find_or_create_direct(a.id, b.id)
        .await
        .expect("direct")
        .0
}

fn new_message(conversation: ConversationId, sender: &User, text: &str) -> NewMessage {
    NewMessage {
        conversation,
        sender: sender.id,
        content: MessageContent::parse(text, 480).expect("content"),
        idempotency_key: None,
        reply_to: None,
        attachment_claim: None,
    }
}

/// Sends from a task, so the test can go on while the append is stalled.
fn spawn_send(
    store: &Arc<dyn Store>,
    conversation: ConversationId,
    sender: &User,
    text: &str,
) -> tokio::task::JoinHandle<Appended> {
    let (store, new) = (store.clone(), new_message(conversation, sender, text));
    tokio::spawn(async move { store.append_message(new).await.expect("append") })
}

fn prev(appended: &Appended, user: &User) -> MessageId {
    appended
        .recipients
        .iter()
        .find(|r| r.user == user.id)
        .expect("a recipient")
        .prev
}

fn positions(entries: &[LogEntry]) -> Vec<MessageId> {
    entries.iter().map(LogEntry::position).collect()
}

/// Returns once some connection to this test's database waits for a lock that `kind` (a
/// condition on `pg_locks l`) describes. Panics after a minute: the append under test never
/// got there, so the store did not take the lock this test stalls it on.
async fn until_waiting(conn: &mut PgConnection, kind: &str) {
    let sql = format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE NOT l.granted AND a.datname = current_database() AND {kind}"
    );
    for _ in 0..6000 {
        let waiting: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(&mut *conn)
            .await
            .expect("pg_locks");
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no append ever waited for a lock where {kind}");
}

/// `work`'s output; panics if it is still stalled after a minute (a store that serialises
/// every append would stall it forever behind the held lock).
async fn finishes<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .expect("an append that shares nothing with the stalled one went ahead")
}

/// A wait for another transaction's row (the stalled append is writing its rows).
const ROW_WAIT: &str = "l.locktype IN ('transactionid', 'tuple')";

/// A wait for the advisory lock guarding `user`'s stream.
fn stripe_wait(user: &User) -> String {
    let (class, key) = user_lock(user.id);
    format!(
        "l.locktype = 'advisory' AND l.objsubid = 2 AND l.classid = {class} AND l.objid = {key}"
    )
}

/// Users `names` whose stripes all differ (fresh ids are consecutive, far below 1,024).
async fn users(store: &dyn Store, names: &[&str]) -> Vec<User> {
    let mut all = Vec::new();
    for name in names {
        all.push(user(store, name).await);
    }
    let mut stripes: Vec<i64> = all.iter().map(|u| u.id.0 % USER_STRIPES).collect();
    stripes.sort();
    stripes.dedup();
    assert_eq!(
        stripes.len(),
        all.len(),
        "the test users need their own stripes"
    );
    all
}

/// U's append takes position p and is stalled before it commits; V's append takes p' > p and
/// commits first. V's reader gets V's entry at once; U's reader does not skip U's entry when
/// it commits later; and U's next append waits for the first, whatever node it comes from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_committed_below_another_users_newer_one_is_not_skipped() {
    let Some(backend) = backend().await else {
        return;
    };
    let first = backend.store.clone();
    let second = backend.reopen().await.expect("a second node");
    let third = backend.reopen().await.expect("a third node");
    let [u, x, v, y, z] =
        <[User; 5]>::try_from(users(&*first, &["uma", "xavier", "vera", "yann", "zoe"]).await)
            .unwrap();
    let (ux, vy, uz) = (
        direct(&*first, &u, &x).await,
        direct(&*first, &v, &y).await,
        direct(&*first, &u, &z).await,
    );
    let before = spawn_send(&first, ux, &u, "before").await.unwrap();
    let cursor = before.message.id;

    // Stall the next append in ux where it writes its rows: after it has taken its position.
    let mut stall = PgConnection::connect(backend.url()).await.unwrap();
    let mut hold = stall.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE")
        .bind(ux.0)
        .execute(&mut *hold)
        .await
        .unwrap();
    let late = spawn_send(&first, ux, &x, "late");
    let mut watch = PgConnection::connect(backend.url()).await.unwrap();
    until_waiting(&mut watch, ROW_WAIT).await;

    // V shares nothing with the stalled append: it commits a higher position first.
    let meanwhile = finishes(second.append_message(new_message(vy, &v, "meanwhile")))
        .await
        .expect("V's append is not held up by U's");
    assert_eq!(
        positions(&second.inbox_after(v.id, MessageId(0), 10).await.unwrap()),
        vec![meanwhile.message.id],
        "V's reader gets V's entry while U's lower one is in flight"
    );
    assert_eq!(
        second.inbox_after(u.id, cursor, 10).await.unwrap(),
        vec![],
        "U's in-flight entry is not visible yet"
    );
    assert_eq!(second.inbox_head(u.id).await.unwrap(), cursor);
    // The store-wide head already passed U's in-flight position: a stream started there
    // would skip it, which is why streams start from their user's inbox head.
    assert!(second.head().await.unwrap() >= meanwhile.message.id);

    // U's next append, from a third node, waits for U's stripe.
    let again = spawn_send(&third, uz, &z, "again");
    until_waiting(&mut watch, &stripe_wait(&u)).await;
    assert!(
        !again.is_finished(),
        "it waits in PostgreSQL for U's stripe"
    );

    hold.rollback().await.unwrap();
    let late = late.await.unwrap();
    let again = again.await.unwrap();
    assert!(
        late.message.id < meanwhile.message.id,
        "U's entry took the lower position and committed after V's"
    );
    assert!(
        again.message.id > late.message.id,
        "U's next entry took its position after U's previous one committed"
    );
    assert_eq!(prev(&late, &u), cursor);
    assert_eq!(prev(&again, &u), late.message.id);
    assert_eq!(prev(&meanwhile, &v), MessageId(0));

    // U resumes from the cursor it had before: nothing skipped, nothing repeated.
    assert_eq!(
        positions(&third.inbox_after(u.id, cursor, 10).await.unwrap()),
        vec![late.message.id, again.message.id]
    );
    assert_eq!(
        first.inbox_head(u.id).await.unwrap(),
        again.message.id,
        "U's head is U's own newest entry"
    );
    drop((first, second, third));
    backend.finish().await;
}

/// A held stripe stalls exactly the appends that reach one of its users: V's send and a
/// change in V's group go ahead on another node while U's send waits, and U's send then
/// takes a later position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_user_stripe_stalls_only_the_appends_reaching_that_user() {
    let Some(backend) = backend().await else {
        return;
    };
    let first = backend.store.clone();
    let second = backend.reopen().await.expect("a second node");
    let [u, x, v, y] =
        <[User; 4]>::try_from(users(&*first, &["uma", "xavier", "vera", "yann"]).await).unwrap();
    let ux = direct(&*first, &u, &x).await;
    let vy = direct(&*first, &v, &y).await;

    let (class, key) = user_lock(u.id);
    let mut stall = PgConnection::connect(backend.url()).await.unwrap();
    let mut hold = stall.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(class)
        .bind(key)
        .execute(&mut *hold)
        .await
        .unwrap();
    let blocked = spawn_send(&first, ux, &x, "to U");
    let mut watch = PgConnection::connect(backend.url()).await.unwrap();
    until_waiting(&mut watch, &stripe_wait(&u)).await;

    let free = finishes(second.append_message(new_message(vy, &v, "to V")))
        .await
        .expect("V's send completes while U's stripe is held");
    let group = finishes(second.apply_change(ChangeRequest::Create {
        creator: v.clone(),
        members: vec![y.clone()],
        title: Title::parse("V and Y").unwrap(),
        history: History::Shared,
        max_members: 100,
    }))
    .await
    .expect("V's change completes while U's stripe is held")
    .expect("a new group");
    assert!(!blocked.is_finished(), "U's send waits for U's stripe");

    hold.rollback().await.unwrap();
    let blocked = blocked.await.unwrap();
    assert!(blocked.message.id > free.message.id);
    assert!(blocked.message.id > group.event.position);
    assert_eq!(
        positions(&first.inbox_after(v.id, MessageId(0), 10).await.unwrap()),
        vec![free.message.id, group.event.position]
    );
    assert_eq!(
        positions(&first.inbox_after(u.id, MessageId(0), 10).await.unwrap()),
        vec![blocked.message.id]
    );
    drop((first, second));
    backend.finish().await;
}

/// A group whose members' stripes exceed one transaction's lock budget cannot lock them all:
/// its appends take the wide lock exclusively instead, so they wait while any other append
/// holds it shared (here a raw transaction), and still chain every member's `prev` exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_beyond_the_lock_budget_appends_alone_and_reaches_everyone() {
    let Some(backend) = backend().await else {
        return;
    };
    let first = backend.store.clone();
    let second = backend.reopen().await.expect("a second node");
    let names: Vec<String> = (0..70).map(|i| format!("member{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let everyone = users(&*first, &names).await;
    let (owner, rest) = everyone.split_first().unwrap();
    let created = first
        .apply_change(ChangeRequest::Create {
            creator: owner.clone(),
            members: rest.to_vec(),
            title: Title::parse("Everyone").unwrap(),
            history: History::Shared,
            max_members: 100,
        })
        .await
        .expect("create")
        .expect("a new group")
        .event;
    let [u, v] = <[User; 2]>::try_from(users(&*first, &["uma", "vera"]).await).unwrap();
    let uv = direct(&*first, &u, &v).await;

    // Any append in flight holds the wide lock shared; a raw transaction stands in for one.
    let mut stall = PgConnection::connect(backend.url()).await.unwrap();
    let mut hold = stall.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock_shared(0, 0)")
        .execute(&mut *hold)
        .await
        .unwrap();
    let wide = spawn_send(&first, created.conversation_id, owner, "to all");
    let mut watch = PgConnection::connect(backend.url()).await.unwrap();
    until_waiting(
        &mut watch,
        "l.locktype = 'advisory' AND l.objsubid = 2 AND l.classid = 0 AND l.objid = 0",
    )
    .await;
    assert!(
        !wide.is_finished(),
        "the wide send waits for every other append"
    );
    hold.rollback().await.unwrap();
    let wide = wide.await.unwrap();

    let narrow = second
        .append_message(new_message(uv, &u, "just us"))
        .await
        .unwrap();
    assert!(narrow.message.id > wide.message.id);
    assert_eq!(wide.recipients.len(), 70);
    for recipient in &wide.recipients {
        assert_eq!(
            recipient.prev, created.position,
            "{}'s prev",
            recipient.user
        );
    }
    for member in [owner, &rest[68]] {
        assert_eq!(
            positions(
                &second
                    .inbox_after(member.id, MessageId(0), 10)
                    .await
                    .unwrap()
            ),
            vec![created.position, wide.message.id]
        );
    }
    assert_eq!(prev(&narrow, &u), MessageId(0));
    drop((first, second));
    backend.finish().await;
}
