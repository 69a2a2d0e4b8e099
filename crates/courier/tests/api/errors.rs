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

/// Asserts `response` has `status` and a JSON body with an `error` string.
async fn assert_json_error(response: reqwest::Response, status: StatusCode, what: &str) {
    assert_eq!(response.status(), status, "{what}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: {content_type}"
    );
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].is_string(), "{what}: {body}");
}

#[tokio::test]
async fn a_path_segment_that_is_not_utf8_or_not_an_id_gets_a_json_404() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let conv = app.conversation_between(&alice, &bob).await;
    for id in [
        "%FF",
        "%C3%28",
        "abc",
        "0",
        "-1",
        "99999999999999999999999",
        "1.5",
    ] {
        for path in [
            format!("/api/conversations/{id}"),
            format!("/api/conversations/{id}/messages"),
            format!("/api/conversations/{id}/other_participant"),
            format!("/api/conversations/{id}/members"),
            format!("/api/conversations/{conv}/members/{id}"),
        ] {
            let response = app.get(&path, &alice).send().await.unwrap();
            if path.ends_with(&format!("members/{id}")) {
                // Only DELETE and PATCH live there.
                let response = app
                    .client
                    .delete(app.url(&path))
                    .bearer_auth(&alice.token)
                    .send()
                    .await
                    .unwrap();
                assert_json_error(response, StatusCode::NOT_FOUND, &path).await;
                continue;
            }
            assert_json_error(response, StatusCode::NOT_FOUND, &path).await;
        }
        let response = app
            .client
            .delete(app.url(&format!("/api/sessions/{id}")))
            .bearer_auth(&alice.token)
            .send()
            .await
            .unwrap();
        assert_json_error(response, StatusCode::NOT_FOUND, "DELETE /api/sessions/{id}").await;
    }
    let response = app
        .client
        .get(app.url("/api/oauth/%FF"))
        .send()
        .await
        .unwrap();
    assert_json_error(response, StatusCode::NOT_FOUND, "/api/oauth/%FF").await;
}

#[tokio::test]
async fn a_malformed_or_repeated_query_parameter_gets_a_json_400_or_404() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let conv = app.conversation_between(&alice, &bob).await;
    for path in [
        "/api/conversations?before=1&before=2".to_owned(),
        format!("/api/conversations/{conv}/messages?before=1&before=2"),
        "/api/usernames?search=a&search=b".to_owned(),
    ] {
        let response = app.get(&path, &alice).send().await.unwrap();
        assert_json_error(response, StatusCode::BAD_REQUEST, &path).await;
    }
    for path in [
        "/api/conversations?before=abc".to_owned(),
        "/api/conversations?before=%FF".to_owned(),
        format!("/api/conversations/{conv}/messages?before=-1"),
    ] {
        let response = app.get(&path, &alice).send().await.unwrap();
        assert_json_error(response, StatusCode::NOT_FOUND, &path).await;
    }
}

#[tokio::test]
async fn a_wrong_method_gets_a_json_405() {
    let app = spawn_app().await;
    let response = app
        .client
        .put(app.url("/api/conversations"))
        .send()
        .await
        .unwrap();
    assert_json_error(response, StatusCode::METHOD_NOT_ALLOWED, "PUT").await;
}
