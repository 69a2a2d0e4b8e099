//! `Store` contract: every function here runs against `SqliteStore` and `PgStore`.

use crate::support::StoreBackend;
use courier::model::{
    Authority, Change, ChangeRequest, ConversationId, Emoji, History, LogEntry, MessageContent,
    MessageId, MessageOp, Op, Title, User, UserId, Username,
};
use courier::store::{Appended, NewCredential, NewMessage, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Runs each listed contract test once per store backend.
macro_rules! store_contract {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let backend = crate::support::StoreBackend::sqlite().await;
                    super::$test(&backend).await;
                    backend.finish().await;
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if !crate::reachable::postgres(&crate::support::pg::admin_url()) {
                        return;
                    }
                    let backend = crate::support::StoreBackend::postgres().await;
                    super::$test(&backend).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

store_contract!(
    message_ids_follow_commit_order_under_concurrent_appends,
    a_polling_reader_never_skips_a_message_that_commits_late,
    a_polling_reader_never_skips_a_message_committed_just_before_a_change,
    messages_page_newest_first_without_overlap,
    conversations_page_by_their_last_message,
    unread_is_set_by_others_and_cleared_by_mark_read,
    mark_read_never_moves_backwards_and_strangers_get_not_found,
    usernames_are_unique_ignoring_case,
    username_search_is_a_literal_case_insensitive_prefix,
    concurrent_find_or_create_direct_makes_one_conversation,
    an_idempotency_key_replays_the_first_send,
    only_participants_may_append_or_read,
    the_instance_id_is_fixed_when_the_database_is_created,
    heads_track_the_newest_positions,
    purging_forgets_old_idempotency_keys_and_dead_sessions,
    an_oauth_flow_is_spent_once_on_every_node_and_purged_after_expiry,
    batched_session_touches_move_forward_and_skip_revoked_sessions,
    credentials_are_a_password_or_an_identity,
    an_entry_reaches_exactly_the_members_at_its_position,
    resume_across_membership_changes_reads_the_same_in_any_page_size,
    sends_racing_membership_changes_go_to_the_members_at_their_position,
    shared_history_shows_earlier_messages_and_joined_history_hides_them,
    message_ops_write_one_entry_each_and_a_no_op_writes_nothing,
    a_delete_scrubs_the_text_from_the_message_and_its_earlier_edits,
    reactions_racing_on_one_message_count_every_one_exactly_once,
    a_reply_is_read_back_with_a_quote_that_follows_its_original,
    a_read_marker_move_is_one_entry_and_an_unshared_read_writes_none,
);

fn name(raw: &str) -> Username {
    Username::parse(raw).expect("valid username")
}

async fn user(store: &dyn Store, raw: &str) -> User {
    store.find_or_create_user(&name(raw)).await.expect("user")
}

async fn direct(store: &dyn Store, a: &User, b: &User) -> ConversationId {
    store
        .find_or_create_direct(a.id, b.id)
        .await
        .expect("direct")
        .0
}

fn new_message(conversation: ConversationId, sender: UserId, text: &str) -> NewMessage {
    NewMessage {
        conversation,
        sender,
        content: MessageContent::parse(text, 480).expect("content"),
        idempotency_key: None,
        reply_to: None,
        attachment_claim: None,
    }
}

async fn send(
    store: &dyn Store,
    conversation: ConversationId,
    sender: &User,
    text: &str,
) -> Appended {
    store
        .append_message(new_message(conversation, sender.id, text))
        .await
        .expect("append")
}

/// The whole inbox of `user`, read in pages of `page`.
async fn whole_inbox(store: &dyn Store, user: UserId, page: u32) -> Vec<MessageId> {
    let mut all = Vec::new();
    let mut last = MessageId(0);
    loop {
        let batch = store.inbox_after(user, last, page).await.expect("inbox");
        if batch.is_empty() {
            return all;
        }
        last = batch.last().unwrap().position();
        all.extend(batch.into_iter().map(|m| m.position()));
    }
}

fn assert_strictly_increasing(ids: &[MessageId], what: &str) {
    for pair in ids.windows(2) {
        assert!(
            pair[0] < pair[1],
            "{what}: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
}

/// Four users and every pair's conversation: each user is in three of six conversations.
async fn community(store: &dyn Store) -> (Vec<User>, Vec<(ConversationId, [UserId; 2])>) {
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(user(store, &format!("user{i}")).await);
    }
    let mut conversations = Vec::new();
    for a in 0..4 {
        for b in a + 1..4 {
            let id = direct(store, &users[a], &users[b]).await;
            conversations.push((id, [users[a].id, users[b].id]));
        }
    }
    (users, conversations)
}

/// Appends `per_task` messages from each of `tasks` concurrent tasks, spread over the
/// conversations; returns every result.
async fn hammer(
    store: Arc<dyn Store>,
    conversations: &[(ConversationId, [UserId; 2])],
    tasks: usize,
    per_task: usize,
) -> Vec<Appended> {
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = store.clone();
        let conversations = conversations.to_vec();
        handles.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let (conversation, members) = conversations[(task + i) % conversations.len()];
                let sender = members[(task + i) % 2];
                let text = format!("task {task} message {i}");
                out.push(
                    store
                        .append_message(new_message(conversation, sender, &text))
                        .await
                        .expect("append"),
                );
            }
            out
        }));
    }
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.expect("task"));
    }
    all
}

