//! Multi-node tests: real `courier` processes sharing one PostgreSQL database and one NATS.
//!
//! Most tests use the machine's PostgreSQL and NATS (`COURIER_TEST_POSTGRES_URL`,
//! `COURIER_TEST_NATS_URL`) with a fresh database each; the outage tests start private
//! servers they can stop and restart.

#![cfg(all(feature = "postgres", feature = "nats"))]

mod fanout;
mod harness;
mod presence;
#[path = "../common/services.rs"]
mod reachable;
#[path = "../contract/services.rs"]
mod services;
mod setup;

use harness::*;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DELIVERY: Duration = Duration::from_secs(30);

/// The machine's PostgreSQL and NATS answer (else the test is skipped, or fails in CI).
fn machine_services() -> bool {
    reachable::postgres(&machine_postgres()) && reachable::nats(&machine_nats())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_one_node_receives_messages_posted_on_the_others() {
    init_logs();
    if !machine_services() {
        return;
    }
    let db = Database::create(&machine_postgres()).await;
    // A long heartbeat: what arrives in time came over NATS, not from a store poll.
    let cluster = Cluster::start(3, &db.url, &machine_nats(), "60s");
    let [a, b, c] = [0, 1, 2].map(|i| cluster.nodes[i].base.clone());
    let client = http();
    let alice = login(&client, &a, "alice").await;
    let bob = login(&client, &b, "bob").await;
    let carol = login(&client, &c, "carol").await;
    let with_bob = open_conversation(&client, &b, &bob, &alice).await;
    let with_carol = open_conversation(&client, &c, &carol, &alice).await;

    let subscriber = Subscriber::start(alice.clone(), vec![a.clone()], Hop::Never).await;
    let mut expected = BTreeSet::new();
    for i in 0..5 {
        expected.insert(
            send(&client, &b, &bob, &with_bob, &format!("b{i}"), None)
                .await
                .unwrap(),
        );
        expected.insert(
            send(&client, &c, &carol, &with_carol, &format!("c{i}"), None)
                .await
                .unwrap(),
        );
    }
    let delivered = subscriber
        .wait_for(&expected, Duration::from_secs(10))
        .await;
    let resets = subscriber.resets.lock().unwrap().clone();
    assert_exactly_once_in_order("alice", &delivered, &resets, &expected);
    assert_eq!(subscriber.connections(), 1, "one connection throughout");
    subscriber.stop().await;
    drop(cluster);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_reconnects_to_another_node_with_its_last_event_id_misses_nothing() {
    init_logs();
    if !machine_services() {
        return;
    }
    let db = Database::create(&machine_postgres()).await;
    let cluster = Cluster::start(3, &db.url, &machine_nats(), "60s");
    let [a, b, c] = [0, 1, 2].map(|i| cluster.nodes[i].base.clone());
    let client = http();
    let alice = login(&client, &a, "alice").await;
    let bob = login(&client, &c, "bob").await;
    let conversation = open_conversation(&client, &c, &bob, &alice).await;

    let mut stream = SseStream::open(&client, &a, &alice, None, 0).await.unwrap();
    let mut before = Vec::new();
    for i in 0..3 {
        before.push(
            send(
                &client,
                &c,
                &bob,
                &conversation,
                &format!("first {i}"),
                None,
            )
            .await
            .unwrap(),
        );
    }
    let mut last = String::new();
    for id in &before {
        match tokio::time::timeout(DELIVERY, stream.next()).await.unwrap() {
            Some(SseItem::Message(m)) => {
                assert_eq!(m.id, *id);
                last = m.cursor;
            }
            _ => panic!("expected message {id}"),
        }
    }
    drop(stream);

    // Sent while alice is away, on yet another node.
    let mut missed = Vec::new();
    for i in 0..5 {
        missed.push(
            send(&client, &a, &bob, &conversation, &format!("away {i}"), None)
                .await
                .unwrap(),
        );
    }
    let mut stream = SseStream::open(&client, &b, &alice, Some(&last), 1)
        .await
        .unwrap();
    let live = send(&client, &c, &bob, &conversation, "live", None)
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < missed.len() + 1 {
        match tokio::time::timeout(DELIVERY, stream.next()).await.unwrap() {
            Some(SseItem::Message(m)) => got.push(m.id),
            Some(SseItem::Reset(reason)) => panic!("cursor refused on another node: {reason}"),
            Some(SseItem::Change(cursor, data)) => panic!("unexpected change {cursor}: {data}"),
            Some(SseItem::Signal(..)) => unreachable!("signals were not asked for"),
            None => panic!("stream ended"),
        }
    }
    let expected: Vec<i64> = missed.into_iter().chain([live]).collect();
    assert_eq!(got, expected, "the gap, then live, each once");
    drop(cluster);
    db.drop_database().await;
}

/// The test: many concurrent senders into shared conversations, spread over the
/// nodes, while subscribers keep disconnecting and resuming on different nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_subscribers_hopping_between_nodes_get_every_message_once_in_order()
{
    init_logs();
    if !machine_services() {
        return;
    }
    let db = Database::create(&machine_postgres()).await;
    let cluster = Cluster::start(3, &db.url, &machine_nats(), "1s");
    let bases = cluster.bases();
    let client = http();
    let hub = login(&client, &bases[0], "hub").await;
    let mut peers = Vec::new();
    let mut conversations = Vec::new();
    for i in 0..4 {
        let peer = login(&client, &bases[i % 3], &format!("peer{i}")).await;
        conversations.push(open_conversation(&client, &bases[i % 3], &peer, &hub).await);
        peers.push(peer);
    }
    let hub_sub = Subscriber::start(hub.clone(), bases.clone(), Hop::Every(12)).await;
    let peer_sub = Subscriber::start(peers[0].clone(), bases.clone(), Hop::Every(5)).await;

    // Two writers per conversation (the peer and the hub), each spreading over the nodes.
    let per_writer = 40;
    let mut writers = Vec::new();
    for (i, conversation) in conversations.iter().enumerate() {
        for sender in [peers[i].clone(), hub.clone()] {
            let (client, bases, conversation) =
                (client.clone(), bases.clone(), conversation.clone());
            writers.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..per_writer {
                    let base = &bases[(i + n) % bases.len()];
                    let text = format!("{} #{n}", sender.username);
                    ids.push(
                        send(&client, base, &sender, &conversation, &text, None)
                            .await
                            .unwrap(),
                    );
                }
                (conversation, ids)
            }));
        }
    }
    let mut all = BTreeSet::new();
    let mut first_conversation = BTreeSet::new();
    for writer in writers {
        let (conversation, ids) = writer.await.unwrap();
        if conversation == conversations[0] {
            first_conversation.extend(ids.iter().copied());
        }
        all.extend(ids);
    }
    assert_eq!(all.len(), conversations.len() * 2 * per_writer);

    let hub_got = hub_sub.wait_for(&all, DELIVERY).await;
    let peer_got = peer_sub.wait_for(&first_conversation, DELIVERY).await;
    let (hub_resets, peer_resets) = (
        hub_sub.resets.lock().unwrap().clone(),
        peer_sub.resets.lock().unwrap().clone(),
    );
    assert_exactly_once_in_order("hub", &hub_got, &hub_resets, &all);
    assert_exactly_once_in_order("peer0", &peer_got, &peer_resets, &first_conversation);
    assert!(
        hub_sub.connections() > 5,
        "the hub resumed many times ({})",
        hub_sub.connections()
    );
    assert!(peer_sub.connections() > 5);
    hub_sub.stop().await;
    peer_sub.stop().await;
    drop(cluster);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_traffic_loses_no_acknowledged_message() {
    init_logs();
    if !machine_services() {
        return;
    }
    let db = Database::create(&machine_postgres()).await;
    let mut cluster = Cluster::start(3, &db.url, &machine_nats(), "1s");
    let bases = cluster.bases();
    let client = http();
    let hub = login(&client, &bases[0], "hub").await;
    let mut peers = Vec::new();
    let mut conversations = Vec::new();
    for i in 0..3 {
        let peer = login(&client, &bases[0], &format!("peer{i}")).await;
        conversations.push(open_conversation(&client, &bases[0], &peer, &hub).await);
        peers.push(peer);
    }
    // Each subscriber starts on a different node; the hub's starts on the doomed one.
    let rotate = |k: usize| -> Vec<String> { (0..3).map(|i| bases[(i + k) % 3].clone()).collect() };
    let hub_sub = Subscriber::start(hub.clone(), rotate(2), Hop::Never).await;
    let peer_subs = [
        Subscriber::start(peers[0].clone(), rotate(0), Hop::Never).await,
        Subscriber::start(peers[1].clone(), rotate(1), Hop::Never).await,
    ];

    let live = Arc::new(std::sync::Mutex::new(bases.clone()));
    let mut writers = Vec::new();
    for (i, conversation) in conversations.iter().enumerate() {
        for sender in [peers[i].clone(), hub.clone()] {
            let (client, live, conversation) = (client.clone(), live.clone(), conversation.clone());
            writers.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..60usize {
                    let text = format!("{} #{n}", sender.username);
                    let key = random_name("k");
                    // A client whose POST broke retries on another node with the same key.
                    for attempt in 0..20usize {
                        let base = {
                            let live = live.lock().unwrap();
                            live[(i + n + attempt) % live.len()].clone()
                        };
                        match send(&client, &base, &sender, &conversation, &text, Some(&key)).await
                        {
                            Ok(id) => {
                                acked.push(id);
                                break;
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (conversation, acked)
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    cluster.nodes[2].kill();
    let dead = bases[2].clone();
    live.lock().unwrap().retain(|b| *b != dead);
    for sub in [&hub_sub, &peer_subs[0], &peer_subs[1]] {
        sub.nodes.lock().unwrap().retain(|b| *b != dead);
    }

    let mut all = BTreeSet::new();
    let mut by_conversation = vec![BTreeSet::new(); conversations.len()];
    for writer in writers {
        let (conversation, acked) = writer.await.unwrap();
        let index = conversations
            .iter()
            .position(|c| *c == conversation)
            .unwrap();
        by_conversation[index].extend(acked.iter().copied());
        all.extend(acked);
    }
    assert_eq!(
        all.len(),
        conversations.len() * 2 * 60,
        "every send was acknowledged in the end"
    );

    let hub_got = hub_sub.wait_for(&all, DELIVERY).await;
    assert_exactly_once_in_order("hub", &hub_got, &hub_sub.resets.lock().unwrap(), &all);
    assert!(hub_sub.connections() >= 2, "the hub's node died under it");
    for (i, sub) in peer_subs.iter().enumerate() {
        let got = sub.wait_for(&by_conversation[i], DELIVERY).await;
        let resets = sub.resets.lock().unwrap().clone();
        assert_exactly_once_in_order(&format!("peer{i}"), &got, &resets, &by_conversation[i]);
    }
    hub_sub.stop().await;
    for sub in peer_subs {
        sub.stop().await;
    }
    drop(cluster);
    db.drop_database().await;
}

async fn status(client: &reqwest::Client, url: &str) -> u16 {
    match client.get(url).timeout(Duration::from_secs(5)).send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// The `status` field of `/readyz` ("ready", "degraded", "unavailable"), or "" if unreachable.
async fn readiness(client: &reqwest::Client, base: &str) -> String {
    let Ok(response) = client
        .get(format!("{base}/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    else {
        return String::new();
    };
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    body["status"].as_str().unwrap_or_default().to_owned()
}

async fn eventually(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_down_sends_succeed_and_streams_catch_up_without_reconnecting() {
    init_logs();
    if !machine_services() || !reachable::nats_server_installed() {
        return;
    }
    let db = Database::create(&machine_postgres()).await;
    let nats = services::NatsServer::start();
    let port = nats.port();
    let cluster = Cluster::start(2, &db.url, &nats.url(), "1s");
    let [a, b] = [0, 1].map(|i| cluster.nodes[i].base.clone());
    let client = http();
    let alice = login(&client, &a, "alice").await;
    let bob = login(&client, &b, "bob").await;
    let conversation = open_conversation(&client, &b, &bob, &alice).await;
    let subscriber = Subscriber::start(alice.clone(), vec![a.clone()], Hop::Never).await;

    let mut expected = BTreeSet::new();
    expected.insert(
        send(&client, &b, &bob, &conversation, "before", None)
            .await
            .unwrap(),
    );
    subscriber.wait_for(&expected, DELIVERY).await;

    drop(nats);
    eventually(
        "node B reports NATS down (degraded, still ready: it serves from the store)",
        Duration::from_secs(10),
        async || {
            status(&client, &format!("{b}/readyz")).await == 200
                && readiness(&client, &b).await == "degraded"
        },
    )
    .await;
    for i in 0..5 {
        let started = Instant::now();
        let id = send(
            &client,
            &b,
            &bob,
            &conversation,
            &format!("during {i}"),
            None,
        )
        .await;
        expected.insert(id.expect("a send is accepted while NATS is down"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "and answered promptly"
        );
    }
    // No bus: the stream's heartbeat head check finds them in the store.
    let got = subscriber
        .wait_for(&expected, Duration::from_secs(10))
        .await;
    let got_ids: BTreeSet<i64> = got.iter().map(|d| d.id).collect();
    assert!(expected.is_subset(&got_ids), "caught up while NATS is down");

    let _nats = services::NatsServer::start_on(port);
    eventually(
        "both nodes reconnect to NATS",
        Duration::from_secs(15),
        async || readiness(&client, &a).await == "ready" && readiness(&client, &b).await == "ready",
    )
    .await;
    for i in 0..5 {
        expected.insert(
            send(
                &client,
                &b,
                &bob,
                &conversation,
                &format!("after {i}"),
                None,
            )
            .await
            .unwrap(),
        );
    }
    let got = subscriber.wait_for(&expected, DELIVERY).await;
    let resets = subscriber.resets.lock().unwrap().clone();
    assert_exactly_once_in_order("alice", &got, &resets, &expected);
    assert_eq!(
        subscriber.connections(),
        1,
        "the client never had to reconnect"
    );
    subscriber.stop().await;
    drop(cluster);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_requests_get_503_and_the_node_recovers_without_restart() {
    init_logs();
    if !machine_services() || !reachable::private_postgres_possible() {
        return;
    }
    let mut pg = tokio::task::spawn_blocking(services::PgServer::start)
        .await
        .unwrap();
    let db = Database::create(&pg.admin_url()).await;
    let cluster = Cluster::start(1, &db.url, &machine_nats(), "1s");
    let a = cluster.nodes[0].base.clone();
    let client = http();
    let alice = login(&client, &a, "alice").await;
    let bob = login(&client, &a, "bob").await;
    let conversation = open_conversation(&client, &a, &bob, &alice).await;
    let subscriber = Subscriber::start(alice.clone(), vec![a.clone()], Hop::Never).await;
    let mut expected = BTreeSet::new();
    expected.insert(
        send(&client, &a, &bob, &conversation, "before", None)
            .await
            .unwrap(),
    );

    pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    let started = Instant::now();
    let (code, body) = send(&client, &a, &bob, &conversation, "during", None)
        .await
        .expect_err("no database, no send");
    assert_eq!(code, 503, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("a JSON error body");
    assert!(json["error"].is_string(), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered within the acquire timeout"
    );
    assert_eq!(status(&client, &format!("{a}/readyz")).await, 503);
    assert_eq!(
        status(&client, &format!("{a}/healthz")).await,
        200,
        "alive, just not ready"
    );

    pg = tokio::task::spawn_blocking(move || {
        pg.resume();
        pg
    })
    .await
    .unwrap();
    let mut recovered = None;
    eventually("sends succeed again", Duration::from_secs(20), async || {
        recovered = send(&client, &a, &bob, &conversation, "after", Some("after-1"))
            .await
            .ok();
        recovered.is_some()
    })
    .await;
    expected.insert(recovered.unwrap());
    assert_eq!(status(&client, &format!("{a}/readyz")).await, 200);
    let got = subscriber.wait_for(&expected, DELIVERY).await;
    let resets = subscriber.resets.lock().unwrap().clone();
    assert_exactly_once_in_order("alice", &got, &resets, &expected);
    subscriber.stop().await;
    drop(cluster);
    db.drop_database().await;
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_on_one_node_ends_the_session_on_the_others_at_once() {
    init_logs();
    if !machine_services() {
        return;
    }
    let db = Database::create(&machine_postgres()).await;
    let cluster = Cluster::start(2, &db.url, &machine_nats(), "60s");
    let [a, b] = [0, 1].map(|i| cluster.nodes[i].base.clone());
    let client = http();
    let alice = login(&client, &a, "alice").await;
    let auth_user = |base: &str| {
        client
            .get(format!("{base}/api/auth_user"))
            .bearer_auth(&alice.token)
            .send()
    };
    // Node B now trusts the session (its cache keeps it for a second).
    assert_eq!(auth_user(&b).await.unwrap().status(), 200);
    let out = client
        .post(format!("{a}/api/logout"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    // The revocation crosses NATS and evicts B's cached session well before it would expire.
    eventually(
        "node B refuses the signed-out token",
        Duration::from_millis(500),
        async || auth_user(&b).await.unwrap().status() == 401,
    )
    .await;
    drop(cluster);
    db.drop_database().await;
}

/// Group traffic across nodes: two members post through every node while the owner removes
/// and re-adds bob through another, and bob's stream hops between nodes. Bob gets exactly
/// the messages between his own `added` and `removed` events, once each, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_on_one_node_decide_who_gets_sends_made_on_the_others() {
    init_logs();
    if !machine_services() {
        return;
    }
    let db = Database::create(&machine_postgres()).await;
    let cluster = Cluster::start(3, &db.url, &machine_nats(), "1s");
    let bases = cluster.bases();
    let client = http();
    let alice = login(&client, &bases[0], "alice").await;
    let bob = login(&client, &bases[1], "bob").await;
    let carol = login(&client, &bases[2], "carol").await;
    let bob_sub = Subscriber::start(bob.clone(), bases.clone(), Hop::Every(7)).await;

    let created: serde_json::Value = client
        .post(format!("{}/api/conversations", bases[0]))
        .bearer_auth(&alice.token)
        .json(&serde_json::json!({ "usernames": ["bob", "carol"], "title": "Across nodes" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let group = created["id"].as_str().unwrap().to_owned();

    let mut writers = Vec::new();
    for (i, sender) in [alice.clone(), carol.clone()].into_iter().enumerate() {
        let (client, bases, group) = (client.clone(), bases.clone(), group.clone());
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..40 {
                let base = &bases[(i + n) % bases.len()];
                let text = format!("{} #{n}", sender.username);
                ids.push(
                    send(&client, base, &sender, &group, &text, None)
                        .await
                        .unwrap(),
                );
            }
            ids
        }));
    }
    let member_url =
        |bob_id: &str| format!("{}/api/conversations/{group}/members/{bob_id}", bases[2]);
    let bob_id = {
        let me: serde_json::Value = client
            .get(format!("{}/api/auth_user", bases[1]))
            .bearer_auth(&bob.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        me["id"].as_str().unwrap().to_owned()
    };
    for _ in 0..8 {
        let removed = client
            .delete(member_url(&bob_id))
            .bearer_auth(&alice.token)
            .send()
            .await
            .unwrap();
        assert_eq!(removed.status(), 204);
        let added = client
            .post(format!("{}/api/conversations/{group}/members", bases[2]))
            .bearer_auth(&alice.token)
            .json(&serde_json::json!({ "usernames": ["bob"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(added.status(), 200);
    }
    let mut sent = BTreeSet::new();
    for writer in writers {
        sent.extend(writer.await.unwrap());
    }
    let end = send(&client, &bases[1], &alice, &group, "end", None)
        .await
        .unwrap();
    sent.insert(end);

    let delivered = bob_sub.wait_for(&BTreeSet::from([end]), DELIVERY).await;
    let changes = bob_sub.changes.lock().unwrap().clone();
    let resets = bob_sub.resets.lock().unwrap().clone();
    let mut spans = Vec::new();
    let mut from = None;
    for (position, data) in &changes {
        let about_bob = data["users"]
            .as_array()
            .is_some_and(|users| users.iter().any(|u| u["username"] == "bob"));
        match data["change"].as_str().unwrap() {
            "created" => from = Some(*position),
            "added" if about_bob => from = Some(*position),
            "removed" if about_bob => spans.push((from.take().expect("a member"), *position)),
            _ => {}
        }
    }
    assert_eq!(spans.len(), 8, "bob saw every removal: {changes:?}");
    let open = from.expect("a member at the end");
    let expected: BTreeSet<i64> = sent
        .iter()
        .copied()
        .filter(|&p| spans.iter().any(|&(a, b)| a < p && p < b) || p > open)
        .collect();
    assert_exactly_once_in_order("bob", &delivered, &resets, &expected);
    let got: BTreeSet<i64> = delivered.iter().map(|d| d.id).collect();
    let leaked: Vec<_> = got.difference(&expected).collect();
    assert!(
        leaked.is_empty(),
        "bob got messages sent while he was out: {leaked:?}"
    );
    bob_sub.stop().await;
    drop(cluster);
    db.drop_database().await;
}

/// Edits, reactions and deletes made on different nodes reach a stream on a third node live,
/// in log order, and again when it resumes on yet another node from before them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_edits_deletes_and_reactions_reach_other_nodes_live_and_on_resume() {
    init_logs();
    if !machine_services() {
        return;
    }
    let db = Database::create(&machine_postgres()).await;
    let cluster = Cluster::start(3, &db.url, &machine_nats(), "1s");
    let bases = cluster.bases();
    let client = http();
    let alice = login(&client, &bases[0], "alice").await;
    let bob = login(&client, &bases[1], "bob").await;
    let conversation = open_conversation(&client, &bases[0], &alice, &bob).await;
    let mut live = SseStream::open(&client, &bases[2], &bob, None, 0)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for text in ["to edit", "to react to", "to delete"] {
        ids.push(
            send(&client, &bases[0], &alice, &conversation, text, None)
                .await
                .unwrap(),
        );
    }
    // Resuming from the last message replays exactly what follows it.
    let cursor = loop {
        match tokio::time::timeout(DELIVERY, live.next()).await.unwrap() {
            Some(SseItem::Message(d)) if d.id == ids[2] => break d.cursor,
            Some(_) => continue,
            None => panic!("stream ended"),
        }
    };

    let url = |base: &str, id: i64, tail: &str| {
        format!("{base}/api/conversations/{conversation}/messages/{id}{tail}")
    };
    let edited = client
        .patch(url(&bases[1], ids[0], ""))
        .bearer_auth(&alice.token)
        .json(&serde_json::json!({ "content": "edited on node 1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(edited.status(), 200);
    let reacted = client
        .put(url(&bases[2], ids[1], "/reactions/%F0%9F%91%8D"))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(reacted.status(), 204);
    let deleted = client
        .delete(url(&bases[0], ids[2], ""))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    let read_three = async |stream: &mut SseStream| {
        let mut got = Vec::new();
        while got.len() < 3 {
            match tokio::time::timeout(DELIVERY, stream.next()).await.unwrap() {
                Some(SseItem::Change(cursor, data)) => got.push((position_of(&cursor), data)),
                Some(SseItem::Message(_) | SseItem::Signal(..)) => {}
                Some(SseItem::Reset(why)) => panic!("reset: {why}"),
                None => panic!("stream ended"),
            }
        }
        got
    };
    let check = |got: &[(i64, serde_json::Value)]| {
        let positions: Vec<i64> = got.iter().map(|(p, _)| *p).collect();
        assert!(positions.is_sorted(), "log order: {positions:?}");
        assert_eq!(got[0].1["change"], "edited");
        assert_eq!(got[0].1["content"], "edited on node 1");
        assert_eq!(got[1].1["change"], "reaction");
        assert_eq!(got[1].1["count"], 1);
        assert_eq!(got[2].1["change"], "deleted");
        assert_eq!(got[2].1["messageId"], ids[2].to_string());
        positions
    };
    let live_positions = check(&read_three(&mut live).await);
    drop(live);

    let mut resumed = SseStream::open(&client, &bases[1], &bob, Some(&cursor), 1)
        .await
        .unwrap();
    let resumed_positions = check(&read_three(&mut resumed).await);
    assert_eq!(
        live_positions, resumed_positions,
        "the same entries on resume"
    );
    drop(resumed);
    drop(cluster);
    db.drop_database().await;
}
