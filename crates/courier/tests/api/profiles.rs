//! Issue 17, profiles: a display name beside the username, an uploaded picture (cropped
//! square, resized, metadata gone), both shown wherever the person appears and sent live to
//! everyone who shares a conversation with them; and what others see of a deleted account.

use crate::helpers::*;
use courier::config::SignupMode;
use reqwest::StatusCode;
use serde_json::{Value, json};

const GOOD_PASSWORD: &str = "violet-harbor-tractor-91";

async fn set_profile(app: &TestApp, user: &TestUser, body: Value) -> (StatusCode, Value) {
    let response = app
        .client
        .patch(app.url("/api/account/profile"))
        .bearer_auth(&user.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn put_avatar(app: &TestApp, user: &TestUser, bytes: Vec<u8>) -> (StatusCode, Value) {
    let response = app
        .client
        .put(app.url("/api/account/avatar"))
        .bearer_auth(&user.token)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn me(app: &TestApp, user: &TestUser) -> Value {
    app.get_json("/api/auth_user", user).await
}

/// A 640×480 JPEG whose left half is red and right half blue, with an EXIF segment carrying
/// a "GPS position" right after SOI.
fn photo_with_exif() -> Vec<u8> {
    let image = image::RgbImage::from_fn(640, 480, |x, _| {
        if x < 320 {
            image::Rgb([220, 20, 20])
        } else {
            image::Rgb([20, 20, 220])
        }
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&image)
        .unwrap();
    let secret = b"Exif\0\0MM\0*SECRET-GPS-48.8584N-2.2945E";
    let mut segment = vec![0xFF, 0xE1];
    segment.extend_from_slice(&((secret.len() + 2) as u16).to_be_bytes());
    segment.extend_from_slice(secret);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&segment);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[tokio::test]
async fn a_display_name_is_checked_and_nothing_changes_when_it_is_refused() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let (status, body) = set_profile(&app, &alice, json!({ "displayName": "Alice Liddell" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["displayName"], "Alice Liddell");
    assert_eq!(body["username"], "alice");

    let too_long = "é".repeat(65);
    for bad in [
        json!({ "displayName": "" }),
        json!({ "displayName": " \u{200B} " }),
        json!({ "displayName": "two\nlines" }),
        json!({ "displayName": "bell\u{7}" }),
        json!({ "displayName": too_long }),
        json!({}),
        json!({ "displayName": 5 }),
    ] {
        let (status, error) = set_profile(&app, &alice, bad.clone()).await;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
            "{bad}: {status} {error}"
        );
        assert!(
            error["error"].is_string() || error["errors"].is_object(),
            "{error}"
        );
        assert_eq!(
            me(&app, &alice).await["displayName"],
            "Alice Liddell",
            "{bad}"
        );
    }

    // Folded like other text: NFC, one space between words, direction overrides gone.
    let (status, body) = set_profile(
        &app,
        &alice,
        json!({ "displayName": "  Rene\u{301}\u{202E}  M  " }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["displayName"], "Ren\u{e9} M");
    let max = "é".repeat(64);
    let (status, _) = set_profile(&app, &alice, json!({ "displayName": max })).await;
    assert_eq!(status, StatusCode::OK);

    // null shows the username again.
    let (status, body) = set_profile(&app, &alice, json!({ "displayName": null })).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["displayName"].is_null(), "{body}");
    assert!(me(&app, &alice).await["displayName"].is_null());
}

#[tokio::test]
async fn the_display_name_shows_wherever_the_person_appears() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let carol = app.login("carol").await;
    let direct = app.conversation_between(&bob, &alice).await;
    app.send_message(&alice, &direct, "hi bob").await;
    let group = app.create_group(&alice, &[&bob, &carol], "Book club").await;
    let group = group["id"].as_str().unwrap().to_owned();
    set_profile(&app, &alice, json!({ "displayName": "Alice L." })).await;

    assert_eq!(me(&app, &alice).await["displayName"], "Alice L.");
    let other: Value = app
        .get_json(
            &format!("/api/conversations/{direct}/other_participant"),
            &bob,
        )
        .await;
    assert_eq!(other["displayName"], "Alice L.");
    let list: Value = app.get_json("/api/conversations", &bob).await;
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == direct.as_str())
        .unwrap();
    assert_eq!(entry["otherParticipant"]["displayName"], "Alice L.");
    let members: Value = app
        .get_json(&format!("/api/conversations/{group}/members"), &carol)
        .await;
    let text = members.to_string();
    assert!(text.contains("\"displayName\":\"Alice L.\""), "{text}");
    assert!(
        text.contains("\"displayName\":null"),
        "others keep null: {text}"
    );
}

#[tokio::test]
async fn a_picture_is_stored_square_small_and_without_its_metadata() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let (status, body) = put_avatar(&app, &alice, photo_with_exif()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let url = body["avatarURL"].as_str().unwrap().to_owned();
    assert!(url.starts_with("/api/avatars/"), "{url}");
    assert_eq!(me(&app, &alice).await["avatarURL"], url.as_str());

    // Anyone with the URL may fetch it (an <img> sends no token), and keep it for good.
    let served = app.client.get(app.url(&url)).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["content-type"], "image/jpeg");
    let cache = served.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cache.contains("immutable") && cache.contains("max-age"),
        "{cache}"
    );
    let bytes = served.bytes().await.unwrap();
    let needle = b"SECRET-GPS";
    assert!(
        !bytes.windows(needle.len()).any(|w| w == needle),
        "the EXIF segment is gone"
    );
    let decoded = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert_eq!((decoded.width(), decoded.height()), (256, 256));
    // The centred square of a red|blue 640×480 is half red, half blue.
    let left = decoded.get_pixel(40, 128);
    let right = decoded.get_pixel(215, 128);
    assert!(left[0] > 150 && left[2] < 100, "{left:?}");
    assert!(right[2] > 150 && right[0] < 100, "{right:?}");

    // Removing it goes back to the generated avatar; the old URL no longer serves.
    let removed = app
        .client
        .delete(app.url("/api/account/avatar"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::OK);
    let body: Value = removed.json().await.unwrap();
    assert!(body["avatarURL"].is_null(), "{body}");
    assert!(me(&app, &alice).await["avatarURL"].is_null());
    let gone = app.client.get(app.url(&url)).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    // Nor does a guessed hash, or an attachment's.
    let guessed = app
        .client
        .get(app.url(&format!("/api/avatars/{}", "a".repeat(64))))
        .send()
        .await
        .unwrap();
    assert_eq!(guessed.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_oversized_or_non_image_picture_is_refused_and_changes_nothing() {
    let app = spawn_app_with(|c| c.max_avatar_bytes = 2_000).await;
    let alice = app.login("alice").await;
    let (status, body) = put_avatar(&app, &alice, photo_with_exif()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["error"].as_str().unwrap().contains("2000"), "{body}");
    assert!(me(&app, &alice).await["avatarURL"].is_null());

    let (status, body) = put_avatar(&app, &alice, b"just some text, not a picture".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["errors"]["avatar"].is_string(), "{body}");
    // An image signature with garbage after it does not decode.
    let mut fake = b"\x89PNG\r\n\x1a\n".to_vec();
    fake.extend_from_slice(&[0u8; 200]);
    let (status, body) = put_avatar(&app, &alice, fake).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(me(&app, &alice).await["avatarURL"].is_null());
}

#[tokio::test]
async fn a_profile_change_reaches_contacts_live_and_is_replayed_on_resume() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let stranger = app.login("stranger").await;
    let direct = app.conversation_between(&alice, &bob).await;
    let mut bob_stream = app.stream(&bob, None).await;
    app.send_message(&alice, &direct, "hello").await;
    let _ = bob_stream.next_message_skipping_presence().await;
    let before = bob_stream.last_id.clone().unwrap();
    let mut alice_other_tab = app.stream(&alice, None).await;
    let mut stranger_stream = app.stream(&stranger, None).await;

    set_profile(&app, &alice, json!({ "displayName": "Alice L." })).await;
    let (_, with_picture) = put_avatar(&app, &alice, photo_with_exif()).await;
    let url = with_picture["avatarURL"].as_str().unwrap().to_owned();

    let first = bob_stream.next_named("profile").await;
    assert!(first.id.is_some(), "durable: it has a position");
    let data = first.json();
    assert_eq!(data["userId"], alice.id.as_str());
    assert_eq!(data["conversationId"], direct.as_str());
    assert_eq!(data["displayName"], "Alice L.");
    assert!(data["avatarURL"].is_null(), "{data}");
    let second = bob_stream.next_named("profile").await.json();
    assert_eq!(second["displayName"], "Alice L.");
    assert_eq!(second["avatarURL"], url.as_str());
    // Her own other tab hears it too; someone who shares nothing with her does not.
    assert_eq!(
        alice_other_tab.next_named("profile").await.json()["userId"],
        alice.id.as_str()
    );
    let mut heard = false;
    while let Some(e) = stranger_stream
        .next_event(std::time::Duration::from_millis(500))
        .await
    {
        heard |= e.event.as_deref() == Some("profile");
    }
    assert!(!heard, "a stranger hears nothing");

    // Coming back from before the change, Bob gets both again, in order.
    let mut resumed = app.stream(&bob, Some(&before)).await;
    let replayed = resumed.next_named("profile").await.json();
    assert_eq!(replayed["displayName"], "Alice L.");
    assert!(replayed["avatarURL"].is_null());
    assert_eq!(
        resumed.next_named("profile").await.json()["avatarURL"],
        url.as_str()
    );
}

async fn delete_account(app: &TestApp, user: &TestUser, remove: bool) {
    let response = app
        .client
        .delete(app.url("/api/account"))
        .bearer_auth(&user.token)
        .json(&json!({ "password": GOOD_PASSWORD, "removeMessages": remove }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

async fn sign_up(app: &TestApp, username: &str) -> TestUser {
    let response = app
        .client
        .post(app.url("/api/signup"))
        .json(&json!({ "username": username, "password": GOOD_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let body: Value = response.json().await.unwrap();
    TestUser {
        id: body["authUser"]["id"].as_str().unwrap().to_owned(),
        username: body["authUser"]["username"].as_str().unwrap().to_owned(),
        token: body["token"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn others_see_a_deleted_account_as_deleted_live_and_in_every_listing() {
    let app = spawn_app_with(|c| c.signup = SignupMode::Open).await;
    let alice = sign_up(&app, "alice").await;
    let bob = sign_up(&app, "bob").await;
    set_profile(&app, &bob, json!({ "displayName": "Bobby" })).await;
    put_avatar(&app, &bob, photo_with_exif()).await;
    let direct = app.conversation_between(&alice, &bob).await;
    app.send_message(&bob, &direct, "kept words").await;
    let mut alice_stream = app.stream(&alice, None).await;

    delete_account(&app, &bob, false).await;

    let live = alice_stream.next_named("profile").await.json();
    assert_eq!(live["userId"], bob.id.as_str());
    assert_eq!(live["deleted"], true);
    assert!(
        live["displayName"].is_null() && live["avatarURL"].is_null(),
        "{live}"
    );
    let other: Value = app
        .get_json(
            &format!("/api/conversations/{direct}/other_participant"),
            &alice,
        )
        .await;
    assert_eq!(other["deleted"], true, "{other}");
    assert!(
        other["displayName"].is_null() && other["avatarURL"].is_null(),
        "{other}"
    );
    let history: Value = app
        .messages(&alice, &direct, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(history.to_string().contains("kept words"));
    // A live account carries no `deleted` key at all.
    assert!(me(&app, &alice).await.get("deleted").is_none());
}

#[tokio::test]
async fn removed_messages_are_deleted_live_and_vanish_from_search() {
    let app = spawn_app_with(|c| c.signup = SignupMode::Open).await;
    let alice = sign_up(&app, "alice").await;
    let bob = sign_up(&app, "bob").await;
    let carol = sign_up(&app, "carol").await;
    let direct = app.conversation_between(&alice, &bob).await;
    let sent = app.send_message(&bob, &direct, "zebracorn secret").await;
    // A group Bob wrote in and then left: his words there go too.
    let group = app.create_group(&carol, &[&alice, &bob], "Club").await;
    let group = group["id"].as_str().unwrap().to_owned();
    let in_group = app
        .send_message(&bob, &group, "zebracorn in the club")
        .await;
    let left = app
        .client
        .post(app.url(&format!("/api/conversations/{group}/leave")))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert!(left.status().is_success(), "{}", left.status());
    let found: Value = app.get_json("/api/search?q=zebracorn", &alice).await;
    assert_eq!(found["results"].as_array().unwrap().len(), 2, "{found}");
    let mut alice_stream = app.stream(&alice, None).await;

    delete_account(&app, &bob, true).await;

    let mut deleted = Vec::new();
    while deleted.len() < 2 {
        let event = alice_stream.next_named("message-deleted").await.json();
        deleted.push(event["messageId"].as_str().unwrap().to_owned());
    }
    deleted.sort();
    let mut expected = vec![
        sent["id"].as_str().unwrap().to_owned(),
        in_group["id"].as_str().unwrap().to_owned(),
    ];
    expected.sort();
    assert_eq!(deleted, expected);
    let found: Value = app.get_json("/api/search?q=zebracorn", &alice).await;
    assert_eq!(found["results"].as_array().unwrap().len(), 0, "{found}");
    let found: Value = app.get_json("/api/search?q=zebracorn", &carol).await;
    assert_eq!(found["results"].as_array().unwrap().len(), 0, "{found}");
    let history: Value = app
        .messages(&alice, &direct, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(!history.to_string().contains("zebracorn"), "{history}");
    // The group still counts its two remaining members.
    let members: Value = app
        .get_json(&format!("/api/conversations/{group}"), &carol)
        .await;
    assert_eq!(members["memberCount"], 2, "{members}");
}

#[tokio::test]
async fn a_deleted_accounts_username_is_reserved_for_the_configured_period() {
    let app = spawn_app_with(|c| c.signup = SignupMode::Open).await;
    let alice = sign_up(&app, "alice").await;
    let bob = sign_up(&app, "bob").await;
    app.conversation_between(&alice, &bob).await;
    delete_account(&app, &bob, false).await;
    let taken = app
        .client
        .post(app.url("/api/signup"))
        .json(&json!({ "username": "bob", "password": GOOD_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        taken.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "within 180 days"
    );

    // A period that has passed: the name is free, and the old account stays deleted.
    let app = spawn_app_with(|c| {
        c.signup = SignupMode::Open;
        c.username_reservation = std::time::Duration::ZERO;
    })
    .await;
    let alice = sign_up(&app, "alice").await;
    let bob = sign_up(&app, "bob").await;
    let direct = app.conversation_between(&alice, &bob).await;
    app.send_message(&bob, &direct, "old bob").await;
    delete_account(&app, &bob, false).await;
    let new_bob = sign_up(&app, "Bob").await;
    assert_ne!(new_bob.id, bob.id);
    let other: Value = app
        .get_json(
            &format!("/api/conversations/{direct}/other_participant"),
            &alice,
        )
        .await;
    assert_eq!(other["id"], bob.id.as_str());
    assert_eq!(other["deleted"], true);
    assert_ne!(other["username"], "Bob");
}
