use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn starting_a_conversation_returns_201_with_the_other_participant() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let response = app.start_conversation_raw(&alice, "bob").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert!(body["id"].is_string());
    assert_eq!(
        body["otherParticipant"],
        json!({ "id": bob.id, "username": "bob", "avatarURL": null, "displayName": null })
    );
    assert_eq!(body["lastMessage"], Value::Null);
    assert_eq!(body["hasUnreadMessages"], false);
}

#[tokio::test]
async fn a_pair_has_one_conversation_and_the_second_start_redirects_to_it() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    for (who, other) in [(&alice, "BOB"), (&bob, "alice")] {
        let response = app.start_conversation_raw(who, other).await;
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(
            response.headers()["location"],
            format!("/api/conversations/{id}")
        );
    }
}

#[tokio::test]
async fn starting_a_conversation_fails_clearly() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let empty = app.start_conversation_raw(&alice, "").await;
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty.json::<Value>().await.unwrap()["errors"]["username"].is_string());
    assert_eq!(
        app.start_conversation_raw(&alice, "nobody").await.status(),
        StatusCode::NOT_FOUND
    );
    let yourself = app.start_conversation_raw(&alice, "ALICE").await;
    assert_eq!(yourself.status(), StatusCode::FORBIDDEN);
    assert!(yourself.json::<Value>().await.unwrap()["error"].is_string());
}

#[tokio::test]
async fn a_conversation_shows_its_last_message_and_unread_state() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let sent = app.send_message(&alice, &id, "hello bob").await;

    let for_bob: Value = app
        .get_json(&format!("/api/conversations/{id}"), &bob)
        .await;
    assert_eq!(for_bob["lastMessage"]["id"], sent["id"]);
    assert_eq!(for_bob["lastMessage"]["mine"], false);
    assert_eq!(for_bob["lastMessage"]["conversationId"], id);
    assert_eq!(for_bob["hasUnreadMessages"], true);
    assert_eq!(for_bob["otherParticipant"]["username"], "alice");

    let for_alice: Value = app
        .get_json(&format!("/api/conversations/{id}"), &alice)
        .await;
    assert_eq!(for_alice["lastMessage"]["mine"], true);
    assert_eq!(
        for_alice["hasUnreadMessages"], false,
        "your own message is read"
    );

    let other: Value = app
        .get_json(&format!("/api/conversations/{id}/other_participant"), &bob)
        .await;
    // The seed's User, plus presence (an extension): alice has no stream open.
    assert_eq!(
        other,
        json!({
            "id": alice.id, "username": "alice", "avatarURL": null, "displayName": null,
            "presence": "offline", "lastSeenAt": null,
        })
    );
}

#[tokio::test]
async fn reading_marks_read_and_a_new_message_in_the_same_instant_is_still_unread() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    app.send_message(&alice, &id, "one").await;
    let read = app
        .post(&format!("/api/conversations/{id}/read_messages"), &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::NO_CONTENT);
    let view: Value = app
        .get_json(&format!("/api/conversations/{id}"), &bob)
        .await;
    assert_eq!(view["hasUnreadMessages"], false);
    // Read state is a position: a message committed right after is unread however close in time.
    app.send_message(&alice, &id, "two").await;
    let view: Value = app
        .get_json(&format!("/api/conversations/{id}"), &bob)
        .await;
    assert_eq!(view["hasUnreadMessages"], true);
    // Listing messages marks read too.
    assert_eq!(app.messages(&bob, &id, None).await.status(), StatusCode::OK);
    let view: Value = app
        .get_json(&format!("/api/conversations/{id}"), &bob)
        .await;
    assert_eq!(view["hasUnreadMessages"], false);
}

