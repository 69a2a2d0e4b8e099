use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// A short grace period: tests see people go offline promptly.
async fn spawn_with_grace(grace: Duration) -> TestApp {
    spawn_app_with(|c| c.presence_grace = grace).await
}

/// The other participant of a direct conversation as `user` is shown it.
async fn other_participant(app: &TestApp, user: &TestUser, conversation: &str) -> Value {
    let conv: Value = app
        .get_json(&format!("/api/conversations/{conversation}"), user)
        .await;
    conv["otherParticipant"].clone()
}

/// `who` opens a stream and closes it; `watcher` hears them online, then offline (returned).
async fn comes_and_goes(app: &TestApp, watcher: &mut SseStream, who: &TestUser) -> Value {
    let stream = app.stream(who, None).await;
    let online = watcher.next_named("presence").await.json();
    assert_eq!(online["userId"], who.id);
    assert_eq!(online["state"], "online");
    drop(stream);
    let offline = watcher.next_named("presence").await.json();
    assert_eq!(offline["userId"], who.id);
    assert_eq!(offline["state"], "offline");
    offline
}

#[tokio::test]
async fn presence_goes_online_then_away_then_offline_with_last_seen() {
    let app = spawn_with_grace(Duration::from_millis(100)).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let before = other_participant(&app, &alice, &id).await;
    assert_eq!(before["presence"], "offline");
    assert_eq!(before["lastSeenAt"], Value::Null, "never connected yet");

    let mut alice_stream = app.stream(&alice, None).await;
    let bob_stream = app.stream(&bob, None).await;
    let online = alice_stream.next_named("presence").await;
    assert_eq!(online.id, None, "presence is never replayed");
    assert_eq!(
        online.json(),
        json!({ "userId": bob.id, "state": "online", "lastSeenAt": null })
    );
    assert_eq!(
        other_participant(&app, &alice, &id).await["presence"],
        "online"
    );

    let response = app.report_presence(&bob, "away").await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        alice_stream.next_named("presence").await.json()["state"],
        "away"
    );
    assert_eq!(
        other_participant(&app, &alice, &id).await["presence"],
        "away"
    );
    app.report_presence(&bob, "online").await;
    assert_eq!(
        alice_stream.next_named("presence").await.json()["state"],
        "online"
    );

    drop(bob_stream);
    let offline = alice_stream.next_named("presence").await.json();
    assert_eq!(offline["state"], "offline");
    let last_seen = offline["lastSeenAt"].as_str().expect("a last-seen time");
    assert!(last_seen.ends_with('Z'), "{last_seen}");
    let shown = other_participant(&app, &alice, &id).await;
    assert_eq!(shown["presence"], "offline");
    assert_eq!(
        shown["lastSeenAt"], last_seen,
        "the list shows the same time"
    );
    let list: Vec<Value> = app.get_json("/api/conversations", &alice).await;
    assert!(
        list.is_empty(),
        "direct conversations list once they have a message"
    );
    app.send_message(&alice, &id, "are you there?").await;
    let list: Vec<Value> = app.get_json("/api/conversations", &alice).await;
    assert_eq!(list[0]["otherParticipant"]["presence"], "offline");
    assert_eq!(list[0]["otherParticipant"]["lastSeenAt"], last_seen);
}

#[tokio::test]
async fn a_person_is_away_only_when_every_one_of_their_devices_is() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob_laptop = app.login("bob").await;
    let bob_phone = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob_laptop).await;
    let mut alice_stream = app.stream(&alice, None).await;
    let _laptop = app.stream(&bob_laptop, None).await;
    let _phone = app.stream(&bob_phone, None).await;
    assert_eq!(
        alice_stream.next_named("presence").await.json()["state"],
        "online"
    );

    app.report_presence(&bob_laptop, "away").await;
    app.report_presence(&bob_phone, "away").await;
    assert_eq!(
        alice_stream.next_named("presence").await.json()["state"],
        "away"
    );
    app.report_presence(&bob_phone, "online").await;
    assert_eq!(
        alice_stream.next_named("presence").await.json()["state"],
        "online"
    );
    assert_eq!(
        other_participant(&app, &alice, &id).await["presence"],
        "online"
    );
}

#[tokio::test]
async fn presence_reaches_only_people_who_share_a_conversation() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let carol = app.login("carol").await;
    let dave = app.login("dave").await;
    app.conversation_between(&alice, &bob).await;
    app.conversation_between(&carol, &dave).await;
    let mut alice_stream = app.stream(&alice, None).await;
    let mut carol_stream = app.stream(&carol, None).await;

    let _bob_stream = app.stream(&bob, None).await;
    assert_eq!(
        alice_stream.next_named("presence").await.json()["userId"],
        bob.id
    );
    // Dave comes online after bob: the first presence carol hears is dave's, not bob's.
    let _dave_stream = app.stream(&dave, None).await;
    let heard = carol_stream.next_named("presence").await.json();
    assert_eq!(heard["userId"], dave.id, "carol shares nothing with bob");
    assert_eq!(heard["state"], "online");
}

