//! Web Push subscriptions over the API (delivery itself is tested end to end in
//! e2e/tests/push.test.js against a local push service that decrypts independently).

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A real P-256 point (the generator) and a 16-byte auth secret, base64url.
const P256DH: &str =
    "BGsX0fLhLEJH-Lzm5WOkQPJ3A32BLeszoPShOUXYmMKWT-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU";
const AUTH: &str = "AAAAAAAAAAAAAAAAAAAAAA";

#[tokio::test]
async fn a_browser_subscribes_and_unsubscribes_and_bad_subscriptions_get_422() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let key: Value = app.get_json("/api/push/vapid-public-key", &alice).await;
    let key = key["publicKey"].as_str().unwrap();
    assert_eq!(
        key.len(),
        87,
        "an uncompressed P-256 point, base64url: {key}"
    );
    let post = |body: Value| {
        app.post("/api/push/subscriptions", &alice)
            .json(&body)
            .send()
    };
    let endpoint = "https://push.example.org/send/abc";
    let ok = post(json!({ "endpoint": endpoint, "keys": { "p256dh": P256DH, "auth": AUTH } }));
    assert_eq!(ok.await.unwrap().status(), StatusCode::CREATED);
    for bad in [
        json!({ "endpoint": "http://push.example.org/x", "keys": { "p256dh": P256DH, "auth": AUTH } }),
        json!({ "endpoint": "not a url", "keys": { "p256dh": P256DH, "auth": AUTH } }),
        json!({ "endpoint": endpoint, "keys": { "p256dh": "AAAA", "auth": AUTH } }),
        json!({ "endpoint": endpoint, "keys": { "p256dh": P256DH, "auth": "AAAA" } }),
    ] {
        let response = post(bad.clone()).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert!(body["errors"].is_object(), "{body}");
    }
    let delete = || {
        app.client
            .delete(app.url("/api/push/subscriptions"))
            .bearer_auth(&alice.token)
            .json(&json!({ "endpoint": endpoint }))
            .send()
    };
    assert_eq!(delete().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(delete().await.unwrap().status(), StatusCode::NOT_FOUND);
}
