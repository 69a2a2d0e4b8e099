//! Targeted fan-out (bus::nats): a node receives over NATS only what its own streams need,
//! a stream is registered cluster-wide as soon as it opens, and the bytes each node receives
//! with and without per-user subjects (an ignored test that prints them).

use super::{DELIVERY, machine_services};
use crate::harness::*;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::time::Duration;

const RECEIVED_MESSAGES: &str = "courier_nats_received_messages_total";
const RECEIVED_BYTES: &str = "courier_nats_received_bytes_total";
const SENT_MESSAGES: &str = "courier_nats_sent_messages_total";
const SENT_BYTES: &str = "courier_nats_sent_bytes_total";
/// The benchmark control: every event to every node, as before per-user subjects.
const BROADCAST: (&str, &str) = ("COURIER_BENCH_BROADCAST_BUS", "1");
const PATIENCE: Duration = Duration::from_secs(10);

/// Reads `stream` until every id in `ids` has arrived (each within `DELIVERY`).
async fn receive_all(who: &str, stream: &mut SseStream, ids: &BTreeSet<i64>) {
    let mut missing = ids.clone();
    while !missing.is_empty() {
        match tokio::time::timeout(DELIVERY, stream.next()).await {
            Err(_) => panic!(
                "{who}: {} messages never arrived: {missing:?}",
                missing.len()
            ),
            Ok(None) => panic!("{who}: the stream ended"),
            Ok(Some(SseItem::Message(m))) => {
                missing.remove(&m.id);
            }
            Ok(Some(_)) => {}
        }
    }
}

