//! Dev login is never on by accident: off behind a proxy unless asked for, never into an
//! account that has a password or a provider identity, and rate-limited.

use crate::helpers::*;
use courier::config::SignupMode;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn dev_login(app: &TestApp, username: &str, headers: &[(&str, &str)]) -> StatusCode {
    let mut request = app
        .client
        .post(app.url("/api/login"))
        .json(&json!({ "username": username }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status()
}

async fn providers_dev_login(app: &TestApp, headers: &[(&str, &str)]) -> Value {
    let mut request = app.client.get(app.url("/api/auth/providers"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().json::<Value>().await.unwrap()["devLogin"].clone()
}

#[tokio::test]
async fn default_dev_login_turns_off_for_good_once_a_request_comes_through_a_proxy() {
    // A single node behind nginx: it listens on loopback, which turns the default on.
    let app = spawn_app_with(|c| c.dev_login = None).await;
    assert_eq!(dev_login(&app, "alice", &[]).await, StatusCode::OK);
    assert_eq!(
        dev_login(&app, "mallory", &[("x-forwarded-for", "203.0.113.7")]).await,
        StatusCode::NOT_FOUND
    );
    // From now on the server knows it is proxied, whatever a request carries.
    assert_eq!(dev_login(&app, "mallory", &[]).await, StatusCode::NOT_FOUND);
    assert_eq!(providers_dev_login(&app, &[]).await, false);

    let other = spawn_app_with(|c| c.dev_login = None).await;
    assert_eq!(
        providers_dev_login(&other, &[("x-forwarded-proto", "https")]).await,
        false,
        "the access page behind a proxy offers no dev login"
    );
    assert_eq!(
        dev_login(&other, "mallory", &[]).await,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn default_dev_login_is_off_behind_an_https_public_url() {
    let app = spawn_app_with(|c| {
        c.dev_login = None;
        c.public_url = Some("https://chat.example.org".into());
    })
    .await;
    assert_eq!(dev_login(&app, "alice", &[]).await, StatusCode::NOT_FOUND);
    assert_eq!(providers_dev_login(&app, &[]).await, false);
}

#[tokio::test]
async fn dev_login_asked_for_explicitly_stays_on_behind_a_proxy() {
    let app = spawn_app_with(|c| {
        c.dev_login = Some(true);
        c.public_url = Some("https://chat.example.org".into());
    })
    .await;
    let proxied = [
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
    ];
    assert_eq!(dev_login(&app, "alice", &proxied).await, StatusCode::OK);
    assert_eq!(dev_login(&app, "bob", &[]).await, StatusCode::OK);
}

#[tokio::test]
async fn dev_login_never_signs_in_to_an_account_with_a_password() {
    let app = spawn_app_with(|c| c.signup = SignupMode::Open).await;
    let signed_up = app
        .client
        .post(app.url("/api/signup"))
        .json(&json!({ "username": "olga", "password": "violet-harbor-tractor-91" }))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_up.status(), StatusCode::CREATED);
    for name in ["olga", "OLGA"] {
        let response = app.login_raw(json!({ "username": name })).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}");
        assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    }
    // An account made by dev login itself still works.
    app.login("dev_only").await;
    app.login("dev_only").await;
}

#[tokio::test]
async fn dev_login_is_rate_limited_per_address() {
    let app = spawn_app_with(|c| c.dev_login_per_minute = 3).await;
    let mut statuses = Vec::new();
    for n in 0..5 {
        statuses.push(dev_login(&app, &format!("user{n}"), &[]).await);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS,
        ]
    );
}
