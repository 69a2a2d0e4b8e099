//! Typing and presence across nodes, and a SIGKILLed node's users going offline in time.

use super::machine_services;
use crate::harness::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// `--presence-heartbeat` for these tests; a silent node is dropped after three of them.
const PRESENCE_HEARTBEAT: Duration = Duration::from_secs(1);
/// The stated bound: a dead node's users are offline everywhere within 3 heartbeats and one
/// 100 ms tick of its death (see `service::presence`).
const OFFLINE_BOUND: Duration = Duration::from_millis(3 * 1000 + 100);
/// A stream may hold a signal back this long (`realtime::SIGNAL_HOLD`).
const SIGNAL_HOLD: Duration = Duration::from_millis(500);
/// Scheduling slack on this shared 2-core machine, on top of the bound.
const SLACK: Duration = Duration::from_secs(2);
/// How long to wait for what should happen promptly.
const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_typing_cross_nodes_and_a_killed_nodes_users_go_offline_within_the_bound() {
    init_logs();
    if !machine_services() {
        return;
    }
    let db = Database::create(&machine_postgres()).await;
    let heartbeat = format!("{}ms", PRESENCE_HEARTBEAT.as_millis());
    let flags = [
        "--presence-heartbeat",
        &heartbeat,
        "--presence-grace",
        "200ms",
    ];
    let mut cluster = Cluster::start_with(3, &db.url, &machine_nats(), "60s", &flags);
    let [a, b, c] = [0, 1, 2].map(|i| cluster.nodes[i].base.clone());
    let client = http();
    let alice = login(&client, &a, "alice").await;
    let bob = login(&client, &b, "bob").await;
    let carol = login(&client, &c, "carol").await;
    let bob_id = user_id(&client, &b, &bob).await;
    let carol_id = user_id(&client, &c, &carol).await;
    let with_bob = open_conversation(&client, &a, &alice, &bob).await;
    open_conversation(&client, &a, &alice, &carol).await;

    let mut alice_stream = SseStream::open(&client, &a, &alice, None, 0)
        .await
        .unwrap()
        .with_signals();
    // Bob connects to node b: alice, on node a, hears he is online.
    let _bob_stream = SseStream::open(&client, &b, &bob, None, 0).await.unwrap();
    let is = |user: &str, state: &str| {
        let (user, state) = (user.to_owned(), state.to_owned());
        move |data: &Value| data["userId"] == user.as_str() && data["state"] == state.as_str()
    };
    signal(
        &mut alice_stream,
        "presence",
        PATIENCE,
        is(&bob_id, "online"),
    )
    .await;

    // Bob types through node c: alice hears it on node a.
    let typing = client
        .post(format!("{c}/api/conversations/{with_bob}/typing"))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(typing.status(), 204);
    let heard = signal(&mut alice_stream, "typing", PATIENCE, |d| {
        d["typing"] == true
    })
    .await;
    assert_eq!(heard["userId"], bob_id.as_str());
    assert_eq!(heard["conversationId"], with_bob.as_str());

    // Carol comes and goes cleanly on node c: offline once her grace period is over.
    let carol_stream = SseStream::open(&client, &c, &carol, None, 0).await.unwrap();
    signal(
        &mut alice_stream,
        "presence",
        PATIENCE,
        is(&carol_id, "online"),
    )
    .await;
    drop(carol_stream);
    let gone = signal(
        &mut alice_stream,
        "presence",
        PATIENCE,
        is(&carol_id, "offline"),
    )
    .await;
    assert!(gone["lastSeenAt"].is_string(), "{gone}");

    // Node b dies without a word: bob goes offline everywhere within the bound.
    let killed = Instant::now();
    cluster.nodes[1].kill();
    let offline = signal(
        &mut alice_stream,
        "presence",
        OFFLINE_BOUND + SIGNAL_HOLD + SLACK,
        is(&bob_id, "offline"),
    )
    .await;
    let took = killed.elapsed();
    assert!(offline["lastSeenAt"].is_string(), "{offline}");
    eprintln!("bob offline {took:?} after node b was killed (bound {OFFLINE_BOUND:?})");

    // Every surviving node shows him offline within the same bound. Each node drops the dead
    // one on its own clock (heard last at slightly different times, checked every tick), so
    // the other survivor may lag the one alice's stream is on by a tick: ask until the bound.
    for base in [&a, &c] {
        loop {
            let other: Value = client
                .get(format!(
                    "{base}/api/conversations/{with_bob}/other_participant"
                ))
                .bearer_auth(&alice.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if other["presence"] == "offline" {
                break;
            }
            assert!(
                killed.elapsed() < OFFLINE_BOUND + SLACK,
                "on {base}: still {} {:?} after node b was killed",
                other["presence"],
                killed.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(cluster);
    db.drop_database().await;
}
