//! `Bus` contract: every function here runs against `LocalBus` and `NatsBus` (two NATS
//! connections sharing a random community prefix, so events really cross nodes).

use crate::support::BusBackend;
use chrono::Utc;
use courier::bus::{Published, Subscription};
use courier::model::{ConversationId, Event, Message, MessageId, Recipient, UserId};
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

macro_rules! bus_contract {
    ($($test:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::support::BusBackend::local().await).await;
                }
            )*
        }
        #[cfg(feature = "nats")]
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if !crate::reachable::nats(&crate::support::nats_url()) {
                        return;
                    }
                    super::$test(crate::support::BusBackend::nats().await).await;
                }
            )*
        }
    };
}

bus_contract!(
    publish_reaches_each_recipients_subscriptions_and_no_one_else,
    events_from_one_publisher_arrive_in_order,
    dropping_a_subscription_unsubscribes,
    a_full_buffer_ends_only_that_subscription_without_blocking_publish,
    an_event_published_as_soon_as_subscribe_returns_is_delivered,
    concurrent_first_subscriptions_of_one_user_all_receive_and_leave_cleanly,
    an_event_for_more_recipients_than_the_targeted_limit_reaches_each_once,
);

const ALICE: UserId = UserId(1);
const BOB: UserId = UserId(2);
const CAROL: UserId = UserId(3);
const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

fn event(id: i64, recipients: &[UserId]) -> Arc<Event> {
    let message = Message {
        id: MessageId(id),
        conversation_id: ConversationId(1),
        sender_id: recipients[0],
        content: format!("message {id}"),
        created_at: Utc::now(),
        ..Default::default()
    };
    let recipients = recipients
        .iter()
        .map(|&user| Recipient {
            user,
            prev: MessageId(id - 1),
        })
        .collect();
    Arc::new(Event::new(message, recipients))
}

async fn next(sub: &mut Subscription) -> Arc<Published> {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("an event in time")
        .expect("the subscription is open")
}

async fn nothing_arrives(sub: &mut Subscription) {
    if let Ok(Some(event)) = tokio::time::timeout(QUIET, sub.next()).await {
        panic!("unexpected event {:?}", event.message().unwrap().id);
    }
}

async fn publish_reaches_each_recipients_subscriptions_and_no_one_else(bus: BusBackend) {
    let mut alice_tab1 = bus.subscriber.subscribe(ALICE, 16).await.unwrap();
    let mut alice_tab2 = bus.subscriber.subscribe(ALICE, 16).await.unwrap();
    let mut bob = bus.subscriber.subscribe(BOB, 16).await.unwrap();
    let mut carol = bus.subscriber.subscribe(CAROL, 16).await.unwrap();
    bus.publisher
        .publish(event(7, &[ALICE, BOB]))
        .await
        .unwrap();
    let mut received = Vec::new();
    // Each subscription finds its own user's link (a stream looks up no one else's).
    for (user, sub) in [
        (ALICE, &mut alice_tab1),
        (ALICE, &mut alice_tab2),
        (BOB, &mut bob),
    ] {
        let got = next(sub).await;
        assert_eq!(got.message().unwrap().id, MessageId(7));
        assert_eq!(got.message().unwrap().content, "message 7");
        assert_eq!(got.recipient(user).unwrap().prev, MessageId(6));
        received.push(got);
    }
    // One `Published` per event per user on a node: what a user's streams derive from it
    // (the encoded SSE frame) is derived once. (NATS delivers a small event to a node once
    // per recipient with a stream there, each copy decoded on its own; see bus::nats.)
    assert!(
        Arc::ptr_eq(&received[0], &received[1]),
        "a user's subscriptions on a node share one Published"
    );
    nothing_arrives(&mut carol).await;
    nothing_arrives(&mut alice_tab1).await;
}

async fn events_from_one_publisher_arrive_in_order(bus: BusBackend) {
    let mut bob = bus.subscriber.subscribe(BOB, 1024).await.unwrap();
    for id in 1..=500 {
        bus.publisher
            .publish(event(id, &[ALICE, BOB]))
            .await
            .unwrap();
    }
    for id in 1..=500 {
        assert_eq!(next(&mut bob).await.message().unwrap().id, MessageId(id));
    }
}

async fn dropping_a_subscription_unsubscribes(bus: BusBackend) {
    let before = (bus.subscriber_count)();
    let kept = bus.subscriber.subscribe(ALICE, 4).await.unwrap();
    let dropped = bus.subscriber.subscribe(ALICE, 4).await.unwrap();
    assert_eq!((bus.subscriber_count)(), before + 2);
    drop(dropped);
    assert_eq!((bus.subscriber_count)(), before + 1);
    drop(kept);
    assert_eq!((bus.subscriber_count)(), before);
    // Publishing to nobody is fine.
    bus.publisher.publish(event(1, &[ALICE])).await.unwrap();
}

