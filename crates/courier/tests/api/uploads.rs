//! Uploads and attachments: streaming in, content-checked types, images without metadata and
//! with a thumbnail, sends that carry files, downloads only for those who may read the
//! message (ranges, headers), every bad input refused with nothing left behind, and clean-up
//! (grace expiry, interrupted uploads, the last message that used a file deleted).

use crate::helpers::*;
use reqwest::StatusCode;
use reqwest::header::{
    CONTENT_DISPOSITION, CONTENT_RANGE, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

impl TestApp {
    pub async fn upload_raw(
        &self,
        user: &TestUser,
        name: &str,
        declared: &str,
        bytes: Vec<u8>,
    ) -> reqwest::Response {
        self.post(
            &format!("/api/uploads?name={}", urlencoding::encode(name)),
            user,
        )
        .header(CONTENT_TYPE, declared)
        .body(bytes)
        .send()
        .await
        .unwrap()
    }

    pub async fn upload(
        &self,
        user: &TestUser,
        name: &str,
        declared: &str,
        bytes: Vec<u8>,
    ) -> Value {
        let response = self.upload_raw(user, name, declared, bytes).await;
        assert_eq!(response.status(), StatusCode::CREATED, "upload {name}");
        response.json().await.unwrap()
    }

    async fn send_with(
        &self,
        user: &TestUser,
        conversation: &str,
        content: &str,
        attachments: &[&Value],
    ) -> reqwest::Response {
        let ids: Vec<&Value> = attachments.iter().map(|a| &a["id"]).collect();
        self.post(&format!("/api/conversations/{conversation}/messages"), user)
            .json(&json!({ "content": content, "attachments": ids }))
            .send()
            .await
            .unwrap()
    }

    async fn download(&self, user: &TestUser, path: &str) -> reqwest::Response {
        self.get(path, user).send().await.unwrap()
    }

    /// Files stored under the data directory (blobs and thumbnails), and leftover temporaries.
    fn stored_files(&self) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let root = self.data_dir.path().join("uploads");
        (
            files_under(&root.join("blobs")),
            files_under(&root.join("tmp")),
        )
    }

    async fn wait_for_files(&self, blobs: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (stored, temp) = self.stored_files();
            if stored.len() == blobs && temp.is_empty() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {blobs} stored files and no temporaries, found {stored:?} and {temp:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files
}

/// A 640×480 JPEG with an EXIF segment (a camera model and GPS-ish text) right after SOI.
fn photo_with_exif() -> Vec<u8> {
    let image = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
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

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbaImage::from_fn(width, height, |x, _| image::Rgba([x as u8, 0, 0, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn text_file(len: usize) -> Vec<u8> {
    (0..len).map(|i| b"abcdefghij\n"[i % 11]).collect()
}

async fn error_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_file_is_uploaded_sent_and_downloaded_by_the_other_member() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;
    let mut stream = app.stream(&bob, None).await;

    let bytes = text_file(5000);
    let upload = app
        .upload(&alice, "notes.txt", "text/plain", bytes.clone())
        .await;
    assert_eq!(upload["name"], "notes.txt");
    assert_eq!(upload["size"], 5000);
    assert_eq!(upload["type"], "text/plain");
    assert_eq!(upload["thumbnail"], Value::Null);
    let id = upload["id"].as_str().unwrap().to_owned();
    assert_eq!(upload["url"], format!("/api/uploads/{id}"));

    // Not sent yet: only its owner can fetch it.
    assert_eq!(
        app.download(&alice, &format!("/api/uploads/{id}"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.download(&bob, &format!("/api/uploads/{id}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    let response = app.send_with(&alice, &c, "", &[&upload]).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "a message of files alone may have no text"
    );
    let sent: Value = response.json().await.unwrap();
    assert_eq!(sent["content"], "");
    assert_eq!(sent["attachments"][0]["id"], id.as_str());
    assert_eq!(sent["attachments"][0]["name"], "notes.txt");

    let live = stream.next_message().await;
    assert_eq!(live["attachments"][0]["id"], id.as_str(), "{live}");
    let history: Vec<Value> = app.messages(&bob, &c, None).await.json().await.unwrap();
    assert_eq!(history[0]["attachments"][0]["size"], 5000);

    let response = app.download(&bob, &format!("/api/uploads/{id}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers[CONTENT_TYPE], "text/plain");
    assert!(
        headers[CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"notes.txt\"")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(
        headers[CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("sandbox")
    );
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // Revalidation answers 304, still after the access check.
    let etag = headers[ETAG].to_str().unwrap().to_owned();
    let response = app
        .get(&format!("/api/uploads/{id}"), &bob)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    let carol = app.login("carol").await;
    let response = app
        .get(&format!("/api/uploads/{id}"), &carol)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// A stream that resumes gets each message with exactly its own attachments: the catch-up
/// read asks for files only for messages that have some, so the flag must be right both ways.
#[tokio::test]
async fn a_resumed_stream_replays_each_message_with_its_own_attachments() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;
    let mut stream = app.stream(&bob, None).await;
    app.send_message(&alice, &c, "before").await;
    let cursor = stream
        .next_event(PATIENCE)
        .await
        .and_then(|e| e.id)
        .expect("the first message with its cursor");
    drop(stream);

    let upload = app
        .upload(&alice, "notes.txt", "text/plain", text_file(100))
        .await;
    let response = app.send_with(&alice, &c, "with a file", &[&upload]).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    app.send_message(&alice, &c, "without").await;

    let mut resumed = app.stream(&bob, Some(&cursor)).await;
    let with = resumed.next_message().await;
    assert_eq!(with["content"], "with a file");
    assert_eq!(with["attachments"][0]["id"], upload["id"], "{with}");
    assert_eq!(with["attachments"][0]["name"], "notes.txt");
    let without = resumed.next_message().await;
    assert_eq!(without["content"], "without");
    let files = without["attachments"].as_array().map_or(0, Vec::len);
    assert_eq!(files, 0, "{without}");
}

#[tokio::test]
async fn ranges_are_served_and_unsatisfiable_ones_refused() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bytes = text_file(1000);
    let upload = app
        .upload(&alice, "a.txt", "text/plain", bytes.clone())
        .await;
    let path = format!("/api/uploads/{}", upload["id"].as_str().unwrap());
    let ranged = |range: &'static str| app.get(&path, &alice).header("range", range).send();

    let response = ranged("bytes=100-199").await.unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()[CONTENT_RANGE], "bytes 100-199/1000");
    assert_eq!(response.bytes().await.unwrap().as_ref(), &bytes[100..200]);

    let response = ranged("bytes=-10").await.unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.bytes().await.unwrap().as_ref(), &bytes[990..]);

    let response = ranged("bytes=1000-").await.unwrap();
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(response.headers()[CONTENT_RANGE], "bytes */1000");
    let (_, body) = error_of(response).await;
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn an_image_loses_its_metadata_and_gets_a_thumbnail() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let photo = photo_with_exif();
    assert!(photo.windows(6).any(|w| w == b"SECRET"));
    // The declared type is vague and the name has no extension: the content decides.
    let upload = app
        .upload(
            &alice,
            "IMG_0001",
            "application/octet-stream",
            photo.clone(),
        )
        .await;
    assert_eq!(upload["type"], "image/jpeg");
    assert_eq!(upload["width"], 640);
    assert_eq!(upload["height"], 480);
    let id = upload["id"].as_str().unwrap();
    assert_eq!(upload["thumbnail"], format!("/api/uploads/{id}/thumbnail"));

    let response = app.download(&alice, &format!("/api/uploads/{id}")).await;
    assert_eq!(response.headers()[CONTENT_TYPE], "image/jpeg");
    assert!(
        response.headers()[CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("inline")
    );
    let served = response.bytes().await.unwrap();
    assert!(
        !served.windows(6).any(|w| w == b"SECRET"),
        "EXIF is stripped"
    );
    assert_eq!(served.len() as i64, upload["size"].as_i64().unwrap());
    let decoded = image::load_from_memory(&served).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (640, 480));

    let response = app
        .download(&alice, &format!("/api/uploads/{id}/thumbnail"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "image/jpeg");
    let thumb = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (320, 240));

    // A transparent PNG works too.
    let upload = app
        .upload(&alice, "dot.png", "image/png", png(40, 20))
        .await;
    assert_eq!(upload["type"], "image/png");
    assert_eq!(
        (upload["width"].as_i64(), upload["height"].as_i64()),
        (Some(40), Some(20))
    );
}

#[tokio::test]
async fn strangers_and_members_who_cannot_read_the_message_get_404() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let carol = app.login("carol").await;
    let (status, group) = app
        .group_call(
            reqwest::Method::POST,
            "/api/conversations",
            &alice,
            Some(json!({ "usernames": ["bob"], "title": "t", "history": "joined" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let g = group["id"].as_str().unwrap().to_owned();
    let upload = app
        .upload(&alice, "plan.txt", "text/plain", text_file(10))
        .await;
    let id = upload["id"].as_str().unwrap();
    assert_eq!(
        app.send_with(&alice, &g, "the plan", &[&upload])
            .await
            .status(),
        StatusCode::CREATED
    );
    let path = format!("/api/uploads/{id}");

    assert_eq!(app.download(&bob, &path).await.status(), StatusCode::OK);
    let (status, body) = error_of(app.download(&carol, &path).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string());
    assert_eq!(
        app.download(&carol, "/api/uploads/not-an-id")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // Carol joins later: under joined history the message (and its file) is not hers.
    let (status, _) = app
        .group_call(
            reqwest::Method::POST,
            &format!("/api/conversations/{g}/members"),
            &alice,
            Some(json!({ "usernames": ["carol"] })),
        )
        .await;
    assert!(status.is_success(), "{status}");
    assert_eq!(
        app.download(&carol, &path).await.status(),
        StatusCode::NOT_FOUND
    );

    // Bob leaves: checked on every request, so his access ends with his membership.
    let (status, _) = app
        .group_call(
            reqwest::Method::POST,
            &format!("/api/conversations/{g}/leave"),
            &bob,
            None,
        )
        .await;
    assert!(status.is_success(), "{status}");
    assert_eq!(
        app.download(&bob, &path).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_uploads_are_refused_and_leave_nothing_behind() {
    let app = spawn_app_with(|c| {
        c.max_upload_bytes = 10_000;
        c.upload_quota_bytes = 25_000;
    })
    .await;
    let alice = app.login("alice").await;

    // Oversized, declared by Content-Length: refused before reading.
    let (status, body) = error_of(
        app.upload_raw(&alice, "big.txt", "text/plain", text_file(10_001))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        body["error"].as_str().unwrap().contains("10000 bytes"),
        "{body}"
    );

    // Oversized without a length (chunked): refused while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(text_file(1000))).collect();
    let response = app
        .post("/api/uploads?name=big.txt", &alice)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let (status, _) = error_of(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Zero bytes.
    let (status, body) = error_of(
        app.upload_raw(&alice, "empty.txt", "text/plain", Vec::new())
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["errors"]["file"].as_str().unwrap().contains("empty"),
        "{body}"
    );

    // A type that lies: a .png name and image/png declared, text inside. Refused.
    let (status, body) = error_of(
        app.upload_raw(&alice, "cat.png", "image/png", text_file(100))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["errors"]["file"]
            .as_str()
            .unwrap()
            .contains("text/plain"),
        "{body}"
    );
    // An image signature with garbage after it is not an image either.
    let mut fake = b"\x89PNG\r\n\x1a\n".to_vec();
    fake.extend(text_file(100));
    let (status, _) = error_of(app.upload_raw(&alice, "x.png", "image/png", fake).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    app.wait_for_files(0).await;

    // The quota: two files fit, the third does not.
    app.upload(&alice, "1.txt", "text/plain", text_file(10_000))
        .await;
    app.upload(&alice, "2.txt", "text/plain", text_file(9_999))
        .await;
    let (status, body) = error_of(
        app.upload_raw(&alice, "3.txt", "text/plain", text_file(9_998))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["error"].as_str().unwrap().contains("quota"), "{body}");
    app.wait_for_files(2).await;
}

#[tokio::test]
async fn sends_with_bad_upload_ids_are_refused_and_store_nothing() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;
    let mine = app
        .upload(&alice, "a.txt", "text/plain", text_file(10))
        .await;
    let bobs = app.upload(&bob, "b.txt", "text/plain", text_file(20)).await;

    let unknown = json!({ "id": "0123456789abcdef0123456789abcdef" });
    let malformed = json!({ "id": "../etc/passwd" });
    for (attachments, expect) in [
        (vec![&unknown], "unknown upload"),
        (vec![&malformed], "unknown upload"),
        (vec![&bobs], "unknown upload"),
        (vec![&mine, &bobs], "unknown upload"),
        (vec![&mine, &mine], "listed twice"),
    ] {
        let (status, body) = error_of(app.send_with(&alice, &c, "hi", &attachments).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let error = body["errors"]["attachments"].as_str().unwrap();
        assert!(error.contains(expect), "{error}");
    }
    let history: Vec<Value> = app.messages(&alice, &c, None).await.json().await.unwrap();
    assert!(history.is_empty(), "nothing was sent: {history:?}");

    // Refusals released the claim: the upload still attaches, once.
    assert_eq!(
        app.send_with(&alice, &c, "", &[&mine]).await.status(),
        StatusCode::CREATED
    );
    let (status, body) = error_of(app.send_with(&alice, &c, "again", &[&mine]).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["errors"]["attachments"]
            .as_str()
            .unwrap()
            .contains("already attached")
    );

    // Without files a message still needs text.
    let (status, _) = error_of(app.send_message_raw(&alice, &c, "  ").await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_retried_send_with_its_key_keeps_its_attachments() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;
    let file = app
        .upload(&alice, "a.txt", "text/plain", text_file(10))
        .await;
    let send = || {
        app.post(&format!("/api/conversations/{c}/messages"), &alice)
            .header("idempotency-key", "k-1")
            .json(&json!({ "content": "x", "attachments": [file["id"]] }))
            .send()
    };
    let first: Value = send().await.unwrap().json().await.unwrap();
    let response = send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let second: Value = response.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first["attachments"][0]["id"], file["id"]);
}

#[tokio::test]
async fn identical_files_are_stored_once_and_go_with_the_last_message_using_them() {
    let app = spawn_app_with(|c| {
        c.upload_grace = Duration::from_millis(300);
        c.upload_sweep_every = Duration::from_millis(100);
    })
    .await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;
    let same = text_file(3000);
    let a = app
        .upload(&alice, "a.txt", "text/plain", same.clone())
        .await;
    let b = app.upload(&bob, "b.txt", "text/plain", same).await;
    app.wait_for_files(1).await;

    let first: Value = app
        .send_with(&alice, &c, "one", &[&a])
        .await
        .json()
        .await
        .unwrap();
    let second: Value = app
        .send_with(&bob, &c, "two", &[&b])
        .await
        .json()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    app.wait_for_files(1).await;

    let delete = |user: &TestUser, m: &Value| {
        app.client
            .delete(app.url(&format!(
                "/api/conversations/{c}/messages/{}",
                m["id"].as_str().unwrap()
            )))
            .bearer_auth(&user.token)
            .send()
    };
    assert_eq!(
        delete(&alice, &first).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let gone = format!("/api/uploads/{}", a["id"].as_str().unwrap());
    assert_eq!(
        app.download(&bob, &gone).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.download(&alice, &gone).await.status(),
        StatusCode::NOT_FOUND
    );
    let history: Vec<Value> = app.messages(&bob, &c, None).await.json().await.unwrap();
    let tomb = history.iter().find(|m| m["id"] == first["id"]).unwrap();
    assert_eq!(tomb["attachments"], json!([]));
    // Bob's message still uses the same bytes.
    tokio::time::sleep(Duration::from_millis(400)).await;
    app.wait_for_files(1).await;
    let kept = format!("/api/uploads/{}", b["id"].as_str().unwrap());
    assert_eq!(app.download(&alice, &kept).await.status(), StatusCode::OK);

    assert_eq!(
        delete(&bob, &second).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    app.wait_for_files(0).await;
}

#[tokio::test]
async fn an_upload_no_message_takes_is_removed_after_the_grace_period() {
    let app = spawn_app_with(|c| {
        c.upload_grace = Duration::from_millis(300);
        c.upload_sweep_every = Duration::from_millis(100);
    })
    .await;
    let alice = app.login("alice").await;
    let upload = app
        .upload(&alice, "photo.png", "image/png", png(400, 400))
        .await;
    app.wait_for_files(2).await; // the image and its thumbnail
    let path = format!("/api/uploads/{}", upload["id"].as_str().unwrap());
    assert_eq!(app.download(&alice, &path).await.status(), StatusCode::OK);
    app.wait_for_files(0).await;
    assert_eq!(
        app.download(&alice, &path).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_interrupted_upload_leaves_no_file_and_no_row() {
    let app = spawn_app_with(|c| c.upload_quota_bytes = 150_000).await;
    let alice = app.login("alice").await;
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/uploads?name=half.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n",
        alice.token
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&text_file(40_000)).await.unwrap();
    socket.flush().await.unwrap();
    // The server has begun writing the temporary file.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.stored_files().1.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(socket);
    app.wait_for_files(0).await;
    // No row counts against the quota: a full 100 kB upload still fits under 150 kB.
    app.upload(
        &alice,
        "whole.bin",
        "application/octet-stream",
        text_file(100_000),
    )
    .await;
}
