use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

#[tokio::test]
async fn the_stream_needs_an_event_stream_accept_header_and_a_token() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let no_accept = app.get("/api/messages", &alice).send().await.unwrap();
    assert_eq!(no_accept.status(), StatusCode::NOT_ACCEPTABLE);
    assert!(no_accept.json::<Value>().await.unwrap()["error"].is_string());
    let anonymous = app
        .client
        .get(app.url("/api/messages"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let by_query = app
        .client
        .get(app.url(&format!("/api/messages?token={}", alice.token)))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_head_and_a_retry_hint_arrive_at_once_then_heartbeats_follow() {
    let app = spawn_app_with(|c| c.heartbeat = Duration::from_millis(300)).await;
    let alice = app.login("alice").await;
    let mut stream = tokio::time::timeout(Duration::from_secs(2), app.stream(&alice, None))
        .await
        .expect("head at once");
    let first = stream
        .next_block(Duration::from_millis(500))
        .await
        .expect("retry hint at once");
    assert!(first.retry.is_some(), "{first:?}");
    let beat = stream
        .next_block(Duration::from_secs(2))
        .await
        .expect("a heartbeat");
    assert_eq!(beat.comments, ["heartbeat"]);
    assert!(beat.data.is_empty());
}

#[tokio::test]
async fn a_message_reaches_the_recipient_live_and_the_senders_other_streams_as_mine() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let mut bob_stream = app.stream(&bob, None).await;
    let mut alice_phone = app.stream(&alice, None).await;
    let sent = app.send_message(&alice, &id, "hello bob").await;

    // Alice's phone coming online may reach Bob first as a presence signal, which is
    // ephemeral and carries no id by design (on a cluster it crosses NATS, so either order).
    let event = loop {
        let event = bob_stream.next_event(PATIENCE).await.expect("live event");
        if event.event.as_deref() != Some("presence") {
            break event;
        }
    };
    assert!(event.id.is_some(), "every log event carries an id");
    assert_eq!(event.event, None);
    let got = event.json();
    assert_eq!(got["id"], sent["id"]);
    assert_eq!(got["content"], "hello bob");
    assert_eq!(got["conversationId"], id);
    assert_eq!(got["createdAt"], sent["createdAt"]);
    assert_eq!(got["mine"], false);

    let echo = alice_phone.next_message_skipping_presence().await;
    assert_eq!(echo["id"], sent["id"]);
    assert_eq!(echo["mine"], true);
}

#[tokio::test]
async fn a_stream_resumes_after_a_disconnect_with_the_gap_once_each_in_order() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let mut stream = app.stream(&bob, None).await;
    let first = app.send_message(&alice, &id, "before the gap").await;
    assert_eq!(stream.next_message().await["id"], first["id"]);
    let cursor = stream.last_id.clone().expect("a cursor");
    drop(stream);

    let mut gap = Vec::new();
    for i in 0..40 {
        let who = if i % 3 == 0 { &bob } else { &alice };
        gap.push(app.send_message(who, &id, &format!("gap {i}")).await);
    }
    let mut resumed = app.stream(&bob, Some(&cursor)).await;
    let replayed = resumed.messages(gap.len(), PATIENCE).await;
    assert_eq!(ids(&replayed), ids(&gap));
    let from_bob: Vec<bool> = (0..40).map(|i| i % 3 == 0).collect();
    let mine: Vec<bool> = replayed
        .iter()
        .map(|m| m["mine"].as_bool().unwrap())
        .collect();
    assert_eq!(
        mine, from_bob,
        "mine is true exactly for bob's own messages"
    );
    let live = app.send_message(&alice, &id, "after").await;
    assert_eq!(resumed.next_message().await["id"], live["id"]);
    resumed.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn replayed_messages_say_mine_for_the_sender_only() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let mut stream = app.stream(&bob, None).await;
    app.send_message(&alice, &id, "first").await;
    stream.next_message().await;
    let cursor = stream.last_id.clone().unwrap();
    drop(stream);
    let from_bob = app.send_message(&bob, &id, "mine").await;
    let from_alice = app.send_message(&alice, &id, "theirs").await;
    let mut resumed = app.stream(&bob, Some(&cursor)).await;
    let got = resumed.messages(2, PATIENCE).await;
    assert_eq!(
        (got[0]["id"].clone(), got[0]["mine"].clone()),
        (from_bob["id"].clone(), true.into())
    );
    assert_eq!(
        (got[1]["id"].clone(), got[1]["mine"].clone()),
        (from_alice["id"].clone(), false.into())
    );
}