/// How many NATS messages node c received while x (streaming on node a) and y (on node b)
/// exchanged `count` messages through their own nodes, up to the arrival on c of one more
/// message from each of them to z, who streams on c. Those two are the fence: NATS keeps one
/// connection's messages in order, so anything a or b published before them for c is in.
async fn received_by_a_bystander_node(env: &[(&str, &str)], count: usize) -> f64 {
    let db = Database::create(&machine_postgres()).await;
    // A long stream heartbeat: what arrives came over NATS. A long presence heartbeat: no
    // full lists cross during the count.
    let flags = [
        "--metrics-listen",
        "127.0.0.1:0",
        "--presence-heartbeat",
        "1h",
    ];
    let cluster = Cluster::start_env(3, &db.url, &machine_nats(), "60s", env, &flags);
    let [a, b, c] = [0, 1, 2].map(|i| cluster.nodes[i].base.clone());
    let client = http();
    let x = login(&client, &a, "xavier").await;
    let y = login(&client, &b, "yvonne").await;
    let z = login(&client, &c, "zoe").await;
    let x_id = user_id(&client, &a, &x).await;
    let y_id = user_id(&client, &b, &y).await;
    let x_y = open_conversation(&client, &a, &x, &y).await;
    let x_z = open_conversation(&client, &a, &x, &z).await;
    let y_z = open_conversation(&client, &b, &y, &z).await;
    let mut z_stream = SseStream::open(&client, &c, &z, None, 0)
        .await
        .unwrap()
        .with_signals();
    let mut x_stream = SseStream::open(&client, &a, &x, None, 0).await.unwrap();
    let mut y_stream = SseStream::open(&client, &b, &y, None, 0).await.unwrap();
    // Node c has heard from a and b that x and y came online, and with it everything they
    // published before (the conversations): nothing older is still on its way to c.
    let mut offline = BTreeSet::from([x_id, y_id]);
    while !offline.is_empty() {
        let news = signal(&mut z_stream, "presence", PATIENCE, |d| {
            d["state"] == "online"
        })
        .await;
        offline.remove(news["userId"].as_str().unwrap());
    }

    let bystander = &cluster.nodes[2];
    let before = bystander.metric(&client, RECEIVED_MESSAGES).await;
    let mut exchanged = BTreeSet::new();
    for i in 0..count {
        let (base, me) = if i % 2 == 0 { (&a, &x) } else { (&b, &y) };
        exchanged.insert(
            send(&client, base, me, &x_y, &format!("m{i}"), None)
                .await
                .unwrap(),
        );
    }
    receive_all("xavier", &mut x_stream, &exchanged).await;
    receive_all("yvonne", &mut y_stream, &exchanged).await;
    let fence = BTreeSet::from([
        send(&client, &a, &x, &x_z, "fence a", None).await.unwrap(),
        send(&client, &b, &y, &y_z, "fence b", None).await.unwrap(),
    ]);
    receive_all("zoe", &mut z_stream, &fence).await;
    let received = bystander.metric(&client, RECEIVED_MESSAGES).await - before;
    drop(cluster);
    db.drop_database().await;
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_users_stream_receives_none_of_their_one_to_one_messages() {
    init_logs();
    if !machine_services() {
        return;
    }
    let count = 20;
    let targeted = received_by_a_bystander_node(&[], count).await;
    assert_eq!(
        targeted, 2.0,
        "node c received only the two messages for zoe"
    );
    // The control: with every event sent to every node, c receives the exchange too.
    let broadcast = received_by_a_bystander_node(&[BROADCAST], count).await;
    assert!(
        broadcast >= (count + 2) as f64,
        "broadcast: node c received {broadcast} messages"
    );
}

/// Register before you read, across nodes: a stream's `subscribe` returns only once NATS
/// delivers the user's events to its node, so a message sent on another node right after the
/// stream opened (and after its store read) arrives live. Each round is a user node b has never
/// listened for, so each opens a new NATS subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opened_on_one_node_just_before_a_send_on_another_gets_it_live() {
    init_logs();
    if !machine_services() {
        return;
    }
    let db = Database::create(&machine_postgres()).await;
    // A long heartbeat: a stream starts at the inbox head and checks the store again only after
    // a minute, so a message it missed on the bus does not arrive within DELIVERY.
    let cluster = Cluster::start(2, &db.url, &machine_nats(), "60s");
    let [a, b] = [0, 1].map(|i| cluster.nodes[i].base.clone());
    let client = http();
    let sender = login(&client, &a, "sender").await;
    for round in 0..10 {
        let reader = login(&client, &b, &format!("reader{round}")).await;
        let conversation = open_conversation(&client, &a, &sender, &reader).await;
        let mut stream = SseStream::open(&client, &b, &reader, None, 0)
            .await
            .unwrap();
        let id = send(&client, &a, &sender, &conversation, "now", None)
            .await
            .unwrap();
        receive_all(&reader.username, &mut stream, &BTreeSet::from([id])).await;
    }
    drop(cluster);
    db.drop_database().await;
}

/// NATS traffic per node, one row per node, over the send phase of `measure`.
#[derive(Debug)]
struct Traffic {
    received_bytes: f64,
    received_messages: f64,
    sent_bytes: f64,
    sent_messages: f64,
}

async fn traffic(client: &reqwest::Client, node: &Node) -> Traffic {
    Traffic {
        received_bytes: node.metric(client, RECEIVED_BYTES).await,
        received_messages: node.metric(client, RECEIVED_MESSAGES).await,
        sent_bytes: node.metric(client, SENT_BYTES).await,
        sent_messages: node.metric(client, SENT_MESSAGES).await,
    }
}

