use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn dev_login_creates_the_user_and_returns_a_token() {
    let app = spawn_app().await;
    let response = app.login_raw(json!({ "username": "alice" })).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["authUser"]["username"], "alice");
    assert!(body["authUser"]["id"].is_string());
    assert!(body["authUser"]["avatarURL"].is_null());
    let expires = body["expiresAt"].as_str().unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(expires).unwrap();
    let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((13.9..=14.0).contains(&days), "expires in {days} days");
}

#[tokio::test]
async fn usernames_are_unique_without_regard_to_case() {
    let app = spawn_app().await;
    let first = app.login("Alice").await;
    let again = app.login("aLiCe").await;
    assert_eq!(first.id, again.id);
    assert_eq!(again.username, "Alice");
}

#[tokio::test]
async fn an_invalid_username_gets_422() {
    let app = spawn_app().await;
    for bad in [
        json!({}),
        json!({ "username": "" }),
        json!({ "username": "a b" }),
        json!({ "username": "x".repeat(33) }),
    ] {
        let response = app.login_raw(bad.clone()).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert!(body["errors"]["username"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn dev_login_is_404_when_disabled() {
    let app = spawn_app_with(|c| c.dev_login = Some(false)).await;
    let response = app.login_raw(json!({ "username": "alice" })).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());
}

#[tokio::test]
async fn auth_user_returns_the_signed_in_user() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let response = app.get("/api/auth_user", &alice).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "id": alice.id, "username": "alice", "avatarURL": null, "displayName": null })
    );
}

#[tokio::test]
async fn missing_forged_or_foreign_tokens_get_401() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let no_token = app
        .client
        .get(app.url("/api/auth_user"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    assert!(no_token.json::<Value>().await.unwrap()["error"].is_string());

    let mut forged = alice.token.clone();
    forged.pop();
    forged.push(if alice.token.ends_with('A') { 'B' } else { 'A' });
    for token in [forged.as_str(), "garbage", ""] {
        let response = app
            .client
            .get(app.url("/api/auth_user"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token}");
    }
    // A token signed by another server's secret.
    let other = spawn_app().await;
    let stranger = other.login("alice").await;
    let response = app.get("/api/auth_user", &stranger).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refresh_token_issues_a_fresh_working_token() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let response = app.post("/api/refresh_token", &alice).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    assert_ne!(token, alice.token);
    assert!(body["expiresAt"].is_string());
    let fresh = TestUser { token, ..alice };
    assert_eq!(app.auth_status(&fresh).await, StatusCode::OK);
    let anonymous = app
        .client
        .post(app.url("/api/refresh_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tokens_survive_a_restart_on_the_same_data_directory() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let app = app.restart().await;
    assert_eq!(app.auth_status(&alice).await, StatusCode::OK);
}

#[tokio::test]
async fn the_browser_session_cookie_works_and_requires_csrf_for_writes() {
    let app = spawn_app().await;
    let response = app.login_raw(json!({ "username": "alice" })).await;
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("courier_session="))
        .expect("session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    let pair = |c: &str| c.split(';').next().unwrap().to_owned();
    let csrf_cookie = cookies
        .iter()
        .find(|c| c.starts_with("courier_csrf="))
        .expect("csrf cookie");
    let csrf = pair(csrf_cookie).split_once('=').unwrap().1.to_owned();
    let cookie_header = format!("{}; {}", pair(session), pair(csrf_cookie));

    let me = app
        .client
        .get(app.url("/api/auth_user"))
        .header("cookie", &cookie_header)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);

    let _bob = app.login("bob").await;
    let start = |csrf: Option<&str>| {
        let mut request = app
            .client
            .post(app.url("/api/conversations"))
            .header("cookie", &cookie_header)
            .json(&json!({ "username": "bob" }));
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send()
    };
    assert_eq!(start(None).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(
        start(Some("wrong")).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        start(Some(&csrf)).await.unwrap().status(),
        StatusCode::CREATED
    );

    let without_csrf = app
        .client
        .post(app.url("/api/logout"))
        .header("cookie", &cookie_header)
        .send()
        .await
        .unwrap();
    assert_eq!(without_csrf.status(), StatusCode::FORBIDDEN);
    let logout = app
        .client
        .post(app.url("/api/logout"))
        .header("cookie", &cookie_header)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let cleared = logout
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().contains("Max-Age=0"));
    assert!(cleared);
    // The session itself ended: the old cookie no longer works.
    let after = app
        .client
        .get(app.url("/api/auth_user"))
        .header("cookie", &cookie_header)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_providers_endpoint_reports_dev_login() {
    let app = spawn_app().await;
    let body: Value = app.providers().await;
    assert_eq!(body["devLogin"], true);
    assert!(body["providers"].is_array());
}

#[tokio::test]
async fn usernames_search_by_prefix_case_insensitively_excluding_the_caller() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    for name in [
        "albert", "Alfred", "alma", "alvin", "alya", "alzo", "bob", "al_x",
    ] {
        app.login(name).await;
    }
    let response = app
        .get("/api/usernames?search=AL", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let names: Vec<String> = response.json().await.unwrap();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(!names.iter().any(|n| n == "alice"));
    assert!(names.iter().all(|n| n.to_lowercase().starts_with("al")));
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(names, sorted);
    // `_` is literal, not a wildcard.
    let names: Vec<String> = app.get_json("/api/usernames?search=al_", &alice).await;
    assert_eq!(names, ["al_x"]);
    let empty = app
        .get("/api/usernames?search=", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty.json::<Value>().await.unwrap()["errors"]["search"].is_string());
}
