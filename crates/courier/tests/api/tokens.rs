//! Tokens and cookies: `?token=` only on the event stream, `Cache-Control: no-store` on every
//! API answer, CSRF tokens that are never empty and bound to their session, `__Host-` cookies
//! over HTTPS, no password containing the username, and a cap on sessions per person.

use crate::helpers::*;
use courier::config::SignupMode;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The `name=value` pairs of a response's `Set-Cookie` headers, with their attributes.
fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn pair(cookie: &str) -> (String, String) {
    let (name, value) = cookie.split(';').next().unwrap().split_once('=').unwrap();
    (name.to_owned(), value.to_owned())
}

/// Dev-logs `username` in as a browser would; returns (session cookie value, CSRF value).
async fn browser_login(app: &TestApp, username: &str) -> (String, String) {
    let response = app.login_raw(json!({ "username": username })).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookies = set_cookies(&response);
    let value = |name: &str| {
        cookies
            .iter()
            .map(|c| pair(c))
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{name} in {cookies:?}"))
    };
    (value("courier_session"), value("courier_csrf"))
}

#[tokio::test]
async fn a_token_in_the_query_works_only_on_the_event_stream() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    app.login("bob").await;
    let token = &alice.token;
    let me = app
        .client
        .get(app.url(&format!("/api/auth_user?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    let write = app
        .client
        .post(app.url(&format!("/api/conversations?token={token}")))
        .json(&json!({ "username": "bob" }))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::UNAUTHORIZED);
    let stream = app
        .client
        .get(app.url(&format!("/api/messages?token={token}")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_api_answer_is_no_store() {
    let app = spawn_app().await;
    let login = app.login_raw(json!({ "username": "alice" })).await;
    assert_eq!(login.headers()["cache-control"], "no-store");
    let alice = app.login("alice").await;
    for path in [
        "/api/auth_user",
        "/api/conversations",
        "/api/nope",
        "/api/messages",
    ] {
        let response = app.get(path, &alice).send().await.unwrap();
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
    }
    let anonymous = app
        .client
        .get(app.url("/api/auth_user"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn an_empty_csrf_token_is_refused_and_a_token_works_only_for_its_own_session() {
    let app = spawn_app().await;
    app.login("carol").await;
    let (alice_session, alice_csrf) = browser_login(&app, "alice").await;
    let (_, bob_csrf) = browser_login(&app, "bob").await;
    assert_ne!(alice_csrf, bob_csrf);
    let start = |cookie: String, csrf: String| {
        app.client
            .post(app.url("/api/conversations"))
            .header("cookie", cookie)
            .header("x-csrf-token", csrf)
            .json(&json!({ "username": "carol" }))
            .send()
    };
    // An empty cookie and an empty header used to match each other.
    let empty = start(
        format!("courier_session={alice_session}; courier_csrf="),
        String::new(),
    )
    .await
    .unwrap();
    assert_eq!(empty.status(), StatusCode::FORBIDDEN);
    // A token that matches a planted cookie but belongs to another session is refused.
    let planted = start(
        format!("courier_session={alice_session}; courier_csrf={bob_csrf}"),
        bob_csrf.clone(),
    )
    .await
    .unwrap();
    assert_eq!(planted.status(), StatusCode::FORBIDDEN);
    let ok = start(
        format!("courier_session={alice_session}; courier_csrf={alice_csrf}"),
        alice_csrf.clone(),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn over_https_the_cookies_carry_the_host_prefix() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/login"))
        .header("x-forwarded-proto", "https")
        .json(&json!({ "username": "alice" }))
        .send()
        .await
        .unwrap();
    let cookies = set_cookies(&response);
    for name in ["__Host-courier_session", "__Host-courier_csrf"] {
        let cookie = cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {cookies:?}"));
        assert!(
            cookie.contains("; Secure") && cookie.contains("Path=/"),
            "{cookie}"
        );
        assert!(!cookie.contains("Domain"), "{cookie}");
    }
    let (_, session) = pair(
        cookies
            .iter()
            .find(|c| c.starts_with("__Host-courier_session"))
            .unwrap(),
    );
    let me = app
        .client
        .get(app.url("/api/auth_user"))
        .header("cookie", format!("__Host-courier_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    // Plain HTTP keeps the plain names (browsers refuse `__Host-` without Secure).
    let plain = app.login_raw(json!({ "username": "bob" })).await;
    assert!(
        set_cookies(&plain)
            .iter()
            .all(|c| !c.starts_with("__Host-"))
    );
}

#[tokio::test]
async fn a_password_that_contains_the_username_is_refused() {
    let app = spawn_app_with(|c| c.signup = SignupMode::Open).await;
    for password in ["violet-Alice-harbor-91", "ALICEviolet-harbor-91"] {
        let response = app
            .client
            .post(app.url("/api/signup"))
            .json(&json!({ "username": "alice", "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{password}"
        );
        let body: Value = response.json().await.unwrap();
        assert!(body["errors"]["password"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn signing_in_past_the_session_cap_signs_out_the_least_recently_used() {
    let app = spawn_app_with(|c| c.max_sessions_per_user = 3.try_into().unwrap()).await;
    let mut devices = Vec::new();
    for _ in 0..3 {
        devices.push(app.login("alice").await);
        // Distinct timestamps, so "least recently used" has one answer.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(
        futures::future::join_all(devices.iter().map(|d| app.auth_status(d)))
            .await
            .iter()
            .all(|s| *s == StatusCode::OK)
    );
    let newest = app.login("alice").await;
    assert_eq!(app.auth_status(&devices[0]).await, StatusCode::UNAUTHORIZED);
    for device in [&devices[1], &devices[2], &newest] {
        assert_eq!(app.auth_status(device).await, StatusCode::OK);
    }
    let sessions: Vec<Value> = app.get_json("/api/sessions", &newest).await;
    assert_eq!(sessions.len(), 3);
}
