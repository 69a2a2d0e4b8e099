//! `courier backup` and `courier restore`, run as the real binary beside a running server.

use crate::helpers::{TestApp, TestUser, spawn_app_with, start};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// The server under test is SQLite whatever `COURIER_TEST_BACKEND` says: these commands are
/// SQLite's (PostgreSQL is backed up with pg_dump, see docs/deploy.md).
async fn spawn_sqlite_app() -> TestApp {
    spawn_app_with(|c| {
        c.database_url = None;
        c.nats_url = None;
    })
    .await
}

/// Runs `courier ARGS…`; returns (success, stdout + stderr).
async fn courier(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(args)
        .env_remove("COURIER_DATABASE_URL")
        .env_remove("COURIER_CONFIG")
        .output()
        .await
        .expect("run courier");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Every message id of the conversation, through the paged history.
async fn all_message_ids(app: &TestApp, user: &TestUser, conversation: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut before: Option<String> = None;
    loop {
        let response = app.messages(user, conversation, before.as_deref()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let page: Vec<Value> = response.json().await.unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last["id"].as_str().unwrap().to_owned());
        ids.extend(page.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
    }
    ids
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_every_acknowledged_message_and_serves() {
    let app = spawn_sqlite_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let conversation = app.conversation_between(&alice, &bob).await;

    // A steady load: two people sending one message after another, noting each acknowledged id.
    let app = Arc::new(app);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = CancellationToken::new();
    let mut senders = Vec::new();
    for sender in [alice.clone(), bob.clone()] {
        let (app, acked, stop, conversation) = (
            app.clone(),
            acked.clone(),
            stop.clone(),
            conversation.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                n += 1;
                let text = format!("{} #{n}", sender.username);
                let response = app.send_message_raw(&sender, &conversation, &text).await;
                assert_eq!(response.status(), StatusCode::CREATED, "send during backup");
                let message: Value = response.json().await.unwrap();
                acked
                    .lock()
                    .unwrap()
                    .push(message["id"].as_str().unwrap().to_owned());
            }
        }));
    }
    while acked.lock().unwrap().len() < 40 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let before_backup: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let backups = tempfile::tempdir().unwrap();
    let out = backups.path().join("courier-backup.db");
    let (ok, said) = courier(&[
        "backup",
        "--out",
        path(&out),
        "--data-dir",
        path(app.data_dir.path()),
    ])
    .await;
    assert!(ok, "backup failed: {said}");
    let during = acked.lock().unwrap().len();
    // The server kept serving: more sends are acknowledged after the backup.
    while acked.lock().unwrap().len() < during + 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    for sender in senders {
        sender.await.unwrap();
    }
    let mut app = Arc::into_inner(app).expect("senders are done");
    app.stop().await;

    let fresh = tempfile::tempdir().unwrap();
    let (ok, said) = courier(&["restore", path(&out), "--data-dir", path(fresh.path())]).await;
    assert!(ok, "restore failed: {said}");
    let mut config = app.config.clone();
    config.data_dir = fresh.path().to_owned();
    let restored = start(config, fresh).await;
    let alice_again = restored.login("alice").await;
    assert_eq!(alice_again.id, alice.id, "the same account");
    let ids = all_message_ids(&restored, &alice_again, &conversation).await;
    let missing: Vec<_> = before_backup.difference(&ids).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged before the backup are missing: {missing:?}",
        missing.len()
    );
    let response = restored
        .send_message_raw(&alice_again, &conversation, "after the restore")
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "the restored server serves"
    );
}

#[tokio::test]
async fn restore_refuses_while_a_server_runs_and_refuses_a_file_that_is_no_backup() {
    let mut app = spawn_sqlite_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let conversation = app.conversation_between(&alice, &bob).await;
    app.send_message(&alice, &conversation, "kept").await;
    let data_dir = path(app.data_dir.path()).to_owned();
    let backups = tempfile::tempdir().unwrap();
    let out = backups.path().join("b.db");
    let (ok, said) = courier(&["backup", "--out", path(&out), "--data-dir", &data_dir]).await;
    assert!(ok, "{said}");
    let (ok, said) = courier(&["backup", "--out", path(&out), "--data-dir", &data_dir]).await;
    assert!(
        !ok && said.contains("already exists"),
        "never overwrites: {said}"
    );

    let (ok, said) = courier(&["restore", path(&out), "--data-dir", &data_dir]).await;
    assert!(!ok, "restored under a running server: {said}");
    assert!(said.contains("stop the server"), "{said}");

    app.stop().await;
    let junk = backups.path().join("junk.db");
    std::fs::write(&junk, "not a database at all").unwrap();
    let (ok, said) = courier(&["restore", path(&junk), "--data-dir", &data_dir]).await;
    assert!(
        !ok && said.contains("not a usable Courier backup"),
        "{said}"
    );

    // A valid one replaces the database, and the previous one is kept aside.
    let (ok, said) = courier(&["restore", path(&out), "--data-dir", &data_dir]).await;
    assert!(ok, "{said}");
    let kept: Vec<_> = std::fs::read_dir(&data_dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("courier.db.before-restore-")
        })
        .collect();
    assert!(!kept.is_empty(), "{said}");
    let app = app.restart().await;
    let alice = app.login("alice").await;
    let page: Vec<Value> = app
        .messages(&alice, &conversation, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page[0]["content"], "kept");
}

#[tokio::test]
async fn backup_of_a_postgres_url_points_to_pg_dump() {
    let (ok, said) = courier(&[
        "backup",
        "--out",
        "/tmp/never-written.db",
        "--database-url",
        "postgres://localhost/courier",
    ])
    .await;
    assert!(!ok && said.contains("pg_dump"), "{said}");
}