/// `users` users spread round-robin over three nodes, each with one stream on their own node,
/// `conversations` 1:1 conversations between random pairs, then `messages` messages, each in a
/// random one of them from a random side, sent through the sender's node. Returns each node's
/// NATS traffic from just before the first send to the last delivery. The same `seed` makes
/// the same workload.
async fn measure(
    env: &[(&str, &str)],
    users: usize,
    conversations: usize,
    messages: usize,
    seed: u64,
) -> Vec<Traffic> {
    let db = Database::create(&machine_postgres()).await;
    let flags = ["--metrics-listen", "127.0.0.1:0"];
    let cluster = Cluster::start_env(3, &db.url, &machine_nats(), "60s", env, &flags);
    let bases = cluster.bases();
    let client = http();
    let home = |user: usize| &bases[user % bases.len()];
    let mut sessions = Vec::new();
    for user in 0..users {
        sessions.push(login(&client, home(user), &format!("user{user}")).await);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut pairs = BTreeSet::new();
    while pairs.len() < conversations {
        let (one, other) = (rng.random_range(0..users), rng.random_range(0..users));
        if one != other {
            pairs.insert((one.min(other), one.max(other)));
        }
    }
    let mut opened = Vec::new();
    for &(one, other) in &pairs {
        let id = open_conversation(&client, home(one), &sessions[one], &sessions[other]).await;
        opened.push((one, other, id));
    }
    let mut subscribers = Vec::new();
    for (user, session) in sessions.iter().enumerate() {
        let node = vec![home(user).clone()];
        subscribers.push(Subscriber::start(session.clone(), node, Hop::Never).await);
    }
    let plan: Vec<(usize, usize)> = (0..messages)
        .map(|_| {
            let conversation = rng.random_range(0..opened.len());
            let (one, other, _) = opened[conversation];
            let sender = if rng.random_bool(0.5) { one } else { other };
            (sender, conversation)
        })
        .collect();

    let before = futures::future::join_all(cluster.nodes.iter().map(|n| traffic(&client, n))).await;
    let mut expected = vec![BTreeSet::new(); users];
    let mut sending = Vec::new();
    for lane in plan.chunks(messages.div_ceil(16)) {
        let (client, lane) = (client.clone(), lane.to_vec());
        let (sessions, opened, bases) = (sessions.clone(), opened.clone(), bases.clone());
        sending.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for (n, (sender, conversation)) in lane.into_iter().enumerate() {
                let (one, other, id) = &opened[conversation];
                let base = &bases[sender % bases.len()];
                let text = format!("message {n}");
                let message = send(&client, base, &sessions[sender], id, &text, None)
                    .await
                    .unwrap();
                sent.push((*one, *other, message));
            }
            sent
        }));
    }
    for lane in sending {
        for (one, other, message) in lane.await.unwrap() {
            expected[one].insert(message);
            expected[other].insert(message);
        }
    }
    for (user, subscriber) in subscribers.iter().enumerate() {
        let got = subscriber.wait_for(&expected[user], DELIVERY).await;
        let resets = subscriber.resets.lock().unwrap().clone();
        assert_exactly_once_in_order(&format!("user{user}"), &got, &resets, &expected[user]);
    }
    let after = futures::future::join_all(cluster.nodes.iter().map(|n| traffic(&client, n))).await;
    for subscriber in subscribers {
        subscriber.stop().await;
    }
    drop(cluster);
    db.drop_database().await;
    before
        .iter()
        .zip(&after)
        .map(|(before, after)| Traffic {
            received_bytes: after.received_bytes - before.received_bytes,
            received_messages: after.received_messages - before.received_messages,
            sent_bytes: after.sent_bytes - before.sent_bytes,
            sent_messages: after.sent_messages - before.sent_messages,
        })
        .collect()
}

/// The figures: NATS bytes each of three nodes receives while 300 users spread over
/// them exchange 3,000 1:1 messages, with per-user subjects and with the broadcast control,
/// in paired runs of one build (see docs/benchmarks.md). Prints; asserts only that every
/// message arrived.
///
/// `cargo test -p courier --test cluster nats_traffic_per_node -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it by name"]
async fn nats_traffic_per_node_targeted_against_broadcast() {
    init_logs();
    if !machine_services() {
        return;
    }
    for pair in 0..2u64 {
        for (mode, env) in [("broadcast", &[BROADCAST][..]), ("targeted", &[][..])] {
            let nodes = measure(env, 300, 600, 3_000, 16 + pair).await;
            for (i, node) in nodes.iter().enumerate() {
                println!(
                    "pair {pair} {mode:9} node {i}: received {:>9} B {:>6} msgs, sent {:>9} B {:>6} msgs",
                    node.received_bytes,
                    node.received_messages,
                    node.sent_bytes,
                    node.sent_messages
                );
            }
        }
    }
}
