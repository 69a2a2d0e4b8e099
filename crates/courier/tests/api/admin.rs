//! Issue 15 part 3: reports, the admin's `/api/admin/…` routes, disabling accounts, and
//! `courier admin …` against a stopped and a running server.

use crate::helpers::*;
use courier::config::SignupMode;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::Command;

const PASSWORD: &str = "violet-harbor-tractor-91";

fn on_postgres() -> bool {
    std::env::var("COURIER_TEST_BACKEND").as_deref() == Ok("postgres")
}

async fn signed_in(response: reqwest::Response) -> TestUser {
    assert!(response.status().is_success(), "{}", response.status());
    let body: Value = response.json().await.unwrap();
    TestUser {
        id: body["authUser"]["id"].as_str().unwrap().to_owned(),
        username: body["authUser"]["username"].as_str().unwrap().to_owned(),
        token: body["token"].as_str().unwrap().to_owned(),
    }
}

async fn post_json(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The first account (the admin) and two people with passwords.
async fn admin_and_people(app: &TestApp) -> (TestUser, TestUser, TestUser) {
    let body = |name: &str| json!({ "username": name, "password": PASSWORD });
    let root = signed_in(post_json(app, "/api/setup", body("root")).await).await;
    let alice = signed_in(post_json(app, "/api/signup", body("alice")).await).await;
    let bob = signed_in(post_json(app, "/api/signup", body("bob")).await).await;
    (root, alice, bob)
}

async fn sign_in(app: &TestApp, name: &str) -> reqwest::Response {
    post_json(
        app,
        "/api/signin",
        json!({ "username": name, "password": PASSWORD }),
    )
    .await
}

async fn report(app: &TestApp, user: &TestUser, conversation: &str, message: &str) -> StatusCode {
    app.post(
        &format!("/api/conversations/{conversation}/messages/{message}/report"),
        user,
    )
    .json(&json!({ "reason": "spam" }))
    .send()
    .await
    .unwrap()
    .status()
}

#[tokio::test]
async fn anyone_reports_a_message_they_can_see_once_and_only_admins_list_reports() {
    let app = spawn_app_with(|c| {
        c.signup = SignupMode::Open;
        c.reports_per_hour = 4.try_into().unwrap();
    })
    .await;
    let (root, alice, bob) = admin_and_people(&app).await;
    let conversation = app.conversation_between(&alice, &bob).await;
    let sent = app.send_message(&bob, &conversation, "buy my stuff").await;
    let message = sent["id"].as_str().unwrap();

    // root is not in the conversation: the message is not theirs to see.
    assert_eq!(
        report(&app, &root, &conversation, message).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        report(&app, &alice, &conversation, "999999").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        report(&app, &alice, &conversation, message).await,
        StatusCode::CREATED
    );
    assert_eq!(
        report(&app, &alice, &conversation, message).await,
        StatusCode::CONFLICT,
        "one open report per person and message"
    );

    assert_eq!(
        app.get("/api/admin/reports", &alice)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/admin/users", &bob)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    let reports: Value = app.get_json("/api/admin/reports", &root).await;
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["reporter"], "alice");
    assert_eq!(reports[0]["sender"], "bob");
    assert_eq!(reports[0]["content"], "buy my stuff");
    assert_eq!(reports[0]["reason"], "spam");
    assert_eq!(reports[0]["messageId"], message);
    assert_eq!(reports[0]["conversationId"], conversation.as_str());

    let id = reports[0]["id"].as_str().unwrap();
    let resolve = |user: &TestUser| {
        app.post(&format!("/api/admin/reports/{id}/resolve"), user)
            .send()
    };
    assert_eq!(
        resolve(&alice).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        resolve(&root).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        resolve(&root).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let open: Value = app.get_json("/api/admin/reports", &root).await;
    assert_eq!(open, json!([]));
    let all: Value = app.get_json("/api/admin/reports?all=true", &root).await;
    assert_eq!(all.as_array().unwrap().len(), 1);

    // Resolved, it may be reported again; then the hourly limit (4 attempts, the 409 included)
    // answers 429.
    assert_eq!(
        report(&app, &alice, &conversation, message).await,
        StatusCode::CREATED
    );
    let second = app.send_message(&bob, &conversation, "more").await;
    assert_eq!(
        report(&app, &alice, &conversation, second["id"].as_str().unwrap()).await,
        StatusCode::CREATED
    );
    let third = app.send_message(&bob, &conversation, "and more").await;
    assert_eq!(
        report(&app, &alice, &conversation, third["id"].as_str().unwrap()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn disabling_an_account_closes_its_stream_and_refuses_sign_in_until_enabled() {
    let app = spawn_app_with(|c| c.signup = SignupMode::Open).await;
    let (root, alice, bob) = admin_and_people(&app).await;
    let users: Value = app.get_json("/api/admin/users?search=LIC", &root).await;
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");
    assert_eq!(users[0]["username"], "alice");
    let mut stream = app.stream(&alice, None).await;

    let disabled = app
        .post(&format!("/api/admin/users/{}/disable", alice.id), &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), StatusCode::FORBIDDEN, "only admins");
    let disabled = app
        .post(&format!("/api/admin/users/{}/disable", alice.id), &root)
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), StatusCode::OK);
    let body: Value = disabled.json().await.unwrap();
    assert!(body["disabledAt"].is_string(), "{body}");

    let ended = stream.next_named("signed-out").await;
    assert_eq!(ended.event.as_deref(), Some("signed-out"));
    assert_eq!(app.auth_status(&alice).await, StatusCode::UNAUTHORIZED);
    let refused = sign_in(&app, "alice").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("disabled"),
        "{body}"
    );
    assert_eq!(
        app.login_raw(json!({ "username": "alice" })).await.status(),
        StatusCode::FORBIDDEN,
        "dev login is refused too"
    );
    let own = app
        .post(&format!("/api/admin/users/{}/disable", root.id), &root)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::CONFLICT);

    let enabled = app
        .post(&format!("/api/admin/users/{}/enable", alice.id), &root)
        .send()
        .await
        .unwrap();
    assert_eq!(enabled.status(), StatusCode::OK);
    assert_eq!(sign_in(&app, "alice").await.status(), StatusCode::OK);
}