#[tokio::test]
async fn a_reconnect_within_the_grace_period_does_not_show_them_offline() {
    let app = spawn_with_grace(Duration::from_secs(30)).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let dave = app.login("dave").await;
    app.conversation_between(&alice, &bob).await;
    app.conversation_between(&alice, &dave).await;
    let mut alice_stream = app.stream(&alice, None).await;
    let bob_stream = app.stream(&bob, None).await;
    assert_eq!(
        alice_stream.next_named("presence").await.json()["userId"],
        bob.id
    );

    drop(bob_stream);
    let _bob_again = app.stream(&bob, None).await;
    let _dave_stream = app.stream(&dave, None).await;
    let next = alice_stream.next_named("presence").await.json();
    assert_eq!(
        (next["userId"].clone(), next["state"].clone()),
        (json!(dave.id), json!("online")),
        "bob never went offline"
    );
}

#[tokio::test]
async fn a_person_who_hides_last_seen_goes_offline_without_it() {
    let app = spawn_with_grace(Duration::from_millis(100)).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let settings: Value = app.get_json("/api/me/settings", &bob).await;
    assert_eq!(settings["showLastSeen"], true);
    let response = app
        .update_settings(&bob, json!({ "showLastSeen": false }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap()["showLastSeen"],
        false
    );

    let mut alice_stream = app.stream(&alice, None).await;
    let offline = comes_and_goes(&app, &mut alice_stream, &bob).await;
    assert_eq!(offline["lastSeenAt"], Value::Null);
    let shown = other_participant(&app, &alice, &id).await;
    assert_eq!(shown["presence"], "offline");
    assert_eq!(shown["lastSeenAt"], Value::Null);

    // Shown again: the time it was recorded reappears, and the next departure carries it.
    app.update_settings(&bob, json!({ "showLastSeen": true }))
        .await;
    let shown = other_participant(&app, &alice, &id).await;
    assert!(shown["lastSeenAt"].is_string(), "{shown}");
    let offline = comes_and_goes(&app, &mut alice_stream, &bob).await;
    assert!(offline["lastSeenAt"].is_string(), "{offline}");
}

#[tokio::test]
async fn presence_reaches_people_who_share_a_conversation_made_after_it_was_announced() {
    let app = spawn_with_grace(Duration::from_millis(100)).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let carol = app.login("carol").await;
    app.conversation_between(&alice, &bob).await;
    let mut alice_stream = app.stream(&alice, None).await;
    let mut carol_stream = app.stream(&carol, None).await;
    let bob_stream = app.stream(&bob, None).await;
    assert_eq!(
        alice_stream.next_named("presence").await.json()["userId"],
        bob.id
    );

    // Bob's contacts were worked out when he came online; carol is one of them from now on.
    app.conversation_between(&bob, &carol).await;
    drop(bob_stream);
    let heard = carol_stream.next_named("presence").await.json();
    assert_eq!(heard["userId"], bob.id);
    assert_eq!(heard["state"], "offline");
    assert_eq!(
        alice_stream.next_named("presence").await.json()["state"],
        "offline"
    );
}

#[tokio::test]
async fn presence_routes_check_their_input_and_need_a_session() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bad = app.report_presence(&alice, "invisible").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.json::<Value>().await.unwrap()["errors"]["state"].is_string());
    let wrong_type = app
        .update_settings(&alice, json!({ "showLastSeen": "no" }))
        .await;
    assert_eq!(wrong_type.status(), StatusCode::UNPROCESSABLE_ENTITY);
    for response in [
        app.client
            .get(app.url("/api/me/settings"))
            .send()
            .await
            .unwrap(),
        app.client
            .put(app.url("/api/presence"))
            .json(&json!({ "state": "away" }))
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_stranger_sees_no_presence_of_a_conversation_they_are_not_in() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let mallory = app.login("mallory").await;
    let id = app.conversation_between(&alice, &bob).await;
    let _bob_stream = app.stream(&bob, None).await;
    for path in [
        format!("/api/conversations/{id}"),
        format!("/api/conversations/{id}/other_participant"),
    ] {
        let response = app.get(&path, &mallory).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let other: Value = app
        .get_json(
            &format!("/api/conversations/{id}/other_participant"),
            &alice,
        )
        .await;
    assert_eq!(other["presence"], "online");
    assert_eq!(other["lastSeenAt"], Value::Null);
}

#[tokio::test]
async fn a_departure_not_yet_written_is_written_when_the_server_stops() {
    let app = spawn_with_grace(Duration::from_millis(100)).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let mut alice_stream = app.stream(&alice, None).await;
    let offline = comes_and_goes(&app, &mut alice_stream, &bob).await;
    drop(alice_stream);

    // Well within the time a departure waits before it is written (10 s): only the stop
    // writes it.
    let app = app.restart().await;
    let shown = other_participant(&app, &alice, &id).await;
    assert_eq!(shown["presence"], "offline");
    assert_eq!(shown["lastSeenAt"], offline["lastSeenAt"], "{shown}");
}
