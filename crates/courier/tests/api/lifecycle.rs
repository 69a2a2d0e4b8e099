//! A sent message's lifecycle: edits, deletes (tombstones whose text is really gone),
//! reactions and replies, live as named events, resumable from any cursor and across a
//! restart, with every refusal answered in JSON and changing nothing.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

impl TestApp {
    async fn call(
        &self,
        method: Method,
        path: &str,
        user: &TestUser,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.group_call(method, path, user, body).await
    }

    async fn edit(&self, user: &TestUser, c: &str, m: &str, content: &str) -> (StatusCode, Value) {
        let path = format!("/api/conversations/{c}/messages/{m}");
        let body = json!({ "content": content });
        self.call(Method::PATCH, &path, user, Some(body)).await
    }

    async fn delete(&self, user: &TestUser, c: &str, m: &str) -> (StatusCode, Value) {
        let path = format!("/api/conversations/{c}/messages/{m}");
        self.call(Method::DELETE, &path, user, None).await
    }

    async fn react(&self, user: &TestUser, c: &str, m: &str, emoji: &str, on: bool) -> StatusCode {
        let emoji = urlencoding_path(emoji);
        let path = format!("/api/conversations/{c}/messages/{m}/reactions/{emoji}");
        let method = if on { Method::PUT } else { Method::DELETE };
        self.call(method, &path, user, None).await.0
    }

    async fn reply(
        &self,
        user: &TestUser,
        c: &str,
        to: &str,
        content: &str,
    ) -> (StatusCode, Value) {
        let path = format!("/api/conversations/{c}/messages");
        let body = json!({ "content": content, "replyTo": to });
        self.call(Method::POST, &path, user, Some(body)).await
    }

    /// The message as `user` reads it in the newest page of history.
    async fn in_history(&self, user: &TestUser, c: &str, m: &str) -> Value {
        let page: Vec<Value> = self.messages(user, c, None).await.json().await.unwrap();
        page.into_iter()
            .find(|x| x["id"] == m)
            .expect("the message is in the newest page")
    }

    /// How many stored rows (messages and log entries) still contain `needle`.
    async fn stored_rows_containing(&self, needle: &str) -> i64 {
        use sqlx::Connection;
        let pattern = format!("%{needle}%");
        let sql = "SELECT (SELECT COUNT(*) FROM messages WHERE content LIKE $1)
                        + (SELECT COUNT(*) FROM conversation_events WHERE payload LIKE $1)";
        match &self.config.database_url {
            Some(url) => {
                let mut db = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar(sql)
                    .bind(pattern)
                    .fetch_one(&mut db)
                    .await
                    .unwrap()
            }
            None => {
                let path = self.data_dir.path().join("courier.db");
                let url = format!("sqlite://{}", path.display());
                let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query_scalar(sql)
                    .bind(pattern)
                    .fetch_one(&mut db)
                    .await
                    .unwrap()
            }
        }
    }
}

/// Percent-encodes a path segment (emoji are not allowed raw in a URL).
fn urlencoding_path(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The next event that is not a plain message nor a read receipt.
async fn next_change(stream: &mut SseStream) -> SseEvent {
    loop {
        let event = stream.next_event(PATIENCE).await.expect("an event in time");
        if event.event.is_some() && event.event.as_deref() != Some("read") {
            return event;
        }
    }
}

/// The next event that is not a read receipt (reading history moves markers).
async fn next_but_receipts(stream: &mut SseStream) -> SseEvent {
    loop {
        let event = stream.next_event(PATIENCE).await.expect("an event in time");
        if event.event.as_deref() != Some("read") {
            return event;
        }
    }
}

struct Pair {
    app: TestApp,
    alice: TestUser,
    bob: TestUser,
    conversation: String,
}

async fn pair() -> Pair {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let conversation = app.conversation_between(&alice, &bob).await;
    Pair {
        app,
        alice,
        bob,
        conversation,
    }
}

#[tokio::test]
async fn the_author_edits_and_everyone_sees_it_live_and_in_history() {
    let Pair {
        app,
        alice,
        bob,
        conversation: c,
    } = pair().await;
    let sent = app.send_message(&alice, &c, "helo").await;
    let m = sent["id"].as_str().unwrap();
    assert_eq!(sent["editedAt"], Value::Null);
    let mut bobs = app.stream(&bob, None).await;

    let (status, edited) = app.edit(&alice, &c, m, "  hello  ").await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["content"], "hello");
    assert!(edited["editedAt"].is_string());
    assert_eq!(edited["id"], m);

    let event = next_change(&mut bobs).await;
    assert_eq!(event.event.as_deref(), Some("message-edited"));
    assert!(event.id.is_some(), "an edit is on the log: it has an id");
    let data = event.json();
    assert_eq!(data["messageId"], m);
    assert_eq!(data["content"], "hello");
    assert_eq!(data["conversationId"], c.as_str());
    assert_eq!(data["actor"]["username"], "alice");

    // A seed client sees the new text when it refetches.
    let seen = app.in_history(&bob, &c, m).await;
    assert_eq!(seen["content"], "hello");
    assert_eq!(seen["editedAt"], edited["editedAt"]);
    let list: Vec<Value> = app.conversations(&bob, None).await.json().await.unwrap();
    assert_eq!(list[0]["lastMessage"]["content"], "hello");

    // The same text again is not a change: no event (the next one is the marker message).
    let (status, _) = app.edit(&alice, &c, m, "hello").await;
    assert_eq!(status, StatusCode::OK);
    app.send_message(&alice, &c, "marker").await;
    let next = next_but_receipts(&mut bobs).await;
    assert_eq!(next.event, None);
    assert_eq!(next.json()["content"], "marker");
}

