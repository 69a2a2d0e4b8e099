use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn malformed_json_gets_400_with_a_json_error() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/login"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());
}

#[tokio::test]
async fn a_wrong_content_type_gets_415() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/login"))
        .header("content-type", "text/plain")
        .body("{\"username\": \"alice\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_and_stores_nothing() {
    let app = spawn_app_with(|c| c.max_body_bytes = 1024).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let body = format!("{{\"content\": \"{}\"}}", "x".repeat(2000));
    let response = app
        .post(&format!("/api/conversations/{id}/messages"), &alice)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    let messages: Vec<Value> = app.messages(&alice, &id, None).await.json().await.unwrap();
    assert!(messages.is_empty());
}

#[tokio::test]
async fn an_unknown_api_route_gets_a_json_404_and_other_paths_get_the_app() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/api/nope")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    let page = app.client.get(app.url("/c/123")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.headers().contains_key("content-security-policy"));
}

#[tokio::test]
async fn static_files_carry_etags_and_revalidate_to_304() {
    let app = spawn_app().await;
    let first = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let again = app
        .client
        .get(app.url("/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}
