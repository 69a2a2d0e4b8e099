//! `PresenceStore` contract, on SQLite and PostgreSQL alike.

use crate::support::StoreBackend;
use chrono::{DateTime, Utc};
use courier::model::{UserId, Username};
use courier::store::{PresenceStore, Store, StoreError};

async fn user(store: &dyn Store, raw: &str) -> UserId {
    let name = Username::parse(raw).unwrap();
    store.find_or_create_user(&name).await.unwrap().id
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

async fn members_contacts_and_last_seen(backend: &StoreBackend) {
    let store = backend.store.as_ref();
    let (alice, bob, carol, mallory) = (
        user(store, "alice").await,
        user(store, "bob").await,
        user(store, "carol").await,
        user(store, "mallory").await,
    );
    let (with_bob, _) = store.find_or_create_direct(alice, bob).await.unwrap();
    store.find_or_create_direct(alice, carol).await.unwrap();

    let mut members: Vec<UserId> = PresenceStore::member_users(store, bob, with_bob)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    members.sort();
    assert_eq!(members, [alice, bob]);
    assert!(matches!(
        store.member_users(mallory, with_bob).await,
        Err(StoreError::NotFound)
    ));

    let mut contacts = store.contacts(&[alice, mallory]).await.unwrap();
    contacts.sort();
    assert_eq!(contacts, [(alice, bob), (alice, carol)]);

    let fresh = store.last_seen(&[bob]).await.unwrap();
    assert_eq!((fresh[0].at, fresh[0].shown), (None, true));
    store
        .touch_last_seen(&[(bob, at(2_000)), (carol, at(3_000))])
        .await
        .unwrap();
    // Never backwards.
    store.touch_last_seen(&[(bob, at(1_000))]).await.unwrap();
    store.set_show_last_seen(carol, false).await.unwrap();
    let mut seen = store.last_seen(&[bob, carol]).await.unwrap();
    seen.sort_by_key(|s| s.user);
    assert_eq!(
        seen.iter()
            .map(|s| (s.user, s.at, s.shown))
            .collect::<Vec<_>>(),
        [
            (bob, Some(at(2_000)), true),
            (carol, Some(at(3_000)), false)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_members_contacts_and_last_seen() {
    let backend = StoreBackend::sqlite().await;
    members_contacts_and_last_seen(&backend).await;
    backend.finish().await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_members_contacts_and_last_seen() {
    if !crate::reachable::postgres(&crate::support::pg::admin_url()) {
        return;
    }
    let backend = StoreBackend::postgres().await;
    members_contacts_and_last_seen(&backend).await;
    backend.finish().await;
}
