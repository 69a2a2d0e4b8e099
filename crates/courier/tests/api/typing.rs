use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn typing_reaches_the_other_member_as_a_named_event_without_an_id() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let mut bob_stream = app.stream(&bob, None).await;
    let opened_at = bob_stream.next_block(PATIENCE).await.unwrap().id;

    let response = app.typing(&alice, &id).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let event = bob_stream.next_named("typing").await;
    assert_eq!(
        event.id, None,
        "a signal carries no id: it is never replayed"
    );
    assert_eq!(
        event.json(),
        json!({
            "conversationId": id,
            "userId": alice.id,
            "username": "alice",
            "typing": true,
            "expiresInMs": 6000,
        })
    );
    assert_eq!(
        bob_stream.last_id, opened_at,
        "the stream's cursor did not move"
    );
}

#[tokio::test]
async fn typing_reaches_every_other_member_of_a_group_but_not_the_typist() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let carol = app.login("carol").await;
    let group: Value = app
        .post("/api/conversations", &alice)
        .json(&json!({ "usernames": ["bob", "carol"], "title": "team" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = group["id"].as_str().unwrap();
    let mut alice_phone = app.stream(&alice, None).await;
    let mut bob_stream = app.stream(&bob, None).await;
    let mut carol_stream = app.stream(&carol, None).await;

    assert_eq!(
        app.typing(&alice, id).await.status(),
        StatusCode::NO_CONTENT
    );
    for stream in [&mut bob_stream, &mut carol_stream] {
        let typing = stream.next_named("typing").await.json();
        assert_eq!(typing["userId"], alice.id);
        assert_eq!(typing["conversationId"], id);
    }
    // The typist's own devices are not told; a message right after shows nothing came first.
    let sent = app.send_message(&bob, id, "hi").await;
    let message = alice_phone.next_message_skipping_presence().await;
    assert_eq!(message["id"], sent["id"]);
}

#[tokio::test]
async fn typing_is_never_replayed_on_resume() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let mut bob_stream = app.stream(&bob, None).await;
    app.send_message(&alice, &id, "first").await;
    bob_stream.next_message().await;
    let cursor = bob_stream.last_id.clone().unwrap();
    drop(bob_stream);

    assert_eq!(
        app.typing(&alice, &id).await.status(),
        StatusCode::NO_CONTENT
    );
    let missed = app.send_message(&alice, &id, "while bob was away").await;
    let mut resumed = app.stream(&bob, Some(&cursor)).await;
    let first = resumed.next_message_skipping_presence().await;
    assert_eq!(first["id"], missed["id"], "the replay holds messages only");
}

#[tokio::test]
async fn a_message_from_the_typist_ends_their_typing_at_once() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let mut bob_stream = app.stream(&bob, None).await;
    app.typing(&alice, &id).await;
    assert_eq!(bob_stream.next_named("typing").await.json()["typing"], true);

    let sent = app.send_message(&alice, &id, "done typing").await;
    assert_eq!(bob_stream.next_message().await["id"], sent["id"]);
    let stopped = bob_stream.next_named("typing").await.json();
    assert_eq!(stopped["typing"], false);
    assert_eq!(stopped["userId"], alice.id);
    assert_eq!(stopped["expiresInMs"], 0);

    // A later message, with no typing in between, says nothing more.
    let again = app.send_message(&alice, &id, "and again").await;
    assert_eq!(bob_stream.next_message().await["id"], again["id"]);
    let next = app.send_message(&bob, &id, "ok").await;
    assert_eq!(
        bob_stream.next_message_skipping_presence().await["id"],
        next["id"]
    );
}

#[tokio::test]
async fn typing_is_rate_limited_per_user() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(app.typing(&alice, &id).await.status());
    }
    assert!(
        statuses[..5].iter().all(|s| *s == StatusCode::NO_CONTENT),
        "a burst of five is allowed: {statuses:?}"
    );
    let refused = app.typing(&alice, &id).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.json::<Value>().await.unwrap()["error"].is_string());
    // Another person is not limited by alice's calls.
    assert_eq!(app.typing(&bob, &id).await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_stranger_gets_404_on_typing() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let mallory = app.login("mallory").await;
    let id = app.conversation_between(&alice, &bob).await;
    let mut bob_stream = app.stream(&bob, None).await;
    for path in [
        id.as_str(),
        "abc",
        "0",
        "-1",
        "99999999999999999999",
        "424242",
    ] {
        let response = app.typing(&mallory, path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    }
    let anonymous = app
        .client
        .post(app.url(&format!("/api/conversations/{id}/typing")))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // Nothing reached bob: the next event he sees is a real one.
    let sent = app.send_message(&alice, &id, "hello").await;
    assert_eq!(
        bob_stream.next_message_skipping_presence().await["id"],
        sent["id"]
    );
}

#[tokio::test]
async fn a_removed_member_can_no_longer_type_and_an_added_one_can_at_once() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let carol = app.login("carol").await;
    let dave = app.login("dave").await;
    let group: Value = app
        .post("/api/conversations", &alice)
        .json(&json!({ "usernames": ["bob", "carol"], "title": "team" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = group["id"].as_str().unwrap();
    // Typing before the change: the members are now known (and may be cached).
    assert_eq!(app.typing(&bob, id).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.typing(&dave, id).await.status(), StatusCode::NOT_FOUND);

    let removed = app
        .client
        .delete(app.url(&format!("/api/conversations/{id}/members/{}", bob.id)))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert!(removed.status().is_success(), "{}", removed.status());
    let added = app
        .post(&format!("/api/conversations/{id}/members"), &alice)
        .json(&json!({ "usernames": ["dave"] }))
        .send()
        .await
        .unwrap();
    assert!(added.status().is_success(), "{}", added.status());

    assert_eq!(app.typing(&bob, id).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.typing(&dave, id).await.status(), StatusCode::NO_CONTENT);
    let mut carol_stream = app.stream(&carol, None).await;
    assert_eq!(app.typing(&dave, id).await.status(), StatusCode::NO_CONTENT);
    let typing = carol_stream.next_named("typing").await.json();
    assert_eq!(typing["userId"], dave.id);
    assert_eq!(typing["username"], "dave");
}
