//! Group conversations on the one log: creation, roles, membership changes as named events,
//! visibility by membership at each position (live and on resume), history modes, unread
//! counts and the refusals.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

impl TestApp {
    async fn create_group_raw(&self, owner: &TestUser, body: Value) -> reqwest::Response {
        self.post("/api/conversations", owner)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn create_group(
        &self,
        owner: &TestUser,
        members: &[&TestUser],
        title: &str,
    ) -> Value {
        let usernames: Vec<&str> = members.iter().map(|u| u.username.as_str()).collect();
        let response = self
            .create_group_raw(owner, json!({ "usernames": usernames, "title": title }))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    pub async fn group_call(
        &self,
        method: reqwest::Method,
        path: &str,
        user: &TestUser,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(&user.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn add(&self, by: &TestUser, group: &str, who: &[&TestUser]) -> StatusCode {
        let usernames: Vec<&str> = who.iter().map(|u| u.username.as_str()).collect();
        let path = format!("/api/conversations/{group}/members");
        let body = json!({ "usernames": usernames });
        self.group_call(reqwest::Method::POST, &path, by, Some(body))
            .await
            .0
    }

    async fn remove(&self, by: &TestUser, group: &str, who: &TestUser) -> StatusCode {
        let path = format!("/api/conversations/{group}/members/{}", who.id);
        self.group_call(reqwest::Method::DELETE, &path, by, None)
            .await
            .0
    }
}

/// The next named event of `name`, skipping messages.
pub async fn next_named(stream: &mut SseStream, name: &str) -> SseEvent {
    loop {
        let event = stream.next_event(PATIENCE).await.expect("an event in time");
        if event.event.as_deref() == Some(name) {
            return event;
        }
    }
}

#[tokio::test]
async fn creating_a_group_returns_201_with_kind_title_member_count_and_role() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let carol = app.login("carol").await;
    let group = app
        .create_group(&alice, &[&bob, &carol], "  Lunch   club ")
        .await;
    assert_eq!(group["kind"], "group");
    assert_eq!(group["title"], "Lunch club");
    assert_eq!(group["memberCount"], 3);
    assert_eq!(group["role"], "owner");
    assert_eq!(group["history"], "shared");
    assert_eq!(group["otherParticipant"], Value::Null);
    assert_eq!(group["unreadCount"], 0);

    // Listed for every member even before its first message; bob is a plain member.
    let list: Vec<Value> = app.get_json("/api/conversations", &bob).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], group["id"]);
    assert_eq!(list[0]["role"], "member");

    let id = group["id"].as_str().unwrap();
    let members: Vec<Value> = app
        .get_json(&format!("/api/conversations/{id}/members"), &carol)
        .await;
    let roles: Vec<(String, String)> = members
        .iter()
        .map(|m| {
            (
                m["user"]["username"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [("alice", "owner"), ("bob", "member"), ("carol", "member")]
            .map(|(u, r)| (u.to_owned(), r.to_owned()))
    );
    // Paged in user id order.
    let page: Vec<Value> = app
        .get_json(
            &format!("/api/conversations/{id}/members?after={}&limit=1", alice.id),
            &carol,
        )
        .await;
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["user"]["username"], "bob");

    // The seed's direct conversation is unchanged beside groups.
    let direct = app.start_conversation_raw(&alice, "bob").await;
    assert_eq!(direct.status(), StatusCode::CREATED);
    let direct: Value = direct.json().await.unwrap();
    assert_eq!(direct["kind"], "direct");
    assert_eq!(direct["otherParticipant"]["username"], "bob");
}

#[tokio::test]
async fn members_see_the_creation_and_messages_live_and_in_commit_order() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let carol = app.login("carol").await;
    let mut bob_stream = app.stream(&bob, None).await;
    let group = app.create_group(&alice, &[&bob, &carol], "Trip").await;
    let id = group["id"].as_str().unwrap();

    let created = next_named(&mut bob_stream, "conversation").await;
    let data = created.json();
    assert_eq!(data["change"], "created");
    assert_eq!(data["conversationId"], id);
    assert_eq!(data["title"], "Trip");
    assert_eq!(data["actor"]["username"], "alice");
    assert!(created.id.is_some(), "every event has an id");

    let sent = app.send_message(&alice, id, "Who books the train?").await;
    let live = bob_stream.next_message().await;
    assert_eq!(live["id"], sent["id"]);
    assert_eq!(live["mine"], false);
    assert_eq!(live["conversationId"], id);

    // Rename: a named event to every member, and the new title on the conversation.
    let (status, renamed) = app
        .group_call(
            reqwest::Method::PATCH,
            &format!("/api/conversations/{id}"),
            &alice,
            Some(json!({ "title": "Trip to Lyon" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(renamed["title"], "Trip to Lyon");
    let event = next_named(&mut bob_stream, "conversation").await.json();
    assert_eq!(event["change"], "renamed");
    assert_eq!(event["title"], "Trip to Lyon");

    // Resume from before the message: the message and the rename come back, in order, once.
    let mut resumed = app.stream(&bob, created.id.as_deref()).await;
    let first = resumed.next_event(PATIENCE).await.unwrap();
    assert_eq!(first.event, None);
    assert_eq!(first.json()["id"], sent["id"]);
    let second = resumed.next_event(PATIENCE).await.unwrap();
    assert_eq!(second.event.as_deref(), Some("conversation"));
    assert_eq!(second.json()["change"], "renamed");
    resumed.assert_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_removed_member_gets_one_event_then_nothing_and_404_on_every_route() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let carol = app.login("carol").await;
    let group = app.create_group(&alice, &[&bob, &carol], "Team").await;
    let id = group["id"].as_str().unwrap().to_owned();
    let before = app.send_message(&alice, &id, "before").await;
    let mut bob_stream = app.stream(&bob, None).await;
    let mut carol_stream = app.stream(&carol, None).await;

    assert_eq!(app.remove(&alice, &id, &bob).await, StatusCode::NO_CONTENT);
    let removed = next_named(&mut bob_stream, "member").await;
    let data = removed.json();
    assert_eq!(data["change"], "removed");
    assert_eq!(data["users"][0]["username"], "bob");
    assert_eq!(
        next_named(&mut carol_stream, "member").await.json()["change"],
        "removed"
    );

    let after = app.send_message(&alice, &id, "after").await;
    assert_eq!(carol_stream.next_message().await["id"], after["id"]);
    bob_stream.assert_quiet(Duration::from_millis(500)).await;

    // Every route of the conversation answers him 404.
    for path in [
        format!("/api/conversations/{id}"),
        format!("/api/conversations/{id}/messages"),
        format!("/api/conversations/{id}/members"),
    ] {
        let status = app.get(&path, &bob).send().await.unwrap().status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let send = app.send_message_raw(&bob, &id, "let me in").await;
    assert_eq!(send.status(), StatusCode::NOT_FOUND);
    let list: Vec<Value> = app.get_json("/api/conversations", &bob).await;
    assert!(list.is_empty(), "dropped from his list: {list:?}");

    // Resuming from before the removal replays the removal, never what came after.
    let mut resumed = app.stream(&bob, None).await;
    let opening = resumed.next_block(PATIENCE).await.unwrap();
    let instance = opening.id.unwrap().rsplit_once('-').unwrap().0.to_owned();
    let cursor = format!("{instance}-{}", before["id"].as_str().unwrap());
    let mut replay = app.stream(&bob, Some(&cursor)).await;
    let event = replay.next_event(PATIENCE).await.unwrap();
    assert_eq!(event.event.as_deref(), Some("member"));
    assert_eq!(event.id, removed.id);
    replay.assert_quiet(Duration::from_millis(300)).await;

    // Adding him again works: he gets the add and what follows.
    assert_eq!(app.add(&alice, &id, &[&bob]).await, StatusCode::OK);
    let added = next_named(&mut resumed, "member").await.json();
    assert_eq!(added["change"], "added");
    let again = app.send_message(&alice, &id, "welcome back").await;
    assert_eq!(resumed.next_message().await["id"], again["id"]);
}

#[tokio::test]
async fn joined_history_hides_earlier_messages_and_shared_history_shows_them() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let dave = app.login("dave").await;
    for (history, visible) in [("shared", 2), ("joined", 1)] {
        let response = app
            .create_group_raw(
                &alice,
                json!({ "usernames": ["bob"], "title": history, "history": history }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let group: Value = response.json().await.unwrap();
        assert_eq!(group["history"], history);
        let id = group["id"].as_str().unwrap();
        app.send_message(&alice, id, "before dave").await;
        assert_eq!(app.add(&alice, id, &[&dave]).await, StatusCode::OK);
        app.send_message(&bob, id, "after dave").await;
        let page: Vec<Value> = app
            .get_json(&format!("/api/conversations/{id}/messages"), &dave)
            .await;
        assert_eq!(page.len(), visible, "{history}: {page:?}");
        assert_eq!(page[0]["content"], "after dave");
    }
}

#[tokio::test]
async fn unread_count_is_exact_and_clears_on_read() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let group = app.create_group(&alice, &[&bob], "Counts").await;
    let id = group["id"].as_str().unwrap();
    for i in 0..7 {
        app.send_message(&alice, id, &format!("m{i}")).await;
    }
    let view: Value = app
        .get_json(&format!("/api/conversations/{id}"), &bob)
        .await;
    assert_eq!(view["unreadCount"], 7);
    assert_eq!(view["hasUnreadMessages"], true);
    let alice_view: Value = app
        .get_json(&format!("/api/conversations/{id}"), &alice)
        .await;
    assert_eq!(alice_view["unreadCount"], 0, "one's own messages are read");
    let read = app
        .post(&format!("/api/conversations/{id}/read_messages"), &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::NO_CONTENT);
    app.send_message(&alice, id, "one more").await;
    let list: Vec<Value> = app.get_json("/api/conversations", &bob).await;
    assert_eq!(list[0]["unreadCount"], 1);
}

#[tokio::test]
async fn the_last_owner_leaving_hands_the_group_to_the_longest_standing_admin() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let carol = app.login("carol").await;
    let group = app.create_group(&alice, &[&bob, &carol], "Heirs").await;
    let id = group["id"].as_str().unwrap();
    let (status, member) = app
        .group_call(
            reqwest::Method::PATCH,
            &format!("/api/conversations/{id}/members/{}", carol.id),
            &alice,
            Some(json!({ "role": "admin" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(member["role"], "admin");
    let mut carol_stream = app.stream(&carol, None).await;
    let (status, _) = app
        .group_call(
            reqwest::Method::POST,
            &format!("/api/conversations/{id}/leave"),
            &alice,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let left = next_named(&mut carol_stream, "member").await.json();
    assert_eq!(left["change"], "left");
    assert_eq!(left["newOwnerId"], carol.id);
    let view: Value = app
        .get_json(&format!("/api/conversations/{id}"), &carol)
        .await;
    assert_eq!(view["role"], "owner");
    assert_eq!(view["memberCount"], 2);
    let gone = app
        .get(&format!("/api/conversations/{id}"), &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_group_input_gets_a_clear_json_error_and_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let carol = app.login("carol").await;
    let eve = app.login("eve").await;

    let cases = [
        (json!({ "usernames": ["bob"], "title": "   " }), "title"),
        (json!({ "usernames": ["bob"] }), "title"),
        (
            json!({ "usernames": ["bob"], "title": "x".repeat(101) }),
            "title",
        ),
        (
            json!({ "usernames": ["bob", "BOB"], "title": "t" }),
            "usernames",
        ),
        (
            json!({ "usernames": ["bob", "nobody", "ghost"], "title": "t" }),
            "usernames",
        ),
        (
            json!({ "usernames": ["bob"], "title": "t", "history": "all" }),
            "history",
        ),
    ];
    for (body, field) in cases {
        let response = app.create_group_raw(&alice, body.clone()).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let error: Value = response.json().await.unwrap();
        assert!(error["errors"][field].is_string(), "{body}: {error}");
    }
    let unknown: Value = app
        .create_group_raw(
            &alice,
            json!({ "usernames": ["nobody", "ghost"], "title": "t" }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        unknown["errors"]["usernames"],
        "Unknown usernames: nobody, ghost"
    );
    let list: Vec<Value> = app.get_json("/api/conversations", &alice).await;
    assert!(list.is_empty(), "nothing was created");

    let group = app.create_group(&alice, &[&bob, &carol], "Rules").await;
    let id = group["id"].as_str().unwrap();
    // An existing member; the last owner; a member doing an admin's job.
    assert_eq!(app.add(&alice, id, &[&bob]).await, StatusCode::CONFLICT);
    let (status, body) = app
        .group_call(
            reqwest::Method::PATCH,
            &format!("/api/conversations/{id}/members/{}", alice.id),
            &alice,
            Some(json!({ "role": "member" })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].is_string());
    assert_eq!(app.remove(&bob, id, &carol).await, StatusCode::FORBIDDEN);
    assert_eq!(app.add(&bob, id, &[&eve]).await, StatusCode::FORBIDDEN);
    let (status, _) = app
        .group_call(
            reqwest::Method::PATCH,
            &format!("/api/conversations/{id}"),
            &bob,
            Some(json!({ "title": "Mine now" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A stranger gets 404 on every route, and learns nothing about who exists.
    assert_eq!(app.add(&eve, id, &[&eve]).await, StatusCode::NOT_FOUND);
    assert_eq!(app.remove(&eve, id, &bob).await, StatusCode::NOT_FOUND);
    for path in ["", "/members", "/messages", "/other_participant"] {
        let status = app
            .get(&format!("/api/conversations/{id}{path}"), &eve)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    // A group has no other participant; a direct conversation is not a group.
    let other = app
        .get(&format!("/api/conversations/{id}/other_participant"), &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    let direct = app.conversation_between(&alice, &eve).await;
    assert_eq!(
        app.add(&alice, &direct, &[&bob]).await,
        StatusCode::CONFLICT
    );

    let view: Value = app
        .get_json(&format!("/api/conversations/{id}"), &alice)
        .await;
    assert_eq!(view["title"], "Rules");
    assert_eq!(view["memberCount"], 3);
}

#[tokio::test]
async fn the_group_size_limit_is_enforced() {
    let app = spawn_app_with(|c| c.max_group_members = 3).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let carol = app.login("carol").await;
    let dave = app.login("dave").await;
    let response = app
        .create_group_raw(
            &alice,
            json!({ "usernames": ["bob", "carol", "dave"], "title": "Big" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let group = app.create_group(&alice, &[&bob, &carol], "Full").await;
    let id = group["id"].as_str().unwrap();
    assert_eq!(
        app.add(&alice, id, &[&dave]).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

/// Sends race removals and re-additions of bob. Whatever the interleaving, bob receives
/// exactly the messages whose positions lie between an `added` and the next `removed` of his
/// own (both inclusive of the events themselves), live and on a resume from the start.
#[tokio::test]
async fn membership_changes_racing_sends_never_leak_or_withhold_a_message() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let carol = app.login("carol").await;
    let mut live = app.stream(&bob, None).await;
    let opening = live.next_block(PATIENCE).await.unwrap();
    let start_cursor = opening.id.unwrap();
    let group = app.create_group(&alice, &[&bob, &carol], "Race").await;
    let id = group["id"].as_str().unwrap().to_owned();

    let senders = [alice.clone(), carol.clone()].map(|sender| {
        let client = app.client.clone();
        let url = app.url(&format!("/api/conversations/{id}/messages"));
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..40 {
                let response = client
                    .post(&url)
                    .bearer_auth(&sender.token)
                    .json(&json!({ "content": format!("{} {i}", sender.username) }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::CREATED);
                let body: Value = response.json().await.unwrap();
                ids.push(body["id"].as_str().unwrap().parse::<i64>().unwrap());
            }
            ids
        })
    });
    for _ in 0..6 {
        assert_eq!(app.remove(&alice, &id, &bob).await, StatusCode::NO_CONTENT);
        tokio::task::yield_now().await;
        assert_eq!(app.add(&alice, &id, &[&bob]).await, StatusCode::OK);
    }
    let mut sent = BTreeSet::new();
    for sender in senders {
        sent.extend(sender.await.unwrap());
    }
    let end = app.send_message(&alice, &id, "end").await;
    sent.insert(end["id"].as_str().unwrap().parse().unwrap());

    let mut resumed = app.stream(&bob, Some(&start_cursor)).await;
    for (name, stream) in [("live", &mut live), ("resumed", &mut resumed)] {
        let mut received = BTreeSet::new();
        let mut member_from: Option<i64> = None;
        let mut spans = Vec::new();
        loop {
            let event = stream.next_event(PATIENCE).await.expect("an event");
            let position: i64 = event
                .id
                .as_ref()
                .unwrap()
                .rsplit_once('-')
                .unwrap()
                .1
                .parse()
                .unwrap();
            let data = event.json();
            match event.event.as_deref() {
                None => {
                    assert!(received.insert(position), "{name}: {position} twice");
                    if data["content"] == "end" {
                        break;
                    }
                }
                Some("conversation") => member_from = Some(position),
                Some("member") => {
                    let about_bob = data["users"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|u| u["username"] == "bob");
                    match data["change"].as_str().unwrap() {
                        "added" if about_bob => member_from = Some(position),
                        "removed" if about_bob => {
                            spans.push((
                                member_from.take().expect("removed while a member"),
                                position,
                            ));
                        }
                        _ => {}
                    }
                }
                other => panic!("{name}: unexpected event {other:?}"),
            }
        }
        let open_from = member_from.expect("a member at the end");
        let inside = |p: i64| spans.iter().any(|&(a, b)| a < p && p < b) || p > open_from;
        let expected: BTreeSet<i64> = sent.iter().copied().filter(|&p| inside(p)).collect();
        let leaked: Vec<_> = received.difference(&expected).collect();
        let withheld: Vec<_> = expected.difference(&received).collect();
        assert!(leaked.is_empty(), "{name}: leaked {leaked:?}");
        assert!(withheld.is_empty(), "{name}: withheld {withheld:?}");
        assert_eq!(spans.len(), 6, "{name}: every removal seen");
    }
}