async fn admin_cli(data_dir: &std::path::Path, database_url: Option<&str>, args: &[&str]) -> Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_courier"));
    command
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir);
    match database_url {
        Some(url) => command.arg("--database-url").arg(url),
        None => command.env_remove("COURIER_DATABASE_URL"),
    };
    let output = command
        .env_remove("COURIER_NATS_URL")
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{args:?}: {output:?}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {output:?}"))
}

/// With the server running, the CLI goes through the control socket (SQLite: the server holds
/// the file); with it stopped, the CLI opens the database itself. Same commands, same answers.
#[tokio::test]
async fn the_admin_cli_works_against_a_running_and_a_stopped_server() {
    let mut app = spawn_app_with(|c| {
        c.signup = SignupMode::Open;
        if !on_postgres() {
            c.nats_url = None;
        }
    })
    .await;
    let dir = app.data_dir.path().to_owned();
    let url = app.config.database_url.clone();
    let url = url.as_deref();
    let (_root, alice, bob) = admin_and_people(&app).await;
    let conversation = app.conversation_between(&alice, &bob).await;
    let sent = app.send_message(&bob, &conversation, "rude words").await;
    let message = sent["id"].as_str().unwrap();
    assert_eq!(
        report(&app, &alice, &conversation, message).await,
        StatusCode::CREATED
    );
    if !on_postgres() {
        assert!(
            dir.join("admin.sock").exists(),
            "the server listens on its control socket"
        );
    }
    let mut stream = app.stream(&bob, None).await;

    // Running: through the socket.
    let users = admin_cli(&dir, url, &["list-users"]).await;
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "root"]);
    let sessions = admin_cli(&dir, url, &["list-sessions", "--username", "bob"]).await;
    assert_eq!(sessions.as_array().unwrap().len(), 1);
    let disabled = admin_cli(&dir, url, &["disable", "--username", "bob"]).await;
    assert!(disabled["disabledAt"].is_string(), "{disabled}");
    stream.next_named("signed-out").await;
    assert_eq!(app.auth_status(&bob).await, StatusCode::UNAUTHORIZED);
    assert_eq!(sign_in(&app, "bob").await.status(), StatusCode::FORBIDDEN);
    let reports = admin_cli(&dir, url, &["list-reports"]).await;
    assert_eq!(reports[0]["content"], "rude words");
    let report_id = reports[0]["id"].as_i64().unwrap().to_string();
    admin_cli(&dir, url, &["resolve-report", "--id", &report_id]).await;
    let link = admin_cli(&dir, url, &["reset-password", "--username", "alice"]).await;
    assert!(
        link["link"].as_str().unwrap().starts_with("/#reset="),
        "{link}"
    );
    let invite = admin_cli(&dir, url, &["create-invite", "--max-uses", "2"]).await;
    assert_eq!(invite["maxUses"], 2);

    // Stopped: the CLI opens the database itself.
    app.stop().await;
    assert!(
        !dir.join("admin.sock").exists(),
        "the socket goes with the server"
    );
    let reports = admin_cli(&dir, url, &["list-reports"]).await;
    assert_eq!(reports, json!([]), "resolved while running");
    let invites = admin_cli(&dir, url, &["list-invites"]).await;
    assert_eq!(invites.as_array().unwrap().len(), 1);
    let export = admin_cli(&dir, url, &["export-user", "--username", "bob"]).await;
    assert_eq!(export["profile"]["username"], "bob");
    assert!(export["profile"]["disabledAt"].is_string(), "{export}");
    assert_eq!(export["messages"][0]["content"], "rude words");
    assert_eq!(export["messages"][0]["id"].to_string(), message);
    assert_eq!(export["memberships"].as_array().unwrap().len(), 1);
    assert_eq!(
        export["memberships"][0]["conversationId"].to_string(),
        conversation
    );
    assert!(export["settings"]["readReceipts"].is_boolean());
    assert!(export["sessions"].is_array());
    assert!(
        !export.to_string().contains(&bob.token),
        "no tokens in an export"
    );
    admin_cli(&dir, url, &["enable", "--username", "bob"]).await;
    admin_cli(&dir, url, &["make-admin", "--username", "alice"]).await;
    let users = admin_cli(&dir, url, &["list-users", "--search", "ali"]).await;
    assert_eq!(users[0]["isAdmin"], true);
    admin_cli(&dir, url, &["revoke-sessions", "--username", "alice"]).await;

    let app = app.restart().await;
    assert_eq!(
        sign_in(&app, "bob").await.status(),
        StatusCode::OK,
        "enabled while stopped"
    );
    assert_eq!(
        app.auth_status(&alice).await,
        StatusCode::UNAUTHORIZED,
        "signed out while stopped"
    );
    let alice = signed_in(sign_in(&app, "alice").await).await;
    assert_eq!(
        app.get("/api/admin/users", &alice)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK,
        "made admin while stopped"
    );
}