/// Checks ids, inboxes and each user's `prev` chain after a burst of appends.
async fn check_commit_order(
    store: &dyn Store,
    users: &[User],
    conversations: &[(ConversationId, [UserId; 2])],
    appended: &[Appended],
) {
    let ids: BTreeSet<MessageId> = appended.iter().map(|a| a.message.id).collect();
    assert_eq!(ids.len(), appended.len(), "message ids are unique");

    let members: HashMap<ConversationId, [UserId; 2]> = conversations.iter().copied().collect();
    for user in users {
        let expected: Vec<MessageId> = appended
            .iter()
            .filter(|a| members[&a.message.conversation_id].contains(&user.id))
            .map(|a| a.message.id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let inbox = whole_inbox(store, user.id, 37).await;
        assert_strictly_increasing(&inbox, "inbox_after");
        assert_eq!(
            inbox, expected,
            "{}'s inbox holds exactly their messages",
            user.username
        );

        // Each recipient link names the message just before it in that user's inbox.
        let mut links: BTreeMap<MessageId, MessageId> = BTreeMap::new();
        for a in appended {
            if let Some(r) = a.recipients.iter().find(|r| r.user == user.id) {
                links.insert(a.message.id, r.prev);
            }
        }
        let mut previous = MessageId(0);
        for id in &inbox {
            assert_eq!(
                links.get(id),
                Some(&previous),
                "{}'s prev chain at message {id}",
                user.username
            );
            previous = *id;
        }
    }
}

async fn message_ids_follow_commit_order_under_concurrent_appends(backend: &StoreBackend) {
    let store = backend.store.clone();
    let (users, conversations) = community(&*store).await;
    let appended = hammer(store.clone(), &conversations, 8, 100).await;
    assert_eq!(appended.len(), 800);
    check_commit_order(&*store, &users, &conversations, &appended).await;
}

/// The gap: if id 10 committed after id 11, a reader that saw 11 and continued from
/// it would skip 10 forever. Readers poll while writers append; no reader may miss anything.
async fn a_polling_reader_never_skips_a_message_that_commits_late(backend: &StoreBackend) {
    let store = backend.store.clone();
    let (users, conversations) = community(&*store).await;
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for user in users.clone() {
        let store = store.clone();
        let done = done.clone();
        readers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut last = MessageId(0);
            loop {
                let finished = done.load(Ordering::SeqCst);
                let batch = store.inbox_after(user.id, last, 5).await.expect("poll");
                if batch.is_empty() && finished {
                    return (user.id, seen);
                }
                if let Some(m) = batch.last() {
                    last = m.position();
                }
                seen.extend(batch.into_iter().map(|m| m.position()));
                tokio::task::yield_now().await;
            }
        }));
    }
    let appended = hammer(store.clone(), &conversations, 8, 60).await;
    done.store(true, Ordering::SeqCst);

    let members: HashMap<ConversationId, [UserId; 2]> = conversations.iter().copied().collect();
    for reader in readers {
        let (user, seen) = reader.await.expect("reader");
        assert_strictly_increasing(&seen, "polled inbox");
        let expected: Vec<MessageId> = appended
            .iter()
            .filter(|a| members[&a.message.conversation_id].contains(&user))
            .map(|a| a.message.id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(seen, expected, "user {user} saw every message exactly once");
    }
}

