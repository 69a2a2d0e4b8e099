//! The object-storage path (`--object-store-url s3://…`) against `moto_server`, an
//! S3-speaking stand-in started on a free local port (PyPI `moto[server]`; CI installs it).
//! What this does not prove is in docs/deploy.md ("Uploaded files").

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_moto() -> Option<Moto> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = match Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("SKIPPED: moto_server not available ({e}); pip install 'moto[server]'");
            return None;
        }
    };
    let moto = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if client.get(&moto.url).send().await.is_ok() {
            return Some(moto);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "moto_server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn files_live_in_object_storage_and_go_when_their_message_does() {
    let Some(moto) = start_moto().await else {
        return;
    };
    let raw = reqwest::Client::new();
    let created = raw
        .put(format!("{}/courier-test", moto.url))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "create bucket: {}",
        created.status()
    );

    let endpoint = moto.url.clone();
    let app = spawn_app_with(move |c| {
        c.object_store_url = Some("s3://courier-test/node-files".into());
        c.object_store_options = vec![
            format!("endpoint={endpoint}"),
            "allow_http=true".into(),
            "region=us-east-1".into(),
            "access_key_id=test".into(),
            "secret_access_key=test".into(),
        ];
        c.upload_grace = Duration::from_millis(300);
        c.upload_sweep_every = Duration::from_millis(100);
    })
    .await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let c = app.conversation_between(&alice, &bob).await;

    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let upload = app
        .upload(
            &alice,
            "data.bin",
            "application/octet-stream",
            bytes.clone(),
        )
        .await;
    let id = upload["id"].as_str().unwrap().to_owned();
    let sent = app
        .post(&format!("/api/conversations/{c}/messages"), &alice)
        .json(&json!({ "content": "", "attachments": [id] }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::CREATED);
    let sent: Value = sent.json().await.unwrap();

    let path = format!("/api/uploads/{id}");
    let response = app.get(&path, &bob).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let response = app
        .get(&path, &bob)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.bytes().await.unwrap().as_ref(), &bytes[1000..2000]);

    // The object is in the bucket under the prefix, and nothing is on the node's disk.
    let bucket = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("courier-test")
        .with_endpoint(&moto.url)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap();
    let object = object_store::path::Path::from(format!("node-files/blobs/{}/{etag}", &etag[..2]));
    let exists = || async {
        use object_store::ObjectStore;
        match bucket.head(&object).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => panic!("head: {e}"),
        }
    };
    assert!(exists().await, "{object} is in the bucket");
    let blobs = app.data_dir.path().join("uploads").join("blobs");
    assert!(std::fs::read_dir(&blobs).map_or(true, |mut d| d.next().is_none()));

    let deleted = app
        .client
        .delete(app.url(&format!(
            "/api/conversations/{c}/messages/{}",
            sent["id"].as_str().unwrap()
        )))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&path, &bob).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while exists().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the object outlived its last message"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