#[tokio::test]
async fn edits_are_refused_to_others_to_strangers_and_for_bad_text_and_change_nothing() {
    let Pair {
        app,
        alice,
        bob,
        conversation: c,
    } = pair().await;
    let eve = app.login("eve").await;
    let m = app.send_message(&alice, &c, "original").await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, body) = app.edit(&bob, &c, &m, "hijacked").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"].is_string(), "{body}");
    let (status, body) = app.edit(&eve, &c, &m, "hijacked").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app.edit(&alice, &c, &m, "   ").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = app.edit(&alice, &c, &m, &"x".repeat(481)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app.edit(&alice, &c, &m, "nul\u{0}").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Malformed and missing ids are 404, like every id in the API.
    for bad in ["abc", "0", "-1", "99999999"] {
        let (status, body) = app.edit(&alice, &c, bad, "x").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}: {body}");
    }
    // A message of another conversation is not found through this one.
    let other = app.conversation_between(&alice, &eve).await;
    let (status, _) = app.edit(&alice, &other, &m, "moved").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert_eq!(app.in_history(&alice, &c, &m).await["content"], "original");
    assert_eq!(app.in_history(&bob, &c, &m).await["editedAt"], Value::Null);
}

#[tokio::test]
async fn the_edit_window_limits_editing_and_zero_forbids_it() {
    let app =
        spawn_app_with(|c| c.edit_window = courier::config::EditWindow(Some(Default::default())))
            .await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;
    let m = app.send_message(&alice, &c, "carved").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = app.edit(&alice, &c, &m, "changed").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no longer"),
        "{body}"
    );
    // Deleting is still allowed.
    assert_eq!(app.delete(&alice, &c, &m).await.0, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_delete_leaves_a_tombstone_and_the_text_is_gone_from_the_store() {
    let Pair {
        app,
        alice,
        bob,
        conversation: c,
    } = pair().await;
    let m = app.send_message(&alice, &c, "my secret-password-1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = app.edit(&alice, &c, &m, "my secret-password-2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        app.react(&bob, &c, &m, "😮", true).await,
        StatusCode::NO_CONTENT
    );
    assert!(app.stored_rows_containing("secret-password").await >= 2);
    let mut bobs = app.stream(&bob, None).await;

    // Bob is not the author of a direct message: only its author deletes it.
    let (status, body) = app.delete(&bob, &c, &m).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = app.delete(&alice, &c, &m).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let event = next_change(&mut bobs).await;
    assert_eq!(event.event.as_deref(), Some("message-deleted"));
    assert_eq!(event.json()["messageId"], m.as_str());

    let tomb = app.in_history(&bob, &c, &m).await;
    assert_eq!(tomb["content"], "");
    assert!(tomb["deletedAt"].is_string());
    assert_eq!(tomb["reactions"], json!([]));
    assert_eq!(
        app.stored_rows_containing("secret-password").await,
        0,
        "neither the message nor its edit event keeps the text"
    );

    // A tombstone cannot be edited or reacted to; deleting again changes nothing.
    let (status, body) = app.edit(&alice, &c, &m, "back").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        app.react(&bob, &c, &m, "👍", true).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(app.delete(&alice, &c, &m).await.0, StatusCode::NO_CONTENT);
    app.send_message(&alice, &c, "marker").await;
    let next = next_but_receipts(&mut bobs).await;
    assert_eq!(next.json()["content"], "marker", "no second delete event");
}

#[tokio::test]
async fn group_admins_delete_any_message_and_members_only_their_own() {
    let app = spawn_app().await;
    let owner = app.login("owner").await;
    let ann = app.login("ann").await;
    let ben = app.login("ben").await;
    let group = app.create_group(&owner, &[&ann, &ben], "Team").await;
    let g = group["id"].as_str().unwrap();
    let anns = app.send_message(&ann, g, "from ann").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = app.delete(&ben, g, &anns).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.delete(&owner, g, &anns).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(app.in_history(&ben, g, &anns).await["deletedAt"].is_string());
}

#[tokio::test]
async fn reactions_count_per_emoji_say_mine_and_are_idempotent() {
    let Pair {
        app,
        alice,
        bob,
        conversation: c,
    } = pair().await;
    let m = app.send_message(&alice, &c, "lunch?").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut alices = app.stream(&alice, None).await;

    assert_eq!(
        app.react(&bob, &c, &m, "👍", true).await,
        StatusCode::NO_CONTENT
    );
    let event = next_change(&mut alices).await;
    assert_eq!(event.event.as_deref(), Some("reaction"));
    assert!(event.id.is_some());
    let data = event.json();
    assert_eq!(data["messageId"], m.as_str());
    assert_eq!(data["emoji"], "👍");
    assert_eq!(data["added"], true);
    assert_eq!(data["count"], 1);
    assert_eq!(data["actor"]["id"], bob.id.as_str());

    // Again: nothing changes, no event.
    assert_eq!(
        app.react(&bob, &c, &m, "👍", true).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.react(&alice, &c, &m, "👍", true).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.react(&alice, &c, &m, "🍕", true).await,
        StatusCode::NO_CONTENT
    );
    let next = next_change(&mut alices).await.json();
    assert_eq!(
        (next["emoji"].as_str(), next["count"].as_i64()),
        (Some("👍"), Some(2))
    );
    let next = next_change(&mut alices).await.json();
    assert_eq!(next["emoji"], "🍕");

    let bobs_view = app.in_history(&bob, &c, &m).await;
    assert_eq!(
        bobs_view["reactions"],
        json!([{"emoji": "👍", "count": 2, "mine": true}, {"emoji": "🍕", "count": 1, "mine": false}])
    );
    // The presentation selector is optional on the way in: one heart, whichever way.
    assert_eq!(
        app.react(&bob, &c, &m, "❤", true).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.react(&alice, &c, &m, "❤️", true).await,
        StatusCode::NO_CONTENT
    );
    let hearts = app.in_history(&alice, &c, &m).await["reactions"][2].clone();
    assert_eq!(hearts, json!({"emoji": "❤️", "count": 2, "mine": true}));

    // Who reacted, on request.
    let path = format!("/api/conversations/{c}/messages/{m}/reactions");
    let who: Value = app.get_json(&path, &alice).await;
    assert_eq!(who[0]["emoji"], "👍");
    let names: Vec<&str> = who[0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob", "alice"]);

    // Taking one back, twice.
    assert_eq!(
        app.react(&bob, &c, &m, "👍", false).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.react(&bob, &c, &m, "👍", false).await,
        StatusCode::NO_CONTENT
    );
    let view = app.in_history(&bob, &c, &m).await;
    assert_eq!(
        view["reactions"][0],
        json!({"emoji": "👍", "count": 1, "mine": false})
    );
}

#[tokio::test]
async fn reactions_refuse_non_emoji_strangers_and_past_the_limits() {
    let Pair {
        app,
        alice,
        bob,
        conversation: c,
    } = pair().await;
    let eve = app.login("eve").await;
    let m = app.send_message(&alice, &c, "react to me").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for bad in ["a", "👍👍", ":+1:", "🏽", "%20"] {
        let path = format!("/api/conversations/{c}/messages/{m}/reactions/{bad}");
        let (status, body) = app.call(Method::PUT, &path, &bob, None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert!(body["errors"]["emoji"].is_string(), "{body}");
    }
    assert_eq!(
        app.react(&eve, &c, &m, "👍", true).await,
        StatusCode::NOT_FOUND
    );
    let path = format!("/api/conversations/{c}/messages/{m}/reactions");
    assert_eq!(
        app.call(Method::GET, &path, &eve, None).await.0,
        StatusCode::NOT_FOUND
    );
    let path = format!("/api/conversations/{c}/messages/{m}");
    assert_eq!(
        app.call(Method::GET, &path, &eve, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.delete(&eve, &c, &m).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn reactions_stop_at_ten_per_person_and_twenty_emoji_per_message() {
    let app = spawn_app().await;
    let owner = app.login("owner").await;
    let ann = app.login("ann").await;
    let ben = app.login("ben").await;
    let group = app.create_group(&owner, &[&ann, &ben], "Emoji party").await;
    let g = group["id"].as_str().unwrap();
    let m = app.send_message(&owner, g, "react!").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let emoji = [
        "😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆", "😉", "😊", "😋", "😎", "😍", "😘", "🥰",
        "😗", "😙", "🥲", "😚", "🙂", "🤗",
    ];
    for e in &emoji[..10] {
        assert_eq!(
            app.react(&ann, g, &m, e, true).await,
            StatusCode::NO_CONTENT
        );
    }
    let path = |e: &str| {
        format!(
            "/api/conversations/{g}/messages/{m}/reactions/{}",
            urlencoding_path(e)
        )
    };
    let (status, body) = app.call(Method::PUT, &path(emoji[10]), &ann, None).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an 11th by one person"
    );
    assert!(
        body["errors"]["emoji"].as_str().unwrap().contains("10"),
        "{body}"
    );
    for e in &emoji[10..20] {
        assert_eq!(
            app.react(&ben, g, &m, e, true).await,
            StatusCode::NO_CONTENT
        );
    }
    let (status, body) = app.call(Method::PUT, &path(emoji[20]), &owner, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a 21st emoji");
    assert!(
        body["errors"]["emoji"].as_str().unwrap().contains("20"),
        "{body}"
    );
    // An emoji already there is not a new one.
    assert_eq!(
        app.react(&owner, g, &m, emoji[0], true).await,
        StatusCode::NO_CONTENT
    );
    let view = app.in_history(&owner, g, &m).await;
    assert_eq!(view["reactions"].as_array().unwrap().len(), 20);
    assert_eq!(
        view["reactions"][0],
        json!({"emoji": "😀", "count": 2, "mine": true})
    );
}

#[tokio::test]
async fn replies_quote_the_original_and_follow_its_edits_and_delete() {
    let Pair {
        app,
        alice,
        bob,
        conversation: c,
    } = pair().await;
    let long = "q".repeat(150);
    let original = app.send_message(&alice, &c, &long).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut alices = app.stream(&alice, None).await;
    let (status, reply) = app.reply(&bob, &c, &original, "answer").await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let quote = &reply["replyTo"];
    assert_eq!(quote["id"], original.as_str());
    assert_eq!(quote["sender"]["username"], "alice");
    assert_eq!(quote["preview"], format!("{}…", "q".repeat(100)));
    assert_eq!(quote["deleted"], false);
    let live = alices.next_message().await;
    assert_eq!(
        live["replyTo"]["id"],
        original.as_str(),
        "the live event quotes too"
    );
    let r = reply["id"].as_str().unwrap().to_owned();

    app.edit(&alice, &c, &original, "fixed").await;
    assert_eq!(
        app.in_history(&bob, &c, &r).await["replyTo"]["preview"],
        "fixed"
    );
    app.delete(&alice, &c, &original).await;
    let quote = app.in_history(&bob, &c, &r).await["replyTo"].clone();
    assert_eq!(quote["preview"], Value::Null);
    assert_eq!(quote["deleted"], true);

    // Replies to a tombstone, to another conversation's message, or to nonsense are refused.
    let (status, body) = app.reply(&bob, &c, &original, "late").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let eve = app.login("eve").await;
    let elsewhere = app.conversation_between(&bob, &eve).await;
    let foreign = app.send_message(&eve, &elsewhere, "not yours").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = app.reply(&alice, &c, &foreign, "leak?").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["errors"]["replyTo"].is_string(), "{body}");
    let (status, _) = app.reply(&alice, &c, "not-an-id", "x").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // A stranger is told the conversation does not exist, not about the reply.
    let (status, _) = app.reply(&eve, &c, &r, "x").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let page: Vec<Value> = app.messages(&alice, &c, None).await.json().await.unwrap();
    assert_eq!(page.len(), 2, "no refused reply was stored");
}

#[tokio::test]
async fn every_kind_is_replayed_on_resume_and_after_a_restart() {
    let Pair {
        app,
        alice,
        bob,
        conversation: c,
    } = pair().await;
    let m = app.send_message(&alice, &c, "first").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = app.send_message(&alice, &c, "second").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bobs = app.stream(&bob, None).await;
    let cursor = bobs
        .next_block(PATIENCE)
        .await
        .unwrap()
        .id
        .expect("open cursor");
    drop(bobs);

    app.edit(&alice, &c, &m, "first, edited").await;
    app.react(&alice, &c, &m, "🎉", true).await;
    app.delete(&alice, &c, &other).await;
    let app = app.restart().await;

    let mut bobs = app.stream(&bob, Some(&cursor)).await;
    let kinds: Vec<(Option<String>, Value)> = {
        let mut got = Vec::new();
        for _ in 0..3 {
            let e = bobs.next_event(PATIENCE).await.expect("replayed");
            assert!(e.id.is_some());
            got.push((e.event.clone(), e.json()));
        }
        got
    };
    assert_eq!(kinds[0].0.as_deref(), Some("message-edited"));
    assert_eq!(kinds[0].1["content"], "first, edited");
    assert_eq!(kinds[1].0.as_deref(), Some("reaction"));
    assert_eq!(kinds[1].1["emoji"], "🎉");
    assert_eq!(kinds[2].0.as_deref(), Some("message-deleted"));
    assert_eq!(kinds[2].1["messageId"], other.as_str());
}

#[tokio::test]
async fn a_resume_from_before_a_deleted_message_never_brings_its_text_back() {
    let Pair {
        app,
        alice,
        bob,
        conversation: c,
    } = pair().await;
    let mut bobs = app.stream(&bob, None).await;
    let cursor = bobs
        .next_block(PATIENCE)
        .await
        .unwrap()
        .id
        .expect("open cursor");
    drop(bobs);
    let m = app.send_message(&alice, &c, "oops wrong chat").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.edit(&alice, &c, &m, "oops wrong chat!").await;
    app.delete(&alice, &c, &m).await;

    let mut bobs = app.stream(&bob, Some(&cursor)).await;
    let message = bobs.next_event(PATIENCE).await.unwrap();
    assert_eq!(message.event, None);
    assert_eq!(message.json()["content"], "");
    assert!(message.json()["deletedAt"].is_string());
    let edit = bobs.next_event(PATIENCE).await.unwrap();
    assert_eq!(edit.event.as_deref(), Some("message-edited"));
    assert_eq!(edit.json()["content"], Value::Null, "the edit was scrubbed");
    let delete = bobs.next_event(PATIENCE).await.unwrap();
    assert_eq!(delete.event.as_deref(), Some("message-deleted"));
}

#[tokio::test]
async fn members_who_joined_later_under_joined_history_hear_nothing_about_older_messages() {
    let app = spawn_app().await;
    let owner = app.login("owner").await;
    let ann = app.login("ann").await;
    let late = app.login("late").await;
    let (status, group) = app
        .call(
            Method::POST,
            "/api/conversations",
            &owner,
            Some(json!({ "usernames": [ann.username], "title": "Private past", "history": "joined" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let g = group["id"].as_str().unwrap();
    let old = app.send_message(&ann, g, "before you came").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/conversations/{g}/members");
    let body = json!({ "usernames": [late.username] });
    assert_eq!(
        app.call(Method::POST, &path, &owner, Some(body)).await.0,
        StatusCode::OK
    );
    let mut lates = app.stream(&late, None).await;
    let cursor = lates.next_block(PATIENCE).await.unwrap().id.unwrap();

    app.edit(&ann, g, &old, "before you came, edited").await;
    assert_eq!(
        app.react(&late, g, &old, "👀", true).await,
        StatusCode::NOT_FOUND
    );
    let (status, _) = app.reply(&late, g, &old, "what was it?").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let newer = app.send_message(&ann, g, "hello late").await;
    let (_, reply) = app.reply(&ann, g, &old, "about that").await;
    // The live reply leaves the old text out for everyone; a read fills it in per viewer.
    assert_eq!(reply["replyTo"]["preview"], Value::Null);
    let anns = app.in_history(&ann, g, reply["id"].as_str().unwrap()).await;
    assert_eq!(anns["replyTo"]["preview"], "before you came, edited");
    let first = lates.next_event(PATIENCE).await.unwrap();
    assert_eq!(
        first.event, None,
        "no edit event for a message late cannot read"
    );
    assert_eq!(first.json()["id"], newer["id"]);
    let live_reply = lates.next_event(PATIENCE).await.unwrap().json();
    assert_eq!(live_reply["replyTo"]["preview"], Value::Null);
    let read = app
        .in_history(&late, g, reply["id"].as_str().unwrap())
        .await;
    assert_eq!(read["replyTo"]["preview"], Value::Null);

    let mut resumed = app.stream(&late, Some(&cursor)).await;
    let first = resumed.next_event(PATIENCE).await.unwrap();
    assert_eq!(first.json()["id"], newer["id"], "nor on resume");
}