/// A catch-up reads messages and changes: if it read them at two moments, a message and then a
/// change committing between the two reads would come back as "the change" alone, and a reader
/// continuing from the change would skip the message for ever. Writers send and rename in turn
/// while the members poll; each must see every entry exactly once.
async fn a_polling_reader_never_skips_a_message_committed_just_before_a_change(
    backend: &StoreBackend,
) {
    let store = backend.store.clone();
    let alice = user(&*store, "alice").await;
    let bob = user(&*store, "bob").await;
    let group = create_group(&*store, &alice, &[&bob], History::Shared).await;
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for reader in [alice.id, bob.id] {
        let (store, done) = (store.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let (mut seen, mut last) = (Vec::new(), MessageId(0));
            loop {
                let finished = done.load(Ordering::SeqCst);
                let batch = store.inbox_after(reader, last, 50).await.expect("poll");
                if batch.is_empty() && finished {
                    return (reader, seen);
                }
                if let Some(entry) = batch.last() {
                    last = entry.position();
                }
                seen.extend(batch.iter().map(LogEntry::position));
                // SQLite reads complete without awaiting: let the writers run.
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut writers = Vec::new();
    for writer in 0..2 {
        let (store, alice, bob) = (store.clone(), alice.clone(), bob.clone());
        writers.push(tokio::spawn(async move {
            for round in 0..150 {
                let sender = if round % 2 == 0 { &alice } else { &bob };
                let text = format!("writer {writer} round {round}");
                send(&*store, group, sender, &text).await;
                let title = Title::parse(&format!("{writer}/{round}")).unwrap();
                update(&*store, &alice, group, Op::Rename(title)).await;
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    done.store(true, Ordering::SeqCst);
    for reader in readers {
        let (user, seen) = reader.await.expect("reader");
        assert_strictly_increasing(&seen, "polled log");
        let whole = whole_inbox(&*store, user, 1000).await;
        assert!(whole.len() >= 600, "every send and rename is in the log");
        let missed: Vec<_> = whole.iter().filter(|p| !seen.contains(p)).collect();
        assert!(missed.is_empty(), "user {user} skipped {missed:?}");
        assert_eq!(seen, whole, "user {user} polled every entry exactly once");
    }
}

/// The SQLite writer and readers open the file by path, so an in-memory URL (or one naming no
/// file) would give each connection its own empty database: it is refused with a clear error.
#[tokio::test]
async fn sqlite_refuses_an_in_memory_database() {
    use courier::store::{SqliteOptions, SqliteStore};
    for (url, reason) in [
        ("sqlite::memory:", "in-memory"),
        ("sqlite://file:x?mode=memory&cache=shared", "in-memory"),
        ("sqlite://", "names no file"),
    ] {
        let error = SqliteStore::open(url, &SqliteOptions::default())
            .await
            .err()
            .unwrap_or_else(|| panic!("{url} was opened"));
        let error = format!("{error:?}");
        assert!(error.contains(reason), "{url}: {error}");
    }
}

/// A change that writes nothing (a read marker that does not move) must let go of SQLite's
/// write lock before the writer's next send group begins on its other connection. With no
/// busy timeout, a lock still held would fail that send at once instead of sleeping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_change_that_writes_nothing_leaves_the_next_send_free_to_commit() {
    use courier::store::{SqliteOptions, SqliteStore};
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("courier.db").display());
    let options = SqliteOptions {
        busy_timeout: std::time::Duration::ZERO,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(&url, &options)
        .await
        .expect("open SQLite");
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = direct(&store, &alice, &bob).await;
    for round in 0..50 {
        // Alice has read her own message, so her read marker is already there: the writer
        // decides the receipt (in its transaction) and writes nothing.
        send(&store, c, &alice, "hello").await;
        // Queued together, so the writer takes both in one turn: the change, then the send.
        let (nothing, sent) = tokio::join!(
            store.apply_change(ChangeRequest::Read {
                actor: alice.clone(),
                conversation: c,
            }),
            store.append_message(new_message(c, alice.id, "right after")),
        );
        assert!(
            nothing.expect("read").is_none(),
            "round {round}: no receipt"
        );
        if let Err(e) = sent {
            panic!("round {round}: the send after a no-op change: {e:?}");
        }
    }
}

/// Sends checkpoint the WAL far less often than SQLite's default of every 1,000 pages (each
/// checkpoint stalls the sends queued behind it), yet still do: the database file alone comes
/// to hold the messages, and the WAL stops growing near the store's threshold of 10,000 pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sends_checkpoint_the_wal_rarely_but_surely() {
    use courier::store::{SqliteOptions, SqliteStore};
    // A WAL frame: a 24-byte header and a 4 KiB page, after the file's 32-byte header.
    const FRAME: u64 = 24 + 4096;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("courier.db");
    let wal = dir.path().join("courier.db-wal");
    let store = SqliteStore::open(
        &format!("sqlite://{}", file.display()),
        &SqliteOptions::default(),
    )
    .await
    .expect("open SQLite");
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = direct(&store, &alice, &bob).await;
    let copies = tempfile::tempdir().expect("temp dir");
    // Messages in the database file itself, read from a copy without its WAL (a copy taken
    // mid-checkpoint may be torn, or have no tables yet: it counts nothing).
    let in_file = |attempt: usize| {
        let copy = copies.path().join(format!("copy-{attempt}.db"));
        std::fs::copy(&file, &copy).expect("copy the database file");
        rusqlite::Connection::open(&copy)
            .and_then(|db| db.query_row("SELECT count(*) FROM messages", [], |r| r.get(0)))
            .unwrap_or(0i64)
    };
    let wal_pages = || std::fs::metadata(&wal).map_or(0, |m| m.len().saturating_sub(32) / FRAME);

    let mut sent = 0;
    while wal_pages() < 2_000 {
        send(&store, c, &alice, &format!("message {sent}")).await;
        sent += 1;
        assert!(sent < 2_000, "2,000 sends wrote under 2,000 WAL pages");
    }
    assert_eq!(
        in_file(0),
        0,
        "{sent} sends, {} WAL pages: checkpointed at SQLite's default",
        wal_pages()
    );

    let mut largest = 0;
    for attempt in 1.. {
        for _ in 0..100 {
            send(&store, c, &alice, &format!("message {sent}")).await;
            sent += 1;
        }
        largest = largest.max(wal_pages());
        if in_file(attempt) > 0 {
            break;
        }
        assert!(sent < 20_000, "{sent} sends and still no checkpoint");
    }
    assert!(
        (10_000..12_000).contains(&largest),
        "the WAL grew to {largest} pages before its first checkpoint"
    );
}

/// New messages' search words are written in batches behind the sends. A search must still
/// find a message as soon as its send is answered, and words a stop left unwritten must be
/// written after the restart without anyone searching.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_search_finds_a_message_once_sent_and_a_restart_indexes_what_was_pending() {
    use courier::model::SearchQuery;
    use courier::store::search::SearchRequest;
    use courier::store::{SearchStore, SqliteOptions, SqliteStore};
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("courier.db");
    let url = format!("sqlite://{}", file.display());
    let find = |word: &str| SearchRequest {
        query: SearchQuery::parse(word).expect("query"),
        conversation: None,
        before: None,
        limit: 20,
    };
    let store = SqliteStore::open(&url, &SqliteOptions::default())
        .await
        .expect("open SQLite");
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let c = direct(&store, &alice, &bob).await;
    send(&store, c, &alice, "apricot one").await;
    send(&store, c, &bob, "apricot two").await;
    let hits = store
        .search(alice.id, &find("apricot"))
        .await
        .expect("search");
    assert_eq!(hits.len(), 2, "both found straight after their sends");

    let pending = send(&store, c, &alice, "banana three").await;
    drop(store);
    let store = SqliteStore::open(&url, &SqliteOptions::default())
        .await
        .expect("reopen SQLite");
    let mark = || -> i64 {
        let db = rusqlite::Connection::open(&file).expect("open the file");
        db.query_row(
            "SELECT indexed_upto FROM search_backlog WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .expect("the mark")
    };
    let mut indexed = mark();
    for _ in 0..50 {
        if indexed >= pending.message.id.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        indexed = mark();
    }
    assert!(
        indexed >= pending.message.id.0,
        "the restarted writer indexed the pending message by itself (mark {indexed})"
    );
    let hits = store.search(bob.id, &find("banana")).await.expect("search");
    assert_eq!(hits.len(), 1, "found after the restart");
}

/// Only stores meant to be shared by several nodes take this one: `SqliteStore` caches inbox
/// heads in its single writer and is one node's store by design.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_nodes_appending_at_once_still_hand_out_ids_in_commit_order() {
    if !crate::reachable::postgres(&crate::support::pg::admin_url()) {
        return;
    }
    let backend = StoreBackend::postgres().await;
    two_nodes_appending_at_once_still_hand_out_ids_in_commit_order(&backend).await;
    backend.finish().await;
}

/// Two store handles on one database stand for two nodes: commit order must hold across them.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
async fn two_nodes_appending_at_once_still_hand_out_ids_in_commit_order(backend: &StoreBackend) {
    let first = backend.store.clone();
    let second = backend
        .reopen()
        .await
        .expect("PostgreSQL allows several nodes");
    let (users, conversations) = community(&*first).await;
    let (a, b) = tokio::join!(
        hammer(first.clone(), &conversations, 4, 50),
        hammer(second.clone(), &conversations, 4, 50)
    );
    let appended: Vec<Appended> = a.into_iter().chain(b).collect();
    check_commit_order(&*second, &users, &conversations, &appended).await;
}

async fn messages_page_newest_first_without_overlap(backend: &StoreBackend) {
    let store = &*backend.store;
    let (alice, bob) = (user(store, "alice").await, user(store, "bob").await);
    let conversation = direct(store, &alice, &bob).await;
    let mut sent = Vec::new();
    for i in 0..12 {
        let from = if i % 3 == 0 { &bob } else { &alice };
        sent.push(
            send(store, conversation, from, &format!("m{i}"))
                .await
                .message,
        );
    }
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .messages(alice.id, conversation, before, 5)
            .await
            .expect("page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 5);
        before = Some(page.last().unwrap().id);
        pages.extend(page);
    }
    let expected: Vec<_> = sent.iter().rev().cloned().collect();
    assert_eq!(
        pages, expected,
        "pages are newest first, complete, no overlap"
    );
    assert_eq!(pages[0].content, "m11");
}

async fn conversations_page_by_their_last_message(backend: &StoreBackend) {
    let store = &*backend.store;
    let me = user(store, "me").await;
    let mut others = Vec::new();
    for i in 0..5 {
        others.push(user(store, &format!("other{i}")).await);
    }
    let mut conversations = Vec::new();
    for other in &others {
        conversations.push(direct(store, &me, other).await);
    }
    // No messages yet: nothing is listed.
    assert!(
        store
            .conversations(me.id, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Activity order: 3, 0, 4, 1 (2 stays silent), then 3 again.
    for i in [3, 0, 4, 1, 3] {
        send(store, conversations[i], &others[i], &format!("hi from {i}")).await;
    }
    let first = store.conversations(me.id, None, 2).await.unwrap();
    let ids: Vec<_> = first.iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![conversations[3], conversations[1]]);
    assert_eq!(
        first[0].other_participant.as_ref().unwrap().id,
        others[3].id
    );
    let rest = store
        .conversations(me.id, Some(conversations[1]), 10)
        .await
        .unwrap();
    let ids: Vec<_> = rest.iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![conversations[4], conversations[0]]);
    let one = store.conversation(me.id, conversations[2]).await.unwrap();
    assert!(one.last_message.is_none() && !one.has_unread_messages);
}

async fn unread_is_set_by_others_and_cleared_by_mark_read(backend: &StoreBackend) {
    let store = &*backend.store;
    let (alice, bob) = (user(store, "alice").await, user(store, "bob").await);
    let conversation = direct(store, &alice, &bob).await;
    send(store, conversation, &alice, "hello").await;
    let unread = |viewer: UserId| async move {
        store
            .conversation(viewer, conversation)
            .await
            .unwrap()
            .has_unread_messages
    };
    assert!(!unread(alice.id).await, "my own message is read");
    assert!(unread(bob.id).await);
    store.mark_read(bob.id, conversation).await.unwrap();
    assert!(!unread(bob.id).await);
    send(store, conversation, &alice, "again").await;
    assert!(unread(bob.id).await);
    // Replying reads the conversation too.
    send(store, conversation, &bob, "reply").await;
    assert!(!unread(bob.id).await);
    assert!(unread(alice.id).await);
}

async fn mark_read_never_moves_backwards_and_strangers_get_not_found(backend: &StoreBackend) {
    let store = &*backend.store;
    let (alice, bob, eve) = (
        user(store, "alice").await,
        user(store, "bob").await,
        user(store, "eve").await,
    );
    let conversation = direct(store, &alice, &bob).await;
    // Nothing to read yet: a no-op, not an error.
    store.mark_read(bob.id, conversation).await.unwrap();
    for i in 0..3 {
        send(store, conversation, &alice, &format!("m{i}")).await;
    }
    store.mark_read(bob.id, conversation).await.unwrap();
    store.mark_read(bob.id, conversation).await.unwrap();
    let view = store.conversation(bob.id, conversation).await.unwrap();
    assert!(!view.has_unread_messages);
    // Bob's reply moves his own position forward; marking again keeps it there.
    send(store, conversation, &bob, "read it").await;
    store.mark_read(bob.id, conversation).await.unwrap();
    assert!(
        !store
            .conversation(bob.id, conversation)
            .await
            .unwrap()
            .has_unread_messages
    );
    assert!(matches!(
        store.mark_read(eve.id, conversation).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.mark_read(bob.id, ConversationId(999_999)).await,
        Err(StoreError::NotFound)
    ));
}

async fn usernames_are_unique_ignoring_case(backend: &StoreBackend) {
    let store = &*backend.store;
    let first = user(store, "Alice").await;
    let again = user(store, "ALICE").await;
    assert_eq!(first.id, again.id);
    assert_eq!(again.username, "Alice", "the first spelling is kept");
    assert_eq!(
        store.user_by_username(&name("aLiCe")).await.unwrap().id,
        first.id
    );
    assert_eq!(store.user(first.id).await.unwrap(), first);
    assert!(matches!(
        store.user_by_username(&name("nobody")).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.user(UserId(424_242)).await,
        Err(StoreError::NotFound)
    ));

    // Many concurrent sign-ins with different cases still make one user.
    let mut handles = Vec::new();
    for i in 0..16 {
        let store = backend.store.clone();
        let raw = if i % 2 == 0 { "Zed" } else { "zED" };
        handles.push(tokio::spawn(async move {
            store.find_or_create_user(&name(raw)).await.unwrap().id
        }));
    }
    let mut ids = BTreeSet::new();
    for handle in handles {
        ids.insert(handle.await.unwrap());
    }
    assert_eq!(ids.len(), 1);
}

async fn username_search_is_a_literal_case_insensitive_prefix(backend: &StoreBackend) {
    let store = &*backend.store;
    let me = user(store, "al").await;
    for raw in ["Alice", "alfred", "ALBERT", "bob", "a_b", "axb"] {
        user(store, raw).await;
    }
    let found = store.search_usernames("AL", me.id, 10).await.unwrap();
    assert_eq!(
        found,
        vec!["ALBERT", "alfred", "Alice"],
        "sorted, me excluded"
    );
    assert_eq!(
        store.search_usernames("al", me.id, 2).await.unwrap().len(),
        2
    );
    assert_eq!(
        store.search_usernames("a_", me.id, 10).await.unwrap(),
        vec!["a_b"]
    );
    // `%` is a literal too (no username contains one), not "anything".
    assert!(
        store
            .search_usernames("a%", me.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .search_usernames("zz", me.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn concurrent_find_or_create_direct_makes_one_conversation(backend: &StoreBackend) {
    let (alice, bob) = (
        user(&*backend.store, "alice").await,
        user(&*backend.store, "bob").await,
    );
    let mut handles = Vec::new();
    for i in 0..16 {
        let store = backend.store.clone();
        let (a, b) = if i % 2 == 0 {
            (alice.id, bob.id)
        } else {
            (bob.id, alice.id)
        };
        handles.push(tokio::spawn(async move {
            store.find_or_create_direct(a, b).await.unwrap()
        }));
    }
    let mut ids = BTreeSet::new();
    let mut created = 0;
    for handle in handles {
        let (id, new) = handle.await.unwrap();
        ids.insert(id);
        created += usize::from(new);
    }
    assert_eq!(ids.len(), 1, "one conversation per pair");
    assert_eq!(created, 1, "exactly one caller created it");
    let id = *ids.first().unwrap();
    for viewer in [&alice, &bob] {
        let view = backend.store.conversation(viewer.id, id).await.unwrap();
        assert_ne!(view.other_participant.as_ref().unwrap().id, viewer.id);
    }
}

async fn an_idempotency_key_replays_the_first_send(backend: &StoreBackend) {
    let store = &*backend.store;
    let (alice, bob, carol) = (
        user(store, "alice").await,
        user(store, "bob").await,
        user(store, "carol").await,
    );
    let with_bob = direct(store, &alice, &bob).await;
    let with_carol = direct(store, &alice, &carol).await;
    let keyed = |conversation, sender: &User, text: &str| NewMessage {
        idempotency_key: Some("key-1".into()),
        ..new_message(conversation, sender.id, text)
    };
    let first = store
        .append_message(keyed(with_bob, &alice, "once"))
        .await
        .unwrap();
    assert!(!first.replayed);
    assert_eq!(first.recipients.len(), 2);
    let retry = store
        .append_message(keyed(with_bob, &alice, "once (retried)"))
        .await
        .unwrap();
    assert!(retry.replayed && retry.recipients.is_empty());
    assert_eq!(retry.message, first.message, "the first result comes back");
    assert!(matches!(
        store
            .append_message(keyed(with_carol, &alice, "elsewhere"))
            .await,
        Err(StoreError::KeyReused)
    ));
    // Keys belong to their user: Bob's "key-1" is a new message.
    let bobs = store
        .append_message(keyed(with_bob, &bob, "mine"))
        .await
        .unwrap();
    assert!(!bobs.replayed);
    assert_ne!(bobs.message.id, first.message.id);
    let history = store.messages(alice.id, with_bob, None, 10).await.unwrap();
    assert_eq!(history.len(), 2);

    // Concurrent retries of one key store one message.
    let mut handles = Vec::new();
    for _ in 0..8 {
        let store = backend.store.clone();
        let new = NewMessage {
            idempotency_key: Some("key-2".into()),
            ..new_message(with_carol, carol.id, "raced")
        };
        handles.push(tokio::spawn(async move {
            store.append_message(new).await.unwrap()
        }));
    }
    let mut ids = BTreeSet::new();
    let mut fresh = 0;
    for handle in handles {
        let appended = handle.await.unwrap();
        ids.insert(appended.message.id);
        fresh += usize::from(!appended.replayed);
    }
    assert_eq!((ids.len(), fresh), (1, 1));
}

async fn only_participants_may_append_or_read(backend: &StoreBackend) {
    let store = &*backend.store;
    let (alice, bob, eve) = (
        user(store, "alice").await,
        user(store, "bob").await,
        user(store, "eve").await,
    );
    let conversation = direct(store, &alice, &bob).await;
    assert!(matches!(
        store
            .append_message(new_message(conversation, eve.id, "let me in"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .append_message(new_message(ConversationId(777_777), alice.id, "void"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.messages(eve.id, conversation, None, 10).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.conversation(eve.id, conversation).await,
        Err(StoreError::NotFound)
    ));
    // A refused send in the middle of others does not disturb them.
    let good = send(store, conversation, &alice, "fine").await;
    assert_eq!(
        store.inbox_after(eve.id, MessageId(0), 10).await.unwrap(),
        vec![]
    );
    assert_eq!(
        store.inbox_after(bob.id, MessageId(0), 10).await.unwrap(),
        vec![LogEntry::Message(good.message)]
    );
}

async fn the_instance_id_is_fixed_when_the_database_is_created(backend: &StoreBackend) {
    let instance = backend.store.instance_id().to_owned();
    assert!(!instance.is_empty() && instance.len() <= 64);
    assert!(instance.bytes().all(|b| b.is_ascii_alphanumeric()));
    if let Some(again) = backend.reopen().await {
        assert_eq!(again.instance_id(), instance);
    }
    backend.store.ping().await.unwrap();
}

async fn heads_track_the_newest_positions(backend: &StoreBackend) {
    let store = &*backend.store;
    let (alice, bob, carol) = (
        user(store, "alice").await,
        user(store, "bob").await,
        user(store, "carol").await,
    );
    assert_eq!(store.head().await.unwrap(), MessageId(0));
    assert_eq!(store.inbox_head(alice.id).await.unwrap(), MessageId(0));
    let ab = direct(store, &alice, &bob).await;
    let bc = direct(store, &bob, &carol).await;
    let first = send(store, ab, &alice, "one").await;
    let second = send(store, bc, &carol, "two").await;
    assert!(first.message.id < second.message.id);
    assert_eq!(store.head().await.unwrap(), second.message.id);
    assert_eq!(store.inbox_head(alice.id).await.unwrap(), first.message.id);
    assert_eq!(store.inbox_head(bob.id).await.unwrap(), second.message.id);
    // The links: Bob's previous position for "two" was "one"; Carol had none.
    let prev = |a: &Appended, u: &User| a.recipients.iter().find(|r| r.user == u.id).unwrap().prev;
    assert_eq!(prev(&second, &bob), first.message.id);
    assert_eq!(prev(&second, &carol), MessageId(0));
    assert_eq!(prev(&first, &alice), MessageId(0));
}

async fn purging_forgets_old_idempotency_keys_and_dead_sessions(backend: &StoreBackend) {
    use chrono::{TimeDelta, Utc};
    use courier::model::Session;
    let store = &*backend.store;
    let (alice, bob) = (user(store, "alice").await, user(store, "bob").await);
    let conversation = direct(store, &alice, &bob).await;
    let keyed = NewMessage {
        idempotency_key: Some("key-1".into()),
        ..new_message(conversation, alice.id, "hello")
    };
    let first = store.append_message(keyed.clone()).await.unwrap();
    let now = Utc::now();
    let session = |id: &str, expires_at| Session {
        id: id.to_owned(),
        user: alice.id,
        device: "test".into(),
        created_at: now,
        last_seen_at: now,
        expires_at,
    };
    let live = format!("{:032x}", 1);
    let expired = format!("{:032x}", 2);
    store
        .create_session(&session(&live, now + TimeDelta::days(1)))
        .await
        .unwrap();
    store
        .create_session(&session(&expired, now - TimeDelta::days(1)))
        .await
        .unwrap();

    // Nothing is old enough yet: the key still answers retries.
    store
        .purge(now - TimeDelta::days(1), now - TimeDelta::days(7), now)
        .await
        .unwrap();
    assert!(store.append_message(keyed.clone()).await.unwrap().replayed);

    let later = now + TimeDelta::seconds(1);
    let purged = store.purge(later, later, later).await.unwrap();
    assert_eq!(purged, 2, "the key and the expired session");
    let again = store.append_message(keyed).await.unwrap();
    assert!(!again.replayed, "a forgotten key creates a new message");
    assert_ne!(again.message.id, first.message.id);
    assert!(store.active_session(&live, now).await.is_ok());
}

async fn batched_session_touches_move_forward_and_skip_revoked_sessions(backend: &StoreBackend) {
    use chrono::{DateTime, TimeDelta, Utc};
    let store = &*backend.store;
    let alice = user(store, "alice").await;
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    let (a, b, c) = (
        format!("{:032x}", 1),
        format!("{:032x}", 2),
        format!("{:032x}", 3),
    );
    for id in [&a, &b, &c] {
        store
            .create_session(&courier::model::Session {
                id: id.clone(),
                user: alice.id,
                device: "test".into(),
                created_at: now,
                last_seen_at: now,
                expires_at: now + TimeDelta::days(1),
            })
            .await
            .unwrap();
    }
    store
        .revoke_sessions(alice.id, Some(&c), now)
        .await
        .unwrap();
    let later = now + TimeDelta::minutes(2);
    store
        .touch_sessions(&[
            (a.clone(), later),
            (b.clone(), now - TimeDelta::minutes(5)),
            (c.clone(), later),
            ("unknown".into(), later),
        ])
        .await
        .unwrap();
    store.touch_sessions(&[]).await.unwrap();
    let a = store.active_session(&a, now).await.unwrap();
    assert_eq!(a.last_seen_at, later);
    let b = store.active_session(&b, now).await.unwrap();
    assert_eq!(b.last_seen_at, now, "never moves backwards");
    assert!(matches!(
        store.active_session(&c, now).await,
        Err(StoreError::NotFound)
    ));
}

async fn an_oauth_flow_is_spent_once_on_every_node_and_purged_after_expiry(backend: &StoreBackend) {
    use chrono::{TimeDelta, Utc};
    let store = &*backend.store;
    let now = Utc::now();
    let soon = now + TimeDelta::minutes(10);
    store.spend_oauth_flow("flow-a", soon).await.unwrap();
    assert!(
        matches!(
            store.spend_oauth_flow("flow-a", soon).await,
            Err(StoreError::Conflict(_))
        ),
        "a spent flow cannot be spent again"
    );
    store.spend_oauth_flow("flow-b", soon).await.unwrap();

    // Another node on the same database sees the same spent flows (PostgreSQL only: SQLite
    // is one process per database).
    if let Some(other) = backend.reopen().await {
        assert!(matches!(
            other.spend_oauth_flow("flow-a", soon).await,
            Err(StoreError::Conflict(_))
        ));
        other.spend_oauth_flow("flow-c", soon).await.unwrap();
        assert!(matches!(
            store.spend_oauth_flow("flow-c", soon).await,
            Err(StoreError::Conflict(_))
        ));
    }

    // Concurrent spends of one id: exactly one wins.
    let tries = (0..8).map(|_| store.spend_oauth_flow("flow-race", soon));
    let won = futures::future::join_all(tries)
        .await
        .into_iter()
        .filter(|r| r.is_ok())
        .count();
    assert_eq!(won, 1, "one of the racing spends wins");

    // An expired spent flow is purged; one still live is kept (and stays spent).
    store
        .spend_oauth_flow("flow-old", now - TimeDelta::seconds(1))
        .await
        .unwrap();
    let purged = store
        .purge(now - TimeDelta::days(1), now - TimeDelta::days(7), now)
        .await
        .unwrap();
    assert_eq!(purged, 1, "only the expired flow");
    assert!(store.spend_oauth_flow("flow-a", soon).await.is_err());
    store
        .spend_oauth_flow("flow-old", now - TimeDelta::seconds(1))
        .await
        .unwrap();
}

// ---- groups on the log -------------------------------------------------------------------

async fn create_group(
    store: &dyn Store,
    owner: &User,
    members: &[&User],
    history: History,
) -> ConversationId {
    store
        .apply_change(ChangeRequest::Create {
            creator: owner.clone(),
            members: members.iter().map(|u| (*u).clone()).collect(),
            title: Title::parse("Group").unwrap(),
            history,
            max_members: 1000,
        })
        .await
        .expect("create group")
        .expect("a new group is a change")
        .event
        .conversation_id
}

async fn update(
    store: &dyn Store,
    actor: &User,
    conversation: ConversationId,
    op: Op,
) -> MessageId {
    let changed = store
        .apply_change(ChangeRequest::Update {
            actor: actor.clone(),
            conversation,
            op,
        })
        .await
        .expect("change")
        .expect("a group change changes something");
    changed.event.position
}

fn add(users: &[&User]) -> Op {
    Op::Add {
        users: users.iter().map(|u| (*u).clone()).collect(),
        max_members: 1000,
    }
}

async fn inbox(store: &dyn Store, user: &User) -> Vec<MessageId> {
    whole_inbox(store, user.id, 1000).await
}

/// Membership at each position decides who gets an entry: the one removed gets the removal and
/// nothing after it, the one added gets the addition and what follows, and recipients agree.
async fn an_entry_reaches_exactly_the_members_at_its_position(backend: &StoreBackend) {
    let store = &*backend.store;
    let [a, b, c, d] = [
        user(store, "ann").await,
        user(store, "ben").await,
        user(store, "cat").await,
        user(store, "dan").await,
    ];
    let group = create_group(store, &a, &[&b, &c], History::Shared).await;
    let created = store.inbox_after(a.id, MessageId(0), 10).await.unwrap()[0].position();
    let m1 = send(store, group, &b, "one").await;
    let removed = update(store, &a, group, Op::Remove(c.clone())).await;
    let m2 = send(store, group, &b, "two").await;
    let added_d = update(store, &a, group, add(&[&d])).await;
    let m3 = send(store, group, &d, "three").await;
    let readded = update(store, &a, group, add(&[&c])).await;
    let m4 = send(store, group, &c, "four").await;

    let id = |m: &Appended| m.message.id;
    assert_eq!(
        inbox(store, &c).await,
        vec![created, id(&m1), removed, readded, id(&m4)]
    );
    assert_eq!(
        inbox(store, &d).await,
        vec![added_d, id(&m3), readded, id(&m4)]
    );
    assert_eq!(
        inbox(store, &b).await,
        vec![
            created,
            id(&m1),
            removed,
            id(&m2),
            added_d,
            id(&m3),
            readded,
            id(&m4)
        ]
    );
    let recipients =
        |m: &Appended| -> BTreeSet<UserId> { m.recipients.iter().map(|r| r.user).collect() };
    assert!(!recipients(&m2).contains(&c.id) && !recipients(&m3).contains(&c.id));
    assert!(recipients(&m3).contains(&d.id) && recipients(&m4).contains(&c.id));
    // The heads agree with what each can see.
    assert_eq!(store.inbox_head(c.id).await.unwrap(), id(&m4));
    // After leaving, the conversation is gone for them, and so are later entries.
    let left = update(store, &c, group, Op::Leave).await;
    let m5 = send(store, group, &a, "five").await;
    assert_eq!(store.inbox_head(c.id).await.unwrap(), left);
    assert!(!inbox(store, &c).await.contains(&id(&m5)));
    assert!(matches!(
        store.conversation(c.id, group).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .append_message(new_message(group, c.id, "let me in"))
            .await,
        Err(StoreError::NotFound)
    ));
    // A stranger cannot change anything, and is told nothing.
    assert!(matches!(
        store
            .apply_change(ChangeRequest::Update {
                actor: c.clone(),
                conversation: group,
                op: add(&[&c])
            })
            .await,
        Err(StoreError::NotFound)
    ));
}

/// A resume that straddles removals and re-additions reads the same entries whatever its page
/// size: nothing skipped at the seams between the two tables of the log.
async fn resume_across_membership_changes_reads_the_same_in_any_page_size(backend: &StoreBackend) {
    let store = &*backend.store;
    let [a, b] = [user(store, "ann").await, user(store, "ben").await];
    let group = create_group(store, &a, &[&b], History::Shared).await;
    for round in 0..5 {
        for i in 0..3 {
            send(store, group, &a, &format!("{round}.{i}")).await;
        }
        update(store, &a, group, Op::Remove(b.clone())).await;
        send(store, group, &a, "while out").await;
        update(store, &a, group, add(&[&b])).await;
        update(
            store,
            &a,
            group,
            Op::Rename(Title::parse(&format!("round {round}")).unwrap()),
        )
        .await;
    }
    let full = whole_inbox(store, b.id, 1000).await;
    assert_strictly_increasing(&full, "full read");
    assert_eq!(
        full.len(),
        1 + 5 * (3 + 1 + 1 + 1),
        "created + per round: 3 sent, removed, added, renamed"
    );
    for page in [1, 2, 3, 7] {
        assert_eq!(whole_inbox(store, b.id, page).await, full, "page {page}");
    }
}

/// Sends race removals and re-additions (on two handles where the store allows it): a
/// message goes to bob, in its recipients and in his replay, iff he was a member at its
/// position, as his own `added`/`removed` entries delimit it.
async fn sends_racing_membership_changes_go_to_the_members_at_their_position(
    backend: &StoreBackend,
) {
    let first = backend.store.clone();
    let second = backend.reopen().await.unwrap_or_else(|| first.clone());
    let [a, b, c] = [
        user(&*first, "ann").await,
        user(&*first, "ben").await,
        user(&*first, "cat").await,
    ];
    let group = create_group(&*first, &a, &[&b, &c], History::Shared).await;
    let senders = [a.clone(), c.clone()].map(|sender| {
        let store = first.clone();
        tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 0..60 {
                sent.push(send(&*store, group, &sender, &format!("{i}")).await);
            }
            sent
        })
    });
    let changer = {
        let store = second.clone();
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            for _ in 0..10 {
                update(&*store, &a, group, Op::Remove(b.clone())).await;
                update(&*store, &a, group, add(&[&b])).await;
            }
        })
    };
    let mut sent = Vec::new();
    for task in senders {
        sent.extend(task.await.unwrap());
    }
    changer.await.unwrap();

    // Bob's spans, from his own view of the log.
    let entries = first.inbox_after(b.id, MessageId(0), 10_000).await.unwrap();
    let mut spans = Vec::new();
    let mut from = None;
    let mut received = BTreeSet::new();
    for entry in &entries {
        match entry {
            LogEntry::Message(m) => {
                received.insert(m.id);
            }
            LogEntry::Change(e) => match &e.change {
                Change::Created { .. } => from = Some(e.position),
                Change::Added { users } if users.iter().any(|u| u.id == b.id) => {
                    from = Some(e.position)
                }
                Change::Removed { users } if users.iter().any(|u| u.id == b.id) => {
                    spans.push((from.take().expect("removed while a member"), e.position));
                }
                _ => {}
            },
        }
    }
    assert_eq!(spans.len(), 10, "every removal is in his log");
    let open = from.expect("a member at the end");
    let inside = |p: MessageId| spans.iter().any(|&(x, y)| x < p && p < y) || p > open;
    for m in &sent {
        let p = m.message.id;
        assert_eq!(received.contains(&p), inside(p), "replay of {p:?}");
        let recipient = m.recipients.iter().any(|r| r.user == b.id);
        assert_eq!(recipient, inside(p), "recipients of {p:?}");
    }
}

async fn shared_history_shows_earlier_messages_and_joined_history_hides_them(
    backend: &StoreBackend,
) {
    let store = &*backend.store;
    let [a, b] = [user(store, "ann").await, user(store, "ben").await];
    for (history, visible) in [(History::Shared, 2), (History::Joined, 1)] {
        let group = create_group(store, &a, &[], history).await;
        send(store, group, &a, "before").await;
        update(store, &a, group, add(&[&b])).await;
        send(store, group, &a, "after").await;
        let page = store.messages(b.id, group, None, 25).await.unwrap();
        assert_eq!(page.len(), visible, "{history:?}");
        assert_eq!(page[0].content, "after");
        let view = store.conversation(b.id, group).await.unwrap();
        assert_eq!(
            view.unread_count, 1,
            "{history:?}: only what came after joining is unread"
        );
    }
}

/// Dev login refuses accounts that have credentials; this is how it tells.
async fn credentials_are_a_password_or_an_identity(backend: &StoreBackend) {
    let store = &*backend.store;
    let plain = user(store, "plain").await;
    let with_password = store
        .create_account(
            &name("pw"),
            None,
            NewCredential::Password {
                hash: "$argon2id$x".into(),
            },
            None,
        )
        .await
        .unwrap();
    let with_identity = store
        .create_account(
            &name("oidc"),
            None,
            NewCredential::Identity {
                provider: "kc".into(),
                subject: "1234".into(),
            },
            None,
        )
        .await
        .unwrap();
    assert!(!store.has_credentials(plain.id).await.unwrap());
    assert!(store.has_credentials(with_password.id).await.unwrap());
    assert!(store.has_credentials(with_identity.id).await.unwrap());
}

// ---- a message's lifecycle on the log ---------------------------------------------------

async fn message_op(
    store: &dyn Store,
    actor: &User,
    conversation: ConversationId,
    message: MessageId,
    op: MessageOp,
) -> Option<courier::store::Changed> {
    store
        .apply_change(ChangeRequest::Message {
            actor: actor.clone(),
            conversation,
            message,
            op,
            authority: Authority::Member,
        })
        .await
        .expect("message op")
}

fn edit(text: &str) -> MessageOp {
    MessageOp::Edit {
        content: MessageContent::parse(text, 480).unwrap(),
        window: None,
    }
}

fn react(emoji: &str, on: bool) -> MessageOp {
    MessageOp::React {
        emoji: Emoji::parse(emoji).unwrap(),
        on,
    }
}

/// Each accepted op is one new position, sent to the members; repeating it writes nothing.
async fn message_ops_write_one_entry_each_and_a_no_op_writes_nothing(backend: &StoreBackend) {
    let store = backend.store.as_ref();
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let c = direct(store, &alice, &bob).await;
    let m = send(store, c, &alice, "helo").await.message.id;

    let edited = message_op(store, &alice, c, m, edit("hello"))
        .await
        .unwrap();
    assert!(edited.event.position > m);
    assert_eq!(store.head().await.unwrap(), edited.event.position);
    let mut to: Vec<UserId> = edited.recipients.iter().map(|r| r.user).collect();
    to.sort();
    assert_eq!(to, vec![alice.id, bob.id]);
    let read = store.message(bob.id, c, m).await.unwrap();
    assert_eq!(read.content, "hello");
    assert!(read.edited_at.is_some());

    let reacted = message_op(store, &bob, c, m, react("👍", true))
        .await
        .unwrap();
    let head = store.head().await.unwrap();
    assert_eq!(head, reacted.event.position);
    assert!(
        message_op(store, &bob, c, m, react("👍", true))
            .await
            .is_none()
    );
    assert!(
        message_op(store, &alice, c, m, edit("hello"))
            .await
            .is_none()
    );
    assert!(
        message_op(store, &bob, c, m, react("🎉", false))
            .await
            .is_none()
    );
    assert_eq!(store.head().await.unwrap(), head, "no-ops take no position");
    let read = store.message(alice.id, c, m).await.unwrap();
    assert_eq!(read.reactions.len(), 1);
    assert_eq!(read.reactions[0].count, 1);
    assert!(!read.reactions[0].mine);

    // The entries replay in order with the message.
    let replay = store.inbox_after(bob.id, MessageId(0), 100).await.unwrap();
    let kinds: Vec<&str> = replay
        .iter()
        .map(|e| match e {
            LogEntry::Message(_) => "message",
            LogEntry::Change(c) => c.change.event_name(),
        })
        .collect();
    assert_eq!(kinds, ["message", "message-edited", "reaction"]);

    // A stranger, and a message of another conversation, are not found.
    let eve = user(store, "eve").await;
    let err = store
        .apply_change(ChangeRequest::Message {
            actor: eve.clone(),
            conversation: c,
            message: m,
            op: react("👍", true),
            authority: Authority::Member,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let other = direct(store, &alice, &eve).await;
    let err = store
        .apply_change(ChangeRequest::Message {
            actor: alice.clone(),
            conversation: other,
            message: m,
            op: edit("moved"),
            authority: Authority::Member,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

async fn a_delete_scrubs_the_text_from_the_message_and_its_earlier_edits(backend: &StoreBackend) {
    let store = backend.store.as_ref();
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let c = direct(store, &alice, &bob).await;
    let m = send(store, c, &alice, "secret one").await.message.id;
    message_op(store, &alice, c, m, edit("secret two"))
        .await
        .unwrap();
    message_op(store, &bob, c, m, react("😮", true))
        .await
        .unwrap();
    let deleted = message_op(store, &alice, c, m, MessageOp::Delete)
        .await
        .unwrap();
    assert!(matches!(deleted.event.change, Change::Deleted { message_id } if message_id == m));
    assert!(
        message_op(store, &alice, c, m, MessageOp::Delete)
            .await
            .is_none()
    );

    let tomb = store.message(bob.id, c, m).await.unwrap();
    assert_eq!(tomb.content, "");
    assert!(tomb.deleted_at.is_some());
    assert!(tomb.reactions.is_empty());
    let replay = store.inbox_after(bob.id, MessageId(0), 100).await.unwrap();
    let text = format!("{replay:?}");
    assert!(!text.contains("secret"), "replay keeps no text: {text}");
    assert!(replay.iter().any(|e| matches!(e,
        LogEntry::Change(c) if c.change == Change::Edited { message_id: m, content: None })));
}

/// Twenty people react with the same emoji at once: each event's count is its own, 1 to 20.
async fn reactions_racing_on_one_message_count_every_one_exactly_once(backend: &StoreBackend) {
    let store = backend.store.clone();
    let owner = user(store.as_ref(), "owner").await;
    let mut people = Vec::new();
    for i in 0..20 {
        people.push(user(store.as_ref(), &format!("fan{i}")).await);
    }
    let refs: Vec<&User> = people.iter().collect();
    let g = create_group(store.as_ref(), &owner, &refs, History::Shared).await;
    let m = send(store.as_ref(), g, &owner, "vote").await.message.id;
    let mut tasks = Vec::new();
    for person in people.clone() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            message_op(store.as_ref(), &person, g, m, react("👍", true))
                .await
                .unwrap()
        }));
    }
    let mut counts = BTreeSet::new();
    for task in tasks {
        let changed = task.await.unwrap();
        let Change::Reaction { count, .. } = changed.event.change else {
            panic!("a reaction");
        };
        counts.insert(count);
    }
    assert_eq!(counts, (1..=20).collect::<BTreeSet<i64>>());
    let read = store.message(owner.id, g, m).await.unwrap();
    assert_eq!(read.reactions[0].count, 20);
}

async fn a_reply_is_read_back_with_a_quote_that_follows_its_original(backend: &StoreBackend) {
    let store = backend.store.as_ref();
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let c = direct(store, &alice, &bob).await;
    let original = send(store, c, &alice, "question").await.message.id;
    let reply = store
        .append_message(NewMessage {
            reply_to: Some(original),
            ..new_message(c, bob.id, "answer")
        })
        .await
        .unwrap()
        .message;
    assert_eq!(reply.reply_to, Some(original));
    let read = store.message(alice.id, c, reply.id).await.unwrap();
    let quote = read.quote.expect("a quote");
    assert_eq!(quote.sender.username, "alice");
    assert_eq!(quote.preview.as_deref(), Some("question"));
    message_op(store, &alice, c, original, edit("better question"))
        .await
        .unwrap();
    let page = store.messages(alice.id, c, None, 10).await.unwrap();
    assert_eq!(
        page[0].quote.as_ref().unwrap().preview.as_deref(),
        Some("better question")
    );
    message_op(store, &alice, c, original, MessageOp::Delete)
        .await
        .unwrap();
    let replay = store.inbox_after(bob.id, MessageId(0), 100).await.unwrap();
    let LogEntry::Message(replayed) = &replay[1] else {
        panic!("the reply");
    };
    let quote = replayed.quote.as_ref().unwrap();
    assert!(quote.deleted);
    assert_eq!(quote.preview, None);
}

/// A receipt is an entry only when the marker moves and the reader shares receipts.
async fn a_read_marker_move_is_one_entry_and_an_unshared_read_writes_none(backend: &StoreBackend) {
    let store = backend.store.as_ref();
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let c = direct(store, &alice, &bob).await;
    let m = send(store, c, &alice, "seen?").await.message.id;
    let receipt = store
        .mark_read(bob.id, c)
        .await
        .unwrap()
        .expect("a receipt");
    assert_eq!(receipt.event.change, Change::Read { message_id: m });
    assert_eq!(receipt.event.actor.id, bob.id);
    let mut to: Vec<UserId> = receipt.recipients.iter().map(|r| r.user).collect();
    to.sort();
    assert_eq!(to, vec![alice.id, bob.id]);
    let head = store.head().await.unwrap();
    assert!(store.mark_read(bob.id, c).await.unwrap().is_none());
    assert_eq!(
        store.head().await.unwrap(),
        head,
        "a repeat takes no position"
    );

    store.set_read_receipts(bob.id, false).await.unwrap();
    let m2 = send(store, c, &alice, "and now?").await.message.id;
    assert!(store.mark_read(bob.id, c).await.unwrap().is_none());
    assert_eq!(
        store.head().await.unwrap(),
        m2,
        "no entry for an unshared read"
    );
    let (marker, newest, shares) = store.read_marker(bob.id, c).await.unwrap();
    assert_eq!(
        (marker, newest, shares),
        (m2, m2, false),
        "the marker moved all the same"
    );
    let replay = store
        .inbox_after(alice.id, MessageId(0), 100)
        .await
        .unwrap();
    let receipts = replay
        .iter()
        .filter(|e| matches!(e, LogEntry::Change(c) if c.change.event_name() == "read"))
        .count();
    assert_eq!(receipts, 1, "only the shared read is on the log");
}
