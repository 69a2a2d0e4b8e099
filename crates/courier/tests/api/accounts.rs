use crate::helpers::*;
use courier::config::SignupMode;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const GOOD_PASSWORD: &str = "violet-harbor-tractor-91";

async fn sign_up(
    app: &TestApp,
    username: &str,
    password: &str,
    invite: Option<&str>,
) -> reqwest::Response {
    let body = json!({ "username": username, "password": password, "invite": invite });
    app.client
        .post(app.url("/api/signup"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn sign_in(app: &TestApp, username: &str, password: &str) -> reqwest::Response {
    let body = json!({ "username": username, "password": password });
    app.client
        .post(app.url("/api/signin"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn as_user(response: reqwest::Response) -> TestUser {
    let body: Value = response.json().await.unwrap();
    TestUser {
        id: body["authUser"]["id"].as_str().unwrap().to_owned(),
        username: body["authUser"]["username"].as_str().unwrap().to_owned(),
        token: body["token"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn password_accounts_sign_up_and_sign_in() {
    let app = spawn_app_with(|c| c.signup = SignupMode::Open).await;
    let created = sign_up(&app, "alice", GOOD_PASSWORD, None).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let alice = as_user(created).await;
    assert_eq!(app.auth_status(&alice).await, StatusCode::OK);

    let again = sign_in(&app, "ALICE", GOOD_PASSWORD).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(as_user(again).await.id, alice.id);

    let wrong = sign_in(&app, "alice", "violet-harbor-tractor-92").await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = sign_in(&app, "nobody", GOOD_PASSWORD).await;
    assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // The same answer either way: no account enumeration.
    assert_eq!(
        wrong.json::<Value>().await.unwrap(),
        unknown.json::<Value>().await.unwrap()
    );

    let taken = sign_up(&app, "Alice", GOOD_PASSWORD, None).await;
    assert_eq!(taken.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(taken.json::<Value>().await.unwrap()["errors"]["username"].is_string());
}

#[tokio::test]
async fn weak_passwords_are_refused() {
    let app = spawn_app_with(|c| c.signup = SignupMode::Open).await;
    for weak in ["short", "password123", "qwertyuiop123", "bobbobbob1"] {
        let response = sign_up(&app, "bob", weak, None).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{weak}"
        );
        assert!(response.json::<Value>().await.unwrap()["errors"]["password"].is_string());
    }
}

#[tokio::test]
async fn sign_up_by_invite_spends_each_code_once_and_closed_sign_up_refuses() {
    let app = spawn_app_with(|c| {
        c.signup = SignupMode::Invite;
        c.invite_codes = vec!["welcome-1".into()];
    })
    .await;
    let without = sign_up(&app, "carol", GOOD_PASSWORD, None).await;
    assert_eq!(without.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(without.json::<Value>().await.unwrap()["errors"]["invite"].is_string());
    assert_eq!(
        sign_up(&app, "carol", GOOD_PASSWORD, Some("nope"))
            .await
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        sign_up(&app, "carol", GOOD_PASSWORD, Some("welcome-1"))
            .await
            .status(),
        StatusCode::CREATED
    );
    let reused = sign_up(&app, "dave", GOOD_PASSWORD, Some("welcome-1")).await;
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let closed = spawn_app_with(|c| c.signup = SignupMode::Closed).await;
    assert_eq!(
        sign_up(&closed, "erin", GOOD_PASSWORD, None).await.status(),
        StatusCode::FORBIDDEN
    );
    let providers: Value = closed.providers().await;
    assert_eq!(providers["signup"], "closed");
}

#[tokio::test]
async fn password_accounts_can_be_turned_off() {
    let app = spawn_app_with(|c| c.password_auth = false).await;
    assert_eq!(
        sign_up(&app, "alice", GOOD_PASSWORD, None).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        sign_in(&app, "alice", GOOD_PASSWORD).await.status(),
        StatusCode::NOT_FOUND
    );
    let providers: Value = app.providers().await;
    assert_eq!(providers["password"], false);
}

#[tokio::test]
async fn password_attempts_are_rate_limited_per_account_and_per_address() {
    let app = spawn_app_with(|c| {
        c.signup = SignupMode::Open;
        c.login_attempts_per_account = 3.try_into().unwrap();
        c.login_attempts_per_ip = 6.try_into().unwrap();
    })
    .await;
    assert_eq!(
        sign_up(&app, "alice", GOOD_PASSWORD, None).await.status(),
        StatusCode::CREATED
    );
    for _ in 0..3 {
        assert_eq!(
            sign_in(&app, "alice", "wrong-password-000").await.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
    // The account is locked for now, even with the right password.
    let limited = sign_in(&app, "alice", GOOD_PASSWORD).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.json::<Value>().await.unwrap()["error"].is_string());
    // Other accounts from the same address run into the per-address limit next.
    let mut statuses = Vec::new();
    for i in 0..3 {
        statuses.push(
            sign_in(&app, &format!("someone{i}"), "wrong-password-000")
                .await
                .status(),
        );
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn sessions_are_listed_and_signing_one_out_ends_its_token_and_stream_at_once() {
    let app = spawn_app().await;
    let laptop = app.login("alice").await;
    let phone = app.login("alice").await;
    let sessions: Vec<Value> = app.get_json("/api/sessions", &laptop).await;
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(
        sessions
            .iter()
            .all(|s| s["device"].is_string() && s["lastSeenAt"].is_string())
    );
    let phone_session: Vec<Value> = app.get_json("/api/sessions", &phone).await;
    let phone_id = phone_session.iter().find(|s| s["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut phone_stream = app.stream(&phone, None).await;
    let mut laptop_stream = app.stream(&laptop, None).await;
    let out = app
        .client
        .delete(app.url(&format!("/api/sessions/{phone_id}")))
        .bearer_auth(&laptop.token)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);

    assert_eq!(app.auth_status(&phone).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.post("/api/refresh_token", &phone)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let signed_out = phone_stream
        .next_event(PATIENCE)
        .await
        .expect("a signed-out event");
    assert_eq!(signed_out.event.as_deref(), Some("signed-out"));
    assert!(
        phone_stream
            .next_block(Duration::from_secs(2))
            .await
            .is_none()
    );
    assert!(phone_stream.ended, "the revoked session's stream closed");
    // The other session is untouched.
    assert_eq!(app.auth_status(&laptop).await, StatusCode::OK);
    laptop_stream.assert_quiet(Duration::from_millis(300)).await;
    assert!(!laptop_stream.ended);
    // Someone else's session id is not yours to end.
    let mallory = app.login("mallory").await;
    let laptop_id = sessions.iter().find(|s| s["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let theirs = app
        .client
        .delete(app.url(&format!("/api/sessions/{laptop_id}")))
        .bearer_auth(&mallory.token)
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn signing_out_everywhere_ends_every_session_and_stream() {
    let app = spawn_app().await;
    let a = app.login("alice").await;
    let b = app.login("alice").await;
    let mut stream = app.stream(&b, None).await;
    let out = app
        .client
        .delete(app.url("/api/sessions"))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    for user in [&a, &b] {
        assert_eq!(app.auth_status(user).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        stream.next_event(PATIENCE).await.unwrap().event.as_deref(),
        Some("signed-out")
    );
    // Signing in again works.
    let c = app.login("alice").await;
    assert_eq!(app.auth_status(&c).await, StatusCode::OK);
}

#[tokio::test]
async fn logging_out_with_a_bearer_token_ends_that_session() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    assert_eq!(
        app.post("/api/logout", &alice)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.auth_status(&alice).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_expired_token_gets_401() {
    let app = spawn_app_with(|c| c.token_lifetime = Duration::from_secs(1)).await;
    let alice = app.login("alice").await;
    assert_eq!(app.auth_status(&alice).await, StatusCode::OK);
    // Wait for the expiry itself, not a guess at how long it takes.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.auth_status(&alice).await == StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "the token expires");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.auth_status(&alice).await, StatusCode::UNAUTHORIZED);
}