/// PostgreSQL: the CLI may open the database beside running nodes (here: a data directory with
/// no control socket). A disable still closes the person's stream on the running node, through
/// NATS, and the node refuses their sign-in at once.
#[tokio::test]
async fn on_postgres_the_direct_cli_closes_streams_on_running_nodes_through_the_bus() {
    if !on_postgres() {
        return;
    }
    let app = spawn_app_with(|c| c.signup = SignupMode::Open).await;
    let (_root, _alice, bob) = admin_and_people(&app).await;
    let mut stream = app.stream(&bob, None).await;
    let elsewhere = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_courier"));
    command
        .args(["admin", "disable", "--username", "bob", "--data-dir"])
        .arg(elsewhere.path())
        .arg("--database-url")
        .arg(app.config.database_url.as_deref().unwrap())
        .arg("--nats-url")
        .arg(app.config.nats_url.as_deref().unwrap());
    let output = command.output().await.unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(!elsewhere.path().join("admin.sock").exists());
    stream.next_named("signed-out").await;
    assert_eq!(app.auth_status(&bob).await, StatusCode::UNAUTHORIZED);
    assert_eq!(sign_in(&app, "bob").await.status(), StatusCode::FORBIDDEN);
}

impl TestApp {
    /// The message ids `user`'s search for `q` finds (first page).
    async fn search_ids(&self, user: &TestUser, q: &str) -> Vec<String> {
        let page: Value = self
            .get("/api/search", user)
            .query(&[("q", q)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["results"]
            .as_array()
            .unwrap_or_else(|| panic!("{page}"))
            .iter()
            .map(|h| h["messageId"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn delete_message_as(&self, user: &TestUser, conversation: &str, id: &str) -> StatusCode {
        self.client
            .delete(self.url(&format!("/api/conversations/{conversation}/messages/{id}")))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap()
            .status()
    }
}

fn sqlite_without_nats(c: &mut courier::config::ServeConfig) {
    c.signup = SignupMode::Open;
    if !on_postgres() {
        c.nats_url = None;
    }
}

/// `courier admin delete-message` is the operator's override: no membership needed. It goes the
/// member's delete path: members' streams get `message-deleted`, search forgets the text, the
/// history keeps a tombstone. A server admin on the web deletes any message only as a member.
#[tokio::test]
async fn the_cli_deletes_any_message_live_and_out_of_search_running_or_stopped() {
    let mut app = spawn_app_with(sqlite_without_nats).await;
    let dir = app.data_dir.path().to_owned();
    let url = app.config.database_url.clone();
    let url = url.as_deref();
    let (root, alice, bob) = admin_and_people(&app).await;
    let conversation = app.conversation_between(&alice, &bob).await;
    let first = app.send_message(&bob, &conversation, "needle one").await;
    let second = app.send_message(&bob, &conversation, "needle two").await;
    let (first, second) = (
        first["id"].as_str().unwrap().to_owned(),
        second["id"].as_str().unwrap().to_owned(),
    );
    let mut stream = app.stream(&alice, None).await;

    // The server admin is no member here: the web route answers as to a stranger.
    assert_eq!(
        app.delete_message_as(&root, &conversation, &first).await,
        StatusCode::NOT_FOUND
    );
    // As a member of a direct conversation, they may delete the other person's message.
    let theirs = app.conversation_between(&root, &bob).await;
    let sent = app.send_message(&bob, &theirs, "to the admin").await;
    let sent = sent["id"].as_str().unwrap();
    assert_eq!(
        app.delete_message_as(&root, &theirs, sent).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete_message_as(&alice, &conversation, &first).await,
        StatusCode::FORBIDDEN,
        "an ordinary member still may not"
    );

    // Running: over the control socket.
    let done = admin_cli(&dir, url, &["delete-message", &conversation, &first]).await;
    assert_eq!(done["deletedMessage"].to_string(), first);
    let deleted = stream.next_named("message-deleted").await;
    assert_eq!(deleted.json()["messageId"], first.as_str(), "{:?}", deleted);
    assert_eq!(
        app.search_ids(&alice, "needle").await,
        std::slice::from_ref(&second)
    );

    // Stopped: against the database.
    app.stop().await;
    admin_cli(&dir, url, &["delete-message", &conversation, &second]).await;
    let app = app.restart().await;
    assert!(app.search_ids(&alice, "needle").await.is_empty());
    let page: Value = app
        .messages(&alice, &conversation, None)
        .await
        .json()
        .await
        .unwrap();
    let page = page.as_array().unwrap_or_else(|| panic!("{page}"));
    assert_eq!(page.len(), 2, "tombstones keep their places");
    for m in page {
        assert_eq!(m["content"], "", "{m}");
        assert!(m["deletedAt"].is_string(), "{m}");
    }
}

/// `courier admin delete-conversation`: one log entry removes every member, so their open
/// apps drop it live; the messages are deleted and search forgets them; the pair may start
/// afresh. Running and stopped.
#[tokio::test]
async fn the_cli_deletes_a_conversation_for_every_member_running_or_stopped() {
    let mut app = spawn_app_with(sqlite_without_nats).await;
    let dir = app.data_dir.path().to_owned();
    let url = app.config.database_url.clone();
    let url = url.as_deref();
    let (root, alice, bob) = admin_and_people(&app).await;
    let conversation = app.conversation_between(&alice, &bob).await;
    app.send_message(&bob, &conversation, "haystack secret")
        .await;
    let kept = app.conversation_between(&alice, &root).await;
    app.send_message(&alice, &kept, "haystack kept").await;
    let mut alice_stream = app.stream(&alice, None).await;
    let mut bob_stream = app.stream(&bob, None).await;

    let done = admin_cli(&dir, url, &["delete-conversation", &conversation]).await;
    assert_eq!(done["membersRemoved"], 2, "{done}");
    for stream in [&mut alice_stream, &mut bob_stream] {
        let removed = stream.next_named("member").await.json();
        assert_eq!(removed["change"], "removed", "{removed}");
        assert_eq!(removed["conversationId"], conversation.as_str());
        assert_eq!(removed["users"].as_array().unwrap().len(), 2, "{removed}");
    }
    for user in [&alice, &bob] {
        let status = app
            .get(&format!("/api/conversations/{conversation}"), user)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            app.messages(user, &conversation, None).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        app.search_ids(&alice, "haystack").await.len(),
        1,
        "only the kept one"
    );
    let again = app.conversation_between(&alice, &bob).await;
    assert_ne!(again, conversation, "the pair starts a new conversation");

    // Stopped.
    app.stop().await;
    let done = admin_cli(&dir, url, &["delete-conversation", &kept]).await;
    assert_eq!(done["membersRemoved"], 2, "{done}");
    let app = app.restart().await;
    assert!(app.search_ids(&alice, "haystack").await.is_empty());
    assert_eq!(
        app.messages(&root, &kept, None).await.status(),
        StatusCode::NOT_FOUND
    );
    let listed: Value = app.conversations(&alice, None).await.json().await.unwrap();
    assert!(
        !listed.to_string().contains(&format!("\"id\":\"{kept}\"")),
        "{listed}"
    );
}

/// A report reaches every server admin's open stream at once, as an ephemeral `report` event
/// with what the report list shows; nobody else's stream hears of it.
#[tokio::test]
async fn a_report_reaches_the_admins_streams_live_and_no_one_elses() {
    let app = spawn_app_with(|c| c.signup = SignupMode::Open).await;
    let (root, alice, bob) = admin_and_people(&app).await;
    let conversation = app.conversation_between(&alice, &bob).await;
    let sent = app.send_message(&bob, &conversation, "buy my stuff").await;
    let message = sent["id"].as_str().unwrap();
    let mut admin_stream = app.stream(&root, None).await;
    let mut bob_stream = app.stream(&bob, None).await;

    assert_eq!(
        report(&app, &alice, &conversation, message).await,
        StatusCode::CREATED
    );
    let event = admin_stream.next_named("report").await;
    assert!(event.id.is_none(), "ephemeral: no id, never replayed");
    let filed = event.json();
    assert_eq!(filed["reporter"], "alice");
    assert_eq!(filed["sender"], "bob");
    assert_eq!(filed["content"], "buy my stuff");
    assert_eq!(filed["reason"], "spam");
    assert_eq!(filed["messageId"], message);
    let listed: Value = app.get_json("/api/admin/reports", &root).await;
    assert_eq!(listed[0]["id"], filed["id"], "the list has the same report");
    loop {
        match bob_stream
            .next_event(std::time::Duration::from_millis(500))
            .await
        {
            None => break,
            Some(e) => assert_ne!(e.event.as_deref(), Some("report"), "{e:?}"),
        }
    }
}