async fn a_full_buffer_ends_only_that_subscription_without_blocking_publish(bus: BusBackend) {
    let mut slow = bus.subscriber.subscribe(BOB, 2).await.unwrap();
    let mut fast = bus.subscriber.subscribe(BOB, 1024).await.unwrap();
    let mut other = bus.subscriber.subscribe(CAROL, 1024).await.unwrap();
    let started = Instant::now();
    for id in 1..=200 {
        bus.publisher
            .publish(event(id, &[BOB, CAROL]))
            .await
            .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "publish never waits on a reader ({:?})",
        started.elapsed()
    );
    for id in 1..=200 {
        assert_eq!(next(&mut fast).await.message().unwrap().id, MessageId(id));
        assert_eq!(next(&mut other).await.message().unwrap().id, MessageId(id));
    }
    // The slow reader got what fit, then its stream ended (it will resume from its cursor).
    assert_eq!(next(&mut slow).await.message().unwrap().id, MessageId(1));
    assert_eq!(next(&mut slow).await.message().unwrap().id, MessageId(2));
    assert!(
        tokio::time::timeout(WAIT, slow.next())
            .await
            .expect("the end in time")
            .is_none(),
        "an overflowed subscription ends"
    );
}

/// "Register before you read": once `subscribe` has returned, whatever any node publishes
/// reaches the subscription. Each round is a user the subscribing node has never listened
/// for, so each one races a fresh NATS SUB against the other node's publish.
async fn an_event_published_as_soon_as_subscribe_returns_is_delivered(bus: BusBackend) {
    for round in 0..100 {
        let user = UserId(1_000 + round);
        let mut sub = bus.subscriber.subscribe(user, 4).await.unwrap();
        bus.publisher
            .publish(event(round + 1, &[user]))
            .await
            .unwrap();
        let got = next(&mut sub).await;
        assert_eq!(
            got.message().unwrap().id,
            MessageId(round + 1),
            "round {round}"
        );
    }
}

/// Streams of one user opening together on a node: every one of them is registered when its
/// `subscribe` returns, and once all are gone (and one comes back) delivery still works.
async fn concurrent_first_subscriptions_of_one_user_all_receive_and_leave_cleanly(bus: BusBackend) {
    let before = (bus.subscriber_count)();
    let subscribing: Vec<_> = (0..8)
        .map(|_| {
            let bus = bus.subscriber.clone();
            tokio::spawn(async move { bus.subscribe(ALICE, 16).await.unwrap() })
        })
        .collect();
    let mut subs = Vec::new();
    for subscribing in subscribing {
        subs.push(subscribing.await.unwrap());
    }
    bus.publisher
        .publish(event(1, &[BOB, ALICE]))
        .await
        .unwrap();
    for sub in &mut subs {
        assert_eq!(next(sub).await.message().unwrap().id, MessageId(1));
    }
    drop(subs);
    assert_eq!((bus.subscriber_count)(), before);
    let mut again = bus.subscriber.subscribe(ALICE, 16).await.unwrap();
    bus.publisher.publish(event(2, &[ALICE])).await.unwrap();
    assert_eq!(next(&mut again).await.message().unwrap().id, MessageId(2));
    nothing_arrives(&mut again).await;
}

/// A large group's event (NATS: one community-wide copy) reaches every member's stream once,
/// with each member's own link.
async fn an_event_for_more_recipients_than_the_targeted_limit_reaches_each_once(bus: BusBackend) {
    let members: Vec<UserId> = (0..40).map(|i| UserId(500 + i)).collect();
    let mut subs = Vec::new();
    for &member in &members[..3] {
        subs.push((member, bus.subscriber.subscribe(member, 16).await.unwrap()));
    }
    bus.publisher.publish(event(9, &members)).await.unwrap();
    for (member, sub) in &mut subs {
        let got = next(sub).await;
        assert_eq!(got.message().unwrap().id, MessageId(9));
        assert_eq!(got.recipient(*member).unwrap().prev, MessageId(8));
        nothing_arrives(sub).await;
    }
}

