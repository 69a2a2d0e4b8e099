//! Read receipts: each move of a read marker is one `read` entry of the log (sent to the
//! other members, replayed on resume), shown in Conversation JSON, and withheld both ways from
//! and for people who turn receipts off.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

impl TestApp {
    async fn mark_read(&self, user: &TestUser, conversation: &str) {
        let path = format!("/api/conversations/{conversation}/read_messages");
        let response = self.post(&path, user).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }

    async fn conversation_json(&self, user: &TestUser, conversation: &str) -> Value {
        self.get_json(&format!("/api/conversations/{conversation}"), user)
            .await
    }

    async fn set_read_receipts(&self, user: &TestUser, on: bool) -> Value {
        let (status, body) = self
            .group_call(
                Method::PATCH,
                "/api/me/settings",
                user,
                Some(json!({ "readReceipts": on })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

/// The next `read` event, skipping messages and other events.
async fn next_read(stream: &mut SseStream) -> SseEvent {
    loop {
        let event = stream.next_event(PATIENCE).await.expect("an event in time");
        if event.event.as_deref() == Some("read") {
            return event;
        }
    }
}

/// The next event, which must not be a receipt: the message `marker` proves none came before.
async fn assert_next_is_message(stream: &mut SseStream, marker: &str) {
    let event = stream.next_event(PATIENCE).await.expect("an event in time");
    assert_eq!(
        event.event, None,
        "expected the message {marker:?}, got {event:?}"
    );
    assert_eq!(event.json()["content"], marker);
}

#[tokio::test]
async fn reading_moves_the_marker_once_and_the_sender_hears_of_it_live() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;
    let first = app.send_message(&alice, &c, "did you see this?").await;
    let mut alices = app.stream(&alice, None).await;

    app.mark_read(&bob, &c).await;
    let read = next_read(&mut alices).await;
    assert!(read.id.is_some(), "a receipt is on the log");
    let data = read.json();
    assert_eq!(data["conversationId"], c.as_str());
    assert_eq!(data["userId"], bob.id.as_str());
    assert_eq!(data["messageId"], first["id"]);

    // Marking again moves nothing: no event (bob's next message is the next thing alice gets).
    app.mark_read(&bob, &c).await;
    app.mark_read(&bob, &c).await;
    app.send_message(&bob, &c, "yes").await;
    assert_next_is_message(&mut alices, "yes").await;

    // Reading the newest page (the seed's way) is a read too.
    let second = app.send_message(&alice, &c, "and this?").await;
    let page = app.messages(&bob, &c, None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let read = next_read(&mut alices).await.json();
    assert_eq!(read["messageId"], second["id"]);

    let seen = app.conversation_json(&alice, &c).await;
    assert_eq!(seen["lastMessageReadBy"], 1);
    assert_eq!(
        seen["readPositions"],
        json!([{ "userId": bob.id, "messageId": second["id"] }])
    );
    // Bob's own view: alice has not read his "yes" yet... she sent after it, so she has.
    let bobs = app.conversation_json(&bob, &c).await;
    assert_eq!(bobs["readPositions"][0]["userId"], alice.id.as_str());
}

#[tokio::test]
async fn a_receipt_is_replayed_on_resume_and_after_a_restart() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;
    let sent = app.send_message(&alice, &c, "read me").await;
    let mut alices = app.stream(&alice, None).await;
    let cursor = alices.next_block(PATIENCE).await.unwrap().id.unwrap();
    drop(alices);
    app.mark_read(&bob, &c).await;
    let app = app.restart().await;

    let mut alices = app.stream(&alice, Some(&cursor)).await;
    let read = next_read(&mut alices).await.json();
    assert_eq!(read["userId"], bob.id.as_str());
    assert_eq!(read["messageId"], sent["id"]);
}

#[tokio::test]
async fn turning_receipts_off_hides_them_both_ways_live_in_conversations_and_on_resume() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;
    let settings: Value = app.get_json("/api/me/settings", &bob).await;
    assert_eq!(settings["readReceipts"], true);
    assert_eq!(
        app.set_read_receipts(&bob, false).await["readReceipts"],
        false
    );

    let mut alices = app.stream(&alice, None).await;
    let cursor = alices.next_block(PATIENCE).await.unwrap().id.unwrap();
    app.send_message(&alice, &c, "private?").await;
    app.mark_read(&bob, &c).await;
    let _ = alices.next_event(PATIENCE).await.unwrap(); // her own message
    app.send_message(&bob, &c, "marker").await;
    assert_next_is_message(&mut alices, "marker").await;
    // The marker moved all the same: bob has nothing unread.
    let bobs_view = app.conversation_json(&bob, &c).await;
    assert_eq!(bobs_view["unreadCount"], 0);
    // Nor does a resume bring a receipt.
    let mut resumed = app.stream(&alice, Some(&cursor)).await;
    assert_next_is_message(&mut resumed, "private?").await;
    assert_next_is_message(&mut resumed, "marker").await;
    let seen = app.conversation_json(&alice, &c).await;
    assert_eq!(seen["lastMessageReadBy"], 0);
    assert_eq!(seen["readPositions"], json!([]));

    // Mutual: bob no longer sees alice's receipts either.
    app.mark_read(&alice, &c).await;
    let bobs_view = app.conversation_json(&bob, &c).await;
    assert_eq!(bobs_view["readPositions"], json!([]));
    assert_eq!(bobs_view["lastMessageReadBy"], 0);

    // Turned back on, both see each other again.
    app.set_read_receipts(&bob, true).await;
    let bobs_view = app.conversation_json(&bob, &c).await;
    assert_eq!(bobs_view["lastMessageReadBy"], 1);
}

#[tokio::test]
async fn groups_count_readers_and_list_positions_only_up_to_twenty_members() {
    let app = spawn_app().await;
    let owner = app.login("owner").await;
    let mut people = Vec::new();
    for i in 0..3 {
        people.push(app.login_owned(format!("reader{i}")).await);
    }
    let refs: Vec<&TestUser> = people.iter().collect();
    let group = app.create_group(&owner, &refs, "Readers").await;
    let g = group["id"].as_str().unwrap();
    app.send_message(&owner, g, "chapter one").await;
    app.mark_read(&people[0], g).await;
    app.mark_read(&people[1], g).await;
    let view = app.conversation_json(&owner, g).await;
    assert_eq!(view["lastMessageReadBy"], 2);
    assert_eq!(view["readPositions"].as_array().unwrap().len(), 3);

    let mut crowd = Vec::new();
    for i in 0..20 {
        crowd.push(app.login_owned(format!("crowd{i}")).await);
    }
    let refs: Vec<&TestUser> = crowd.iter().collect();
    let big = app.create_group(&owner, &refs, "Crowd").await;
    let b = big["id"].as_str().unwrap();
    app.send_message(&owner, b, "hello all").await;
    for person in &crowd[..5] {
        app.mark_read(person, b).await;
    }
    let view = app.conversation_json(&owner, b).await;
    assert_eq!(view["memberCount"], 21);
    assert_eq!(
        view["readPositions"],
        Value::Null,
        "only a count past 20 members"
    );
    assert_eq!(view["lastMessageReadBy"], 5);
}

#[tokio::test]
async fn settings_need_a_session_and_a_boolean_and_strangers_cannot_mark_read() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let eve = app.login("eve").await;
    let c = app.conversation_between(&alice, &bob).await;
    let anonymous = app
        .client
        .get(app.url("/api/me/settings"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = app
        .group_call(
            Method::PATCH,
            "/api/me/settings",
            &alice,
            Some(json!({ "readReceipts": "no" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let path = format!("/api/conversations/{c}/read_messages");
    let stranger = app.post(&path, &eve).send().await.unwrap();
    assert_eq!(stranger.status(), StatusCode::NOT_FOUND);
}

impl TestApp {
    async fn ack(&self, user: &TestUser, cursor: &str) -> (StatusCode, Value) {
        self.group_call(
            Method::POST,
            "/api/ack",
            user,
            Some(json!({ "cursor": cursor })),
        )
        .await
    }
}

/// The next `delivered` signal, skipping everything else.
async fn next_delivered(stream: &mut SseStream) -> SseEvent {
    loop {
        let event = stream.next_event(PATIENCE).await.expect("an event in time");
        if event.event.as_deref() == Some("delivered") {
            return event;
        }
    }
}

#[tokio::test]
async fn an_acknowledged_stream_position_tells_the_sender_once_and_is_kept_as_state() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;
    let mut alices = app.stream(&alice, None).await;
    let mut bobs = app.stream(&bob, None).await;
    let sent = app.send_message(&alice, &c, "arrived?").await;
    let got = bobs.next_message_skipping_presence().await;
    assert_eq!(got["id"], sent["id"]);
    let cursor = bobs.last_id.clone().expect("the message's cursor");

    let (status, body) = app.ack(&bob, &cursor).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let delivered = next_delivered(&mut alices).await;
    assert_eq!(
        delivered.id, None,
        "a delivered receipt is a signal, not a log entry"
    );
    let data = delivered.json();
    assert_eq!(data["conversationId"], c.as_str());
    assert_eq!(data["userId"], bob.id.as_str());
    assert_eq!(data["messageId"], sent["id"]);
    let view = app.conversation_json(&alice, &c).await;
    assert_eq!(view["lastMessageDeliveredTo"], 1);
    assert_eq!(view["lastMessageReadBy"], 0, "delivered is not read");
    assert_eq!(
        view["deliveredPositions"],
        json!([{ "userId": bob.id, "messageId": sent["id"] }])
    );

    // The same position again (another tab of the same browser) tells nobody anything.
    assert_eq!(app.ack(&bob, &cursor).await.0, StatusCode::NO_CONTENT);
    app.send_message(&bob, &c, "marker").await;
    loop {
        let event = alices.next_event(PATIENCE).await.unwrap();
        assert_ne!(event.event.as_deref(), Some("delivered"), "{event:?}");
        if event.event.is_none() {
            assert_eq!(event.json()["content"], "marker");
            break;
        }
    }
}

#[tokio::test]
async fn an_acknowledgement_past_the_inbox_counts_only_what_was_there() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;
    app.send_message(&alice, &c, "first").await;
    let mut bobs = app.stream(&bob, None).await;
    let open = bobs.next_block(PATIENCE).await.unwrap().id.unwrap();
    let instance = open.rsplit_once('-').unwrap().0.to_owned();
    let (status, _) = app.ack(&bob, &format!("{instance}-999999")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    app.send_message(&alice, &c, "later").await;
    let view = app.conversation_json(&alice, &c).await;
    assert_eq!(
        view["lastMessageDeliveredTo"], 0,
        "the future was not acknowledged"
    );

    for bad in ["", "nonsense", "other-5", &format!("{instance}-x")] {
        let (status, body) = app.ack(&bob, bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}: {body}");
        assert!(body["errors"]["cursor"].is_string(), "{body}");
    }
    let anonymous = app
        .client
        .post(app.url("/api/ack"))
        .json(&json!({ "cursor": open }))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_group_counts_the_members_who_have_a_message_on_a_device() {
    let app = spawn_app().await;
    let owner = app.login("owner").await;
    let ann = app.login("ann").await;
    let ben = app.login("ben").await;
    let group = app.create_group(&owner, &[&ann, &ben], "Ticks").await;
    let g = group["id"].as_str().unwrap();
    let mut owners = app.stream(&owner, None).await;
    let mut anns = app.stream(&ann, None).await;
    let mut bens = app.stream(&ben, None).await;
    let sent = app.send_message(&owner, g, "roll call").await;
    for (person, stream) in [(&ann, &mut anns), (&ben, &mut bens)] {
        loop {
            let event = stream.next_event(PATIENCE).await.unwrap();
            if event.event.is_none() {
                break;
            }
        }
        let cursor = stream.last_id.clone().unwrap();
        assert_eq!(app.ack(person, &cursor).await.0, StatusCode::NO_CONTENT);
        let delivered = next_delivered(&mut owners).await.json();
        assert_eq!(delivered["userId"], person.id.as_str());
        assert_eq!(delivered["messageId"], sent["id"]);
    }
    let view = app.conversation_json(&owner, g).await;
    assert_eq!(view["lastMessageDeliveredTo"], 2);
}

#[tokio::test]
async fn an_acknowledgement_without_a_cursor_covers_everything_up_to_now() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;
    let sent = app.send_message(&alice, &c, "while you were away").await;
    let mut alices = app.stream(&alice, None).await;
    // Bob's app has just loaded his conversations: it has that message.
    let (status, body) = app
        .group_call(Method::POST, "/api/ack", &bob, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let delivered = next_delivered(&mut alices).await.json();
    assert_eq!(delivered["messageId"], sent["id"]);
}
