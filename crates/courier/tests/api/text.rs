//! Text the database or a person cannot take: control characters are refused with 422 in
//! every text field (on PostgreSQL a NUL must never reach the store), zero-width characters
//! are whitespace, direction overrides are stripped, and lookalike usernames are taken.

use crate::helpers::*;
use courier::config::SignupMode;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Asserts a 422 whose `errors` name `field`.
async fn assert_refused(response: reqwest::Response, field: &str, what: &str) {
    assert_eq!(
        response.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "{what}"
    );
    let body: Value = response.json().await.unwrap();
    assert!(body["errors"][field].is_string(), "{what}: {body}");
}

#[tokio::test]
async fn control_characters_in_a_message_are_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let conv = app.conversation_between(&alice, &bob).await;
    for bad in [
        "nul\0here",
        "\0",
        "esc \u{1b}[2J",
        "bell\u{7}",
        "del\u{7f}",
        "c1\u{85}",
    ] {
        let response = app.send_message_raw(&alice, &conv, bad).await;
        assert_refused(response, "content", &format!("{bad:?}")).await;
    }
    let stored: Vec<Value> = app
        .messages(&alice, &conv, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(stored.is_empty(), "{stored:?}");
    // Line breaks and tabs are still fine (tabs fold like any whitespace).
    let sent = app.send_message(&alice, &conv, "one\ttwo\nthree").await;
    assert_eq!(sent["content"], "one two\nthree");
}

#[tokio::test]
async fn a_message_of_zero_width_characters_is_empty_and_overrides_are_stripped() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let conv = app.conversation_between(&alice, &bob).await;
    let response = app
        .send_message_raw(&alice, &conv, "\u{200B}\u{200D}\u{FEFF} \u{2060}")
        .await;
    assert_refused(response, "content", "zero-width only").await;
    let sent = app
        .send_message(
            &alice,
            &conv,
            "invoice\u{202E}fdp.exe\u{202C} \u{2067}x\u{2069}",
        )
        .await;
    assert_eq!(sent["content"], "invoicefdp.exe x");
}

#[tokio::test]
async fn control_characters_in_titles_searches_usernames_and_passwords_are_refused() {
    let app = spawn_app_with(|c| c.signup = SignupMode::Open).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;

    let create = |title: &str| {
        app.post("/api/conversations", &alice)
            .json(&json!({ "usernames": ["bob"], "title": title }))
            .send()
    };
    assert_refused(create("club\0").await.unwrap(), "title", "title NUL").await;
    assert_refused(
        create("\u{200B}\u{202E}").await.unwrap(),
        "title",
        "title of only invisible characters",
    )
    .await;
    let group: Value = create("Book \u{202E}club")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(group["title"], "Book club");
    let id = group["id"].as_str().unwrap();
    let rename = app
        .client
        .patch(app.url(&format!("/api/conversations/{id}")))
        .bearer_auth(&alice.token)
        .json(&json!({ "title": "a\u{1}b" }))
        .send()
        .await
        .unwrap();
    assert_refused(rename, "title", "rename").await;

    for search in ["%00", "b%00", "%1B", "%7F"] {
        let response = app
            .get(&format!("/api/usernames?search={search}"), &alice)
            .send()
            .await
            .unwrap();
        assert_refused(response, "search", search).await;
    }

    assert_refused(
        app.login_raw(json!({ "username": "carol\0" })).await,
        "username",
        "dev login",
    )
    .await;
    let start = app.start_conversation_raw(&alice, "b\0b").await;
    assert_refused(start, "username", "start conversation").await;
    let members = app
        .post(&format!("/api/conversations/{id}/members"), &alice)
        .json(&json!({ "usernames": ["dave\0"] }))
        .send()
        .await
        .unwrap();
    assert_refused(members, "usernames", "add members").await;

    let signup = |username: &str, password: &str| {
        app.client
            .post(app.url("/api/signup"))
            .json(&json!({ "username": username, "password": password }))
            .send()
    };
    assert_refused(
        signup("erin\0", "violet-harbor-tractor-91").await.unwrap(),
        "username",
        "sign-up name",
    )
    .await;
    assert_refused(
        signup("erin", "violet-harbor\0tractor-91").await.unwrap(),
        "password",
        "sign-up password",
    )
    .await;
    let _ = bob;
}

#[tokio::test]
async fn a_username_that_looks_like_an_existing_one_is_taken() {
    let app = spawn_app_with(|c| c.signup = SignupMode::Open).await;
    let alice = app.login("alice").await;
    // The same name in another case is the same account, as before.
    assert_eq!(app.login("ALICE").await.id, alice.id);
    for lookalike in ["aIice", "a1ice", "A1ice"] {
        let response = app.login_raw(json!({ "username": lookalike })).await;
        assert_refused(response, "username", lookalike).await;
        let signup = app
            .client
            .post(app.url("/api/signup"))
            .json(&json!({ "username": lookalike, "password": "violet-harbor-tractor-91" }))
            .send()
            .await
            .unwrap();
        assert_refused(signup, "username", lookalike).await;
    }
    app.login("rnary").await;
    assert_refused(
        app.login_raw(json!({ "username": "mary" })).await,
        "username",
        "mary after rnary",
    )
    .await;
    // A different name is still free.
    app.login("alicia").await;
    // Unknown lookalikes name nobody: a conversation with one is 404, not someone else's.
    assert_eq!(
        app.start_conversation_raw(&alice, "b0b").await.status(),
        StatusCode::NOT_FOUND
    );
}
