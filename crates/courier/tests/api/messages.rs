use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn a_sent_message_is_normalised_and_returned_with_string_ids_and_millisecond_utc_time() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let message = app
        .send_message(&alice, &id, "  hello   there \n\n\t second\tline  ")
        .await;
    assert_eq!(message["content"], "hello there\nsecond line");
    assert_eq!(message["conversationId"], id);
    assert_eq!(message["mine"], true);
    assert!(message["id"].is_string());
    let created = message["createdAt"].as_str().unwrap();
    // e.g. 2026-11-28T19:00:00.123Z
    assert_eq!(created.len(), 24, "{created}");
    assert!(
        created.ends_with('Z') && created.as_bytes()[19] == b'.',
        "{created}"
    );
}

#[tokio::test]
async fn empty_or_too_long_content_gets_422_and_stores_nothing() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    for content in ["", "   \n \t ", &"x".repeat(481)] {
        let response = app.send_message_raw(&alice, &id, content).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body: Value = response.json().await.unwrap();
        assert!(body["errors"]["content"].is_string(), "{body}");
    }
    let missing = app
        .post(&format!("/api/conversations/{id}/messages"), &alice)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.send_message(&alice, &id, &"é".repeat(480)).await;
    let messages: Vec<Value> = app.messages(&alice, &id, None).await.json().await.unwrap();
    assert_eq!(messages.len(), 1);
}

#[tokio::test]
async fn the_message_limit_is_configurable() {
    let app = spawn_app_with(|c| c.max_message_chars = 10).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    assert_eq!(
        app.send_message_raw(&alice, &id, "0123456789")
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.send_message_raw(&alice, &id, "0123456789a")
            .await
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn history_pages_newest_first_25_at_a_time_with_before() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let mut sent = Vec::new();
    for i in 0..30 {
        let who = if i % 2 == 0 { &alice } else { &bob };
        sent.push(app.send_message(who, &id, &format!("message {i}")).await);
    }
    let newest_first: Vec<String> = ids(&sent).into_iter().rev().collect();

    let page: Vec<Value> = app.messages(&bob, &id, None).await.json().await.unwrap();
    assert_eq!(ids(&page), newest_first[..25]);
    assert!(page.iter().all(|m| m["conversationId"] == id));
    assert_eq!(page[0]["mine"], true, "bob sent the newest (29th) message");
    assert_eq!(page[1]["mine"], false);
    let older: Vec<Value> = app
        .messages(&bob, &id, Some(&newest_first[24]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&older), newest_first[25..]);
    let none: Vec<Value> = app
        .messages(&bob, &id, Some(&newest_first[29]))
        .await
        .json()
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(
        app.messages(&bob, &id, Some("zzz")).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_retried_post_with_the_same_idempotency_key_creates_one_message() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let mut bob_stream = app.stream(&bob, None).await;
    let send = |content: &str, key: &str| {
        app.post(&format!("/api/conversations/{id}/messages"), &alice)
            .header("idempotency-key", key)
            .json(&json!({ "content": content }))
            .send()
    };
    let first = send("hello once", "key-1").await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let retry = send("hello once", "key-1").await.unwrap();
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.json::<Value>().await.unwrap(), first);
    // Concurrent retries of another key also collapse into one.
    let racing = futures::future::join_all((0..8).map(|_| send("racing", "key-2"))).await;
    let racing_ids: std::collections::HashSet<String> =
        futures::future::join_all(racing.into_iter().map(|r| async {
            r.unwrap().json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }))
        .await
        .into_iter()
        .collect();
    assert_eq!(racing_ids.len(), 1);

    let messages: Vec<Value> = app.messages(&alice, &id, None).await.json().await.unwrap();
    assert_eq!(messages.len(), 2);
    let delivered = bob_stream.messages(2, PATIENCE).await;
    assert_eq!(delivered.len(), 2);
    bob_stream
        .assert_quiet(std::time::Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn an_idempotency_key_reused_for_another_conversation_gets_422() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let carol = app.login("carol").await;
    let with_bob = app.conversation_between(&alice, &bob).await;
    let with_carol = app.conversation_between(&alice, &carol).await;
    let send = |conversation: &str| {
        app.post(
            &format!("/api/conversations/{conversation}/messages"),
            &alice,
        )
        .header("idempotency-key", "same")
        .json(&json!({ "content": "hi" }))
        .send()
    };
    assert_eq!(send(&with_bob).await.unwrap().status(), StatusCode::CREATED);
    let reused = send(&with_carol).await.unwrap();
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reused.json::<Value>().await.unwrap()["errors"]["idempotencyKey"].is_string());
}