/// A node receives the events of the users it has streams of, not those of anyone else:
/// it listens on a user's subject from the first of their streams to the last.
#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_node_receives_only_the_events_of_users_with_a_stream_there() {
    use courier::bus::Bus;
    crate::support::init_logs();
    if !crate::reachable::nats(&crate::support::nats_url()) {
        return;
    }
    let instance = crate::support::random_name("t");
    let publisher = crate::support::nats_node(&instance).await;
    let node = crate::support::nats_node(&instance).await;
    let listened = || node.traffic().unwrap().users_listened;
    let received = || node.traffic().unwrap().received_messages;
    assert_eq!(listened(), 0);
    let tab1 = node.subscribe(ALICE, 64).await.unwrap();
    let mut tab2 = node.subscribe(ALICE, 64).await.unwrap();
    assert_eq!(listened(), 1, "one NATS subscription per user per node");

    let before = received();
    for id in 1..=20 {
        publisher.publish(event(id, &[BOB, CAROL])).await.unwrap();
    }
    // From the same publisher, so it arrives after all of the above would have.
    publisher.publish(event(21, &[BOB, ALICE])).await.unwrap();
    assert_eq!(next(&mut tab2).await.message().unwrap().id, MessageId(21));
    assert_eq!(received() - before, 1, "only alice's copy of her event");

    drop(tab1);
    assert_eq!(listened(), 1, "alice still has a stream here");
    drop(tab2);
    assert_eq!(
        listened(),
        0,
        "the last stream gone, the node stops listening"
    );
}

/// Communities sharing one NATS server never see each other's events.
#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_communities_with_different_instances_do_not_cross() {
    use courier::bus::Bus;
    crate::support::init_logs();
    if !crate::reachable::nats(&crate::support::nats_url()) {
        return;
    }
    let ours = crate::support::nats_node(&crate::support::random_name("t")).await;
    let theirs = crate::support::nats_node(&crate::support::random_name("t")).await;
    let listener = crate::support::nats_node(ours.subject().split('.').nth(1).unwrap()).await;
    let mut mine = listener.subscribe(BOB, 16).await.unwrap();
    theirs.publish(event(1, &[BOB])).await.unwrap();
    ours.publish(event(2, &[BOB])).await.unwrap();
    assert_eq!(next(&mut mine).await.message().unwrap().id, MessageId(2));
    nothing_arrives(&mut mine).await;
}

/// With NATS down, publish returns at once (queued or refused), and `ping` says so.
#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_publish_returns_quickly_while_nats_is_down() {
    use courier::bus::Bus;
    if !crate::reachable::nats_server_installed() {
        return;
    }
    let server = crate::services::NatsServer::start();
    let instance = crate::support::random_name("t");
    let publisher = courier::bus::NatsBus::connect(&server.url(), &instance)
        .await
        .unwrap();
    let subscriber = courier::bus::NatsBus::connect(&server.url(), &instance)
        .await
        .unwrap();
    publisher.ping().await.unwrap();
    let mut bob = subscriber.subscribe(BOB, 100_000).await.unwrap();
    let mut local = publisher.subscribe(BOB, 100_000).await.unwrap();

    let port = server.port();
    drop(server);
    let deadline = Instant::now() + WAIT;
    while publisher.ping().await.is_ok() {
        assert!(Instant::now() < deadline, "ping notices the outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    for id in 1..=100 {
        // Queued for after the reconnect, or refused: either way, quickly.
        let _ = publisher.publish(event(id, &[ALICE, BOB])).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "100 publishes during an outage took {:?}",
        started.elapsed()
    );
    // The publishing node's own streams are served without NATS.
    assert_eq!(next(&mut local).await.message().unwrap().id, MessageId(1));

    let _server = crate::services::NatsServer::start_on(port);
    let deadline = Instant::now() + WAIT;
    while publisher.ping().await.is_err() || subscriber.ping().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "both nodes reconnect by themselves"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Events keep flowing after the reconnect (anything queued during the outage may come
    // first). `Connected` does not mean the subscriber's SUB is registered again on the new
    // server, so an event published at once may reach no one: publish fresh ones until one
    // arrives, and fail only if none does within WAIT.
    let deadline = Instant::now() + WAIT;
    let mut probe = 1000;
    'flowing: loop {
        assert!(
            Instant::now() < deadline,
            "events flow again after the reconnect"
        );
        publisher
            .publish(event(probe, &[ALICE, BOB]))
            .await
            .unwrap();
        probe += 1;
        let round = tokio::time::Instant::now() + Duration::from_millis(100);
        while let Ok(got) = tokio::time::timeout_at(round, bob.next()).await {
            let got = got.expect("the subscription stays open through the outage");
            if got.message().unwrap().id >= MessageId(1000) {
                break 'flowing;
            }
        }
    }
}