#[tokio::test]
async fn a_first_connect_can_resume_with_the_last_event_id_query_parameter() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let mut stream = app.stream(&bob, None).await;
    app.send_message(&alice, &id, "one").await;
    stream.next_message().await;
    let cursor = stream.last_id.clone().unwrap();
    drop(stream);
    let missed = app.send_message(&alice, &id, "two").await;
    let response = app
        .get(&format!("/api/messages?lastEventId={cursor}"), &bob)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut resumed = SseStream::new(response);
    assert_eq!(resumed.next_message().await["id"], missed["id"]);
}

#[tokio::test]
async fn a_stream_resumes_across_a_server_restart() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let mut stream = app.stream(&bob, None).await;
    app.send_message(&alice, &id, "before restart").await;
    stream.next_message().await;
    let cursor = stream.last_id.clone().unwrap();
    let mut gap = vec![
        app.send_message(&alice, &id, "sent while bob was away")
            .await,
    ];

    let app = app.restart().await;
    // The old stream ended with the old server.
    assert!(stream.messages(1, Duration::from_secs(5)).await.len() <= 1);
    gap.push(
        app.send_message(&alice, &id, "sent after the restart")
            .await,
    );
    let mut resumed = app.stream(&bob, Some(&cursor)).await;
    let got = resumed.messages(2, PATIENCE).await;
    assert_eq!(ids(&got), ids(&gap));
    resumed.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_malformed_or_foreign_cursor_is_reported_with_a_reset_event_and_the_stream_goes_live() {
    let app = spawn_app().await;
    let other = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    app.send_message(&alice, &id, "old news").await;

    // A cursor from another server (other instance id), one that is garbage, one from the future.
    let other_alice = other.login("alice").await;
    let other_bob = other.login("bob").await;
    let other_id = other.conversation_between(&other_alice, &other_bob).await;
    let mut other_stream = other.stream(&other_bob, None).await;
    other
        .send_message(&other_alice, &other_id, "elsewhere")
        .await;
    other_stream.next_message().await;
    let foreign = other_stream.last_id.clone().unwrap();
    let instance = foreign.rsplit_once('-').unwrap().0.to_owned();
    let mut local_stream = app.stream(&bob, None).await;
    app.send_message(&alice, &id, "probe").await;
    local_stream.next_message().await;
    let local_instance = local_stream
        .last_id
        .clone()
        .unwrap()
        .rsplit_once('-')
        .unwrap()
        .0
        .to_owned();
    assert_ne!(instance, local_instance);
    let future = format!("{local_instance}-999999");

    for cursor in [foreign.as_str(), "not a cursor", future.as_str()] {
        let mut stream = app.stream(&bob, Some(cursor)).await;
        let reset = stream.next_event(PATIENCE).await.expect("a reset event");
        assert_eq!(reset.event.as_deref(), Some("reset"), "{cursor}");
        assert!(reset.json()["reason"].is_string());
        // Live from now: the old messages are not replayed, new ones arrive.
        let live = app
            .send_message(&alice, &id, &format!("after reset {cursor}"))
            .await;
        assert_eq!(stream.next_message().await["id"], live["id"]);
    }
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_never_slows_a_fast_one_and_resumes_without_loss() {
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;

    // Small buffers everywhere, so "stopped reading" shows within a few hundred messages.
    let app = spawn_app_with(|c| {
        c.stream_buffer = 8;
        c.socket_send_buffer = 8192;
    })
    .await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;

    // Bob's stuck device: a tiny receive window and a body nobody reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(app.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get("/api/messages")
        .header("host", app.addr.to_string())
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {}", bob.token))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let stuck = sender.send_request(request).await.unwrap();
    assert_eq!(stuck.status(), 200);

    let mut fast = app.stream(&bob, None).await;
    let total = 1500;
    let fast_reader = tokio::spawn(async move { fast.messages(total, PATIENCE * 3).await });
    let content = "x".repeat(400);
    let mut sent = Vec::new();
    for _ in 0..total {
        sent.push(
            app.send_message(&alice, &id, &content).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let fast_got = fast_reader.await.unwrap();
    assert_eq!(
        ids(&fast_got),
        sent,
        "the fast stream got everything, in order"
    );

    // The stuck stream was closed once its buffer filled: reading it now ends early.
    let body = stuck.into_body().into_data_stream();
    use futures::TryStreamExt;
    let mut slow = SseStream::from_stream(body.map_err(|e| e.to_string()));
    let before_close = slow.messages(total, Duration::from_secs(5)).await;
    assert!(slow.ended, "the server closed the stuck stream");
    assert!(
        before_close.len() < total,
        "closed before everything was written"
    );
    // Its client resumes from the last event it did get and loses nothing.
    let cursor = slow.last_id.clone();
    let mut resumed = app.stream(&bob, cursor.as_deref()).await;
    let rest = resumed.messages(total - before_close.len(), PATIENCE).await;
    let mut all = ids(&before_close);
    all.extend(ids(&rest));
    assert_eq!(all, sent);
}

#[tokio::test]
async fn twenty_concurrent_senders_deliver_every_message_exactly_once_to_every_stream() {
    let app = spawn_app().await;
    let users =
        futures::future::join_all((0..20).map(|i| app.login_owned(format!("user{i}")))).await;
    // Each user talks to the next and to the one seven along: many shared conversations.
    let mut conversations: Vec<(usize, usize, String)> = Vec::new();
    for i in 0..20 {
        for j in [(i + 1) % 20, (i + 7) % 20] {
            if !conversations
                .iter()
                .any(|(a, b, _)| (*a, *b) == (j, i) || (*a, *b) == (i, j))
            {
                let id = app.conversation_between(&users[i], &users[j]).await;
                conversations.push((i, j, id));
            }
        }
    }
    let mut streams = Vec::new();
    for user in &users {
        streams.push(app.stream(user, None).await);
    }
    let senders = users.iter().enumerate().map(|(i, user)| {
        let mine: Vec<&String> = conversations
            .iter()
            .filter(|(a, b, _)| *a == i || *b == i)
            .map(|(_, _, id)| id)
            .collect();
        let app = &app;
        async move {
            let mut sent = Vec::new();
            for n in 0..50 {
                let conversation = mine[n % mine.len()];
                let message = app
                    .send_message(user, conversation, &format!("{i}:{n}"))
                    .await;
                sent.push(message);
            }
            sent
        }
    });
    let sent: Vec<Value> = futures::future::join_all(senders)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(sent.len(), 1000);

    let members: HashMap<&str, (usize, usize)> = conversations
        .iter()
        .map(|(a, b, id)| (id.as_str(), (*a, *b)))
        .collect();
    for (i, stream) in streams.iter_mut().enumerate() {
        let expected: Vec<&Value> = sent
            .iter()
            .filter(|m| {
                let (a, b) = members[m["conversationId"].as_str().unwrap()];
                a == i || b == i
            })
            .collect();
        let got = stream.messages(expected.len(), PATIENCE).await;
        stream.assert_quiet(Duration::from_millis(200)).await;
        let got_ids: Vec<String> = ids(&got);
        let unique: HashSet<&String> = got_ids.iter().collect();
        assert_eq!(unique.len(), got_ids.len(), "user{i} got a duplicate");
        let expected_ids: HashSet<String> = expected
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            unique.into_iter().cloned().collect::<HashSet<_>>(),
            expected_ids,
            "user{i}'s stream"
        );
        // Commit order: ids strictly increase along the stream.
        let numeric: Vec<i64> = got_ids.iter().map(|s| s.parse().unwrap()).collect();
        assert!(
            numeric.windows(2).all(|w| w[0] < w[1]),
            "user{i}'s stream is in commit order"
        );
    }
}

#[tokio::test]
async fn shutdown_ends_open_streams_promptly() {
    let mut app = spawn_app().await;
    let alice = app.login("alice").await;
    let mut streams = vec![
        app.stream(&alice, None).await,
        app.stream(&alice, None).await,
    ];
    let took = app.stop().await;
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    for stream in &mut streams {
        while stream.next_block(Duration::from_secs(2)).await.is_some() {}
        assert!(stream.ended, "the stream ended with the server");
    }
}

#[tokio::test]
async fn streams_per_user_are_limited() {
    let app = spawn_app_with(|c| c.max_streams_per_user = 2).await;
    let alice = app.login("alice").await;
    let _one = app.stream(&alice, None).await;
    let two = app.stream(&alice, None).await;
    let third = app
        .get("/api/messages", &alice)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(third.json::<Value>().await.unwrap()["error"].is_string());
    drop(two);
    // The slot frees once the server notices the disconnect.
    let mut reopened = None;
    for _ in 0..50 {
        let response = app
            .get("/api/messages", &alice)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::OK {
            reopened = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "a closed stream frees its slot");
}

#[tokio::test]
async fn many_streams_share_one_http2_connection() {
    use futures::TryStreamExt;
    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;

    // HTTP/2 with prior knowledge, as a reverse proxy speaks it upstream (h2c).
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut streams = Vec::new();
    for _ in 0..3 {
        let request = hyper::Request::get(format!("http://{}/api/messages", app.addr))
            .header("accept", "text/event-stream")
            .header("authorization", format!("Bearer {}", bob.token))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.clone().send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        let body = response.into_body().into_data_stream();
        streams.push(SseStream::from_stream(body.map_err(|e| e.to_string())));
    }
    let sent = app.send_message(&alice, &id, "over h2").await;
    for stream in &mut streams {
        assert_eq!(stream.next_message().await["id"], sent["id"]);
    }
}