#[tokio::test]
async fn the_list_holds_conversations_with_messages_newest_first_in_pages_of_25() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let mut expected = Vec::new();
    for i in 0..30 {
        let friend = app.login(&format!("friend{i}")).await;
        let id = app.conversation_between(&alice, &friend).await;
        app.send_message(&friend, &id, &format!("hi {i}")).await;
        expected.push(id);
    }
    // One without messages stays out of the list.
    let quiet = app.login("quiet").await;
    app.conversation_between(&alice, &quiet).await;
    // Bump the oldest to the top.
    app.send_message(&alice, &expected[0], "bump").await;
    let bumped = expected.remove(0);
    expected.push(bumped);
    expected.reverse();

    let first: Vec<Value> = app.conversations(&alice, None).await.json().await.unwrap();
    assert_eq!(first.len(), 25);
    let first_ids = ids(&first);
    assert_eq!(first_ids, expected[..25]);
    assert_eq!(first[0]["lastMessage"]["content"], "bump");
    let second: Vec<Value> = app
        .conversations(&alice, Some(&first_ids[24]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&second), expected[25..]);
}

#[tokio::test]
async fn a_stranger_gets_404_from_every_route_of_someone_elses_conversation() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let mallory = app.login("mallory").await;
    let id = app.conversation_between(&alice, &bob).await;
    let sent = app.send_message(&alice, &id, "private").await;

    let gets = [
        format!("/api/conversations/{id}"),
        format!("/api/conversations/{id}/other_participant"),
        format!("/api/conversations/{id}/messages"),
    ];
    for path in &gets {
        let response = app.get(path, &mallory).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "GET {path}");
        assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    }
    let send = app.send_message_raw(&mallory, &id, "let me in").await;
    assert_eq!(send.status(), StatusCode::NOT_FOUND);
    let read = app
        .post(&format!("/api/conversations/{id}/read_messages"), &mallory)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::NOT_FOUND);
    // Nothing leaked into mallory's list, and alice's conversation is untouched.
    let list: Vec<Value> = app
        .conversations(&mallory, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(list.is_empty());
    let messages: Vec<Value> = app.messages(&bob, &id, None).await.json().await.unwrap();
    assert_eq!(ids(&messages), [sent["id"].as_str().unwrap()]);
}

#[tokio::test]
async fn unknown_or_malformed_conversation_ids_get_404() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    for id in ["999", "abc", "0", "-1", "99999999999999999999999", "1.5"] {
        for path in [
            format!("/api/conversations/{id}"),
            format!("/api/conversations/{id}/other_participant"),
            format!("/api/conversations/{id}/messages"),
        ] {
            let response = app.get(&path, &alice).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "GET {path}");
        }
        let send = app.send_message_raw(&alice, id, "x").await;
        assert_eq!(send.status(), StatusCode::NOT_FOUND, "send to {id}");
    }
    let bad_before = app.conversations(&alice, Some("abc")).await;
    assert_eq!(bad_before.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn muting_is_stored_per_person_and_shown_on_every_device() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let eve = app.login("eve").await;
    let id = app.conversation_between(&alice, &bob).await;
    app.send_message(&bob, &id, "hi").await;
    let mute = |who: &TestUser, method: reqwest::Method| {
        app.client
            .request(method, app.url(&format!("/api/conversations/{id}/mute")))
            .bearer_auth(&who.token)
            .send()
    };
    assert_eq!(
        mute(&alice, reqwest::Method::PUT).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    // Another device of alice's (a new session) sees it; bob's view is his own.
    let alice_phone = app.login("alice").await;
    let list: Vec<Value> = app.get_json("/api/conversations", &alice_phone).await;
    assert_eq!(list[0]["muted"], true);
    let bobs: Value = app
        .get_json(&format!("/api/conversations/{id}"), &bob)
        .await;
    assert_eq!(bobs["muted"], false);
    assert_eq!(
        mute(&eve, reqwest::Method::PUT).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        mute(&alice, reqwest::Method::DELETE)
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    let view: Value = app
        .get_json(&format!("/api/conversations/{id}"), &alice)
        .await;
    assert_eq!(view["muted"], false);
}
