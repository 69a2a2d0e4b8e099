//! Issue 17: first-run setup and the server admin, invite links made in the app, password
//! change and one-time reset links, deleting one's account, `courier admin create-user`.

use crate::helpers::*;
use courier::config::SignupMode;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const GOOD_PASSWORD: &str = "violet-harbor-tractor-91";
const OTHER_PASSWORD: &str = "copper-meadow-lantern-47";

async fn post_json(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn as_user(response: reqwest::Response) -> TestUser {
    assert!(response.status().is_success(), "{}", response.status());
    let body: Value = response.json().await.unwrap();
    TestUser {
        id: body["authUser"]["id"].as_str().unwrap().to_owned(),
        username: body["authUser"]["username"].as_str().unwrap().to_owned(),
        token: body["token"].as_str().unwrap().to_owned(),
    }
}

async fn setup(app: &TestApp, username: &str, password: &str) -> reqwest::Response {
    post_json(
        app,
        "/api/setup",
        json!({ "username": username, "password": password }),
    )
    .await
}

async fn sign_in(app: &TestApp, username: &str, password: &str) -> reqwest::Response {
    post_json(
        app,
        "/api/signin",
        json!({ "username": username, "password": password }),
    )
    .await
}

async fn sign_up(app: &TestApp, username: &str, invite: Option<&str>) -> reqwest::Response {
    post_json(
        app,
        "/api/signup",
        json!({ "username": username, "password": GOOD_PASSWORD, "invite": invite }),
    )
    .await
}

async fn setup_needed(app: &TestApp) -> bool {
    let body: Value = app
        .client
        .get(app.url("/api/setup"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["needed"].as_bool().unwrap()
}

async fn error_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn create_invite(app: &TestApp, user: &TestUser, body: Value) -> reqwest::Response {
    app.post("/api/invites", user)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_first_person_sets_up_the_server_becomes_its_admin_and_setup_then_locks() {
    let app = spawn_app().await;
    assert!(setup_needed(&app).await);

    let (status, body) = error_of(setup(&app, "alice", "password1").await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["errors"]["password"].is_string(), "{body}");
    assert!(setup_needed(&app).await, "a refused setup changes nothing");

    let alice = as_user(setup(&app, "alice", GOOD_PASSWORD).await).await;
    let account: Value = app.get_json("/api/account", &alice).await;
    assert_eq!(account["isAdmin"], true);
    assert_eq!(account["hasPassword"], true);
    assert!(!setup_needed(&app).await);

    let (status, body) = error_of(setup(&app, "mallory", GOOD_PASSWORD).await).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("already set up"),
        "{body}"
    );
    assert_eq!(
        sign_in(&app, "mallory", GOOD_PASSWORD).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "the second setup created nobody"
    );
    assert_eq!(
        sign_in(&app, "alice", GOOD_PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn racing_setups_produce_exactly_one_admin() {
    let app = spawn_app().await;
    let attempts = (0..6).map(|i| {
        let (client, url) = (app.client.clone(), app.url("/api/setup"));
        tokio::spawn(async move {
            let body = json!({ "username": format!("racer{i}"), "password": GOOD_PASSWORD });
            client.post(url).json(&body).send().await.unwrap().status()
        })
    });
    let mut statuses = Vec::new();
    for attempt in attempts.collect::<Vec<_>>() {
        statuses.push(attempt.await.unwrap());
    }
    let won = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let lost = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((won, lost), (1, 5), "{statuses:?}");
    let mut admins = 0;
    for i in 0..6 {
        let response = sign_in(&app, &format!("racer{i}"), GOOD_PASSWORD).await;
        if response.status() == StatusCode::OK {
            let me = as_user(response).await;
            let account: Value = app.get_json("/api/account", &me).await;
            admins += usize::from(account["isAdmin"] == true);
        }
    }
    assert_eq!(admins, 1);
}

#[tokio::test]
async fn create_user_on_the_command_line_makes_an_admin_and_ends_setup() {
    if std::env::var("COURIER_TEST_BACKEND").as_deref() == Ok("postgres") {
        // The subcommand opens the store from flags; the SQLite run covers it.
        return;
    }
    let data_dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(["admin", "create-user", "--admin", "--username", "root"])
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("COURIER_NEW_PASSWORD", GOOD_PASSWORD)
        .env_remove("COURIER_DATABASE_URL")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("server admin"), "{stdout}");
    assert!(!stdout.contains(GOOD_PASSWORD));

    let weak = std::process::Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(["admin", "create-user", "--username", "weak"])
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("COURIER_NEW_PASSWORD", "password")
        .output()
        .unwrap();
    assert!(!weak.status.success(), "a weak password is refused");

    let dir = data_dir.path().to_owned();
    let app = spawn_app_with(move |c| {
        c.data_dir = dir;
        c.database_url = None;
        c.nats_url = None;
    })
    .await;
    assert!(!setup_needed(&app).await);
    let root = as_user(sign_in(&app, "root", GOOD_PASSWORD).await).await;
    let account: Value = app.get_json("/api/account", &root).await;
    assert_eq!(account["isAdmin"], true);
}

#[tokio::test]
async fn invite_links_admit_as_many_people_as_they_allow_until_they_expire_or_are_revoked() {
    let app = spawn_app().await;
    let admin = as_user(setup(&app, "admin", GOOD_PASSWORD).await).await;
    let created = create_invite(&app, &admin, json!({ "expiresInHours": 24, "maxUses": 2 })).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let invite: Value = created.json().await.unwrap();
    let code = invite["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 32, "128 random bits, hex");
    assert_eq!(invite["link"], format!("/#invite={code}"));

    let check: Value = post_json(&app, "/api/invites/check", json!({ "code": code }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(check["state"], "valid");

    assert_eq!(
        sign_up(&app, "bob", Some(&code)).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        sign_up(&app, "carol", Some(&code)).await.status(),
        StatusCode::CREATED
    );
    let (status, body) = error_of(sign_up(&app, "dave", Some(&code)).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["errors"]["invite"]
            .as_str()
            .unwrap()
            .contains("used as many times"),
        "{body}"
    );
    assert_eq!(
        sign_in(&app, "dave", GOOD_PASSWORD).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "nothing was created"
    );

    // A member may not make links unless the admin allows it.
    let bob = as_user(sign_in(&app, "bob", GOOD_PASSWORD).await).await;
    assert_eq!(
        create_invite(&app, &bob, json!({})).await.status(),
        StatusCode::FORBIDDEN
    );

    // Revoked.
    let revocable: Value = create_invite(&app, &admin, json!({}))
        .await
        .json()
        .await
        .unwrap();
    let response = app
        .client
        .delete(app.url(&format!(
            "/api/invites/{}",
            revocable["id"].as_str().unwrap()
        )))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, body) =
        error_of(sign_up(&app, "erin", Some(revocable["code"].as_str().unwrap())).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["errors"]["invite"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );

    // Expired.
    let short: Value = create_invite(&app, &admin, json!({ "expiresInHours": 1.0 / 3600.0 }))
        .await
        .json()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (status, body) =
        error_of(sign_up(&app, "frank", Some(short["code"].as_str().unwrap())).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["errors"]["invite"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );

    // Unknown codes, and the list the admin sees.
    let check: Value = post_json(&app, "/api/invites/check", json!({ "code": "nope" }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(check["state"], "unknown");
    let listed: Vec<Value> = app.get_json("/api/invites", &admin).await;
    let states: Vec<&str> = listed
        .iter()
        .map(|i| i["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["expired", "revoked", "spent"]);
}

#[tokio::test]
async fn members_may_invite_when_the_admin_allows_it_and_flag_codes_still_work() {
    let app = spawn_app_with(|c| {
        c.members_can_invite = true;
        c.invite_codes = vec!["from-the-flag".into()];
    })
    .await;
    let _admin = as_user(setup(&app, "admin", GOOD_PASSWORD).await).await;
    let bob = as_user(sign_up(&app, "bob", Some("from-the-flag")).await).await;
    let invite: Value = create_invite(&app, &bob, json!({ "maxUses": 1 }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        sign_up(&app, "carol", invite["code"].as_str())
            .await
            .status(),
        StatusCode::CREATED
    );
    let (status, _) = error_of(create_invite(&app, &bob, json!({ "maxUses": 0 })).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn invite_checks_are_rate_limited() {
    let app = spawn_app_with(|c| {
        c.login_attempts_per_ip = std::num::NonZeroU32::new(3).unwrap();
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let response = post_json(
            &app,
            "/api/invites/check",
            json!({ "code": format!("guess{i}") }),
        )
        .await;
        statuses.push(response.status());
    }
    assert_eq!(statuses[..3], [StatusCode::OK; 3]);
    assert_eq!(statuses[4], StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_can_sign_out_other_sessions() {
    let app = spawn_app_with(|c| {
        c.signup = SignupMode::Open;
        c.login_attempts_per_account = std::num::NonZeroU32::new(50).unwrap();
    })
    .await;
    let laptop = as_user(sign_up(&app, "alice", None).await).await;
    let phone = as_user(sign_in(&app, "alice", GOOD_PASSWORD).await).await;
    let change = |current: &str, new: &str, others: bool| {
        app.post("/api/account/password", &laptop)
            .json(
                &json!({ "currentPassword": current, "newPassword": new, "signOutOthers": others }),
            )
            .send()
    };

    let (status, body) =
        error_of(change(OTHER_PASSWORD, OTHER_PASSWORD, true).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["errors"]["currentPassword"].is_string(), "{body}");
    let (status, body) = error_of(change(GOOD_PASSWORD, "password", true).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["errors"]["newPassword"].is_string(), "{body}");
    assert_eq!(
        app.auth_status(&phone).await,
        StatusCode::OK,
        "nothing changed"
    );
    assert_eq!(
        sign_in(&app, "alice", GOOD_PASSWORD).await.status(),
        StatusCode::OK
    );

    let mut phone_stream = app.stream(&phone, None).await;
    let done: Value = change(GOOD_PASSWORD, OTHER_PASSWORD, true)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        done["signedOut"], 2,
        "the phone and the check sign-in above"
    );
    assert_eq!(app.auth_status(&laptop).await, StatusCode::OK);
    assert_eq!(app.auth_status(&phone).await, StatusCode::UNAUTHORIZED);
    let ended = phone_stream.next_named("signed-out").await;
    assert_eq!(ended.event.as_deref(), Some("signed-out"));
    assert_eq!(
        sign_in(&app, "alice", GOOD_PASSWORD).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        sign_in(&app, "alice", OTHER_PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn password_changes_are_rate_limited() {
    let app = spawn_app_with(|c| {
        c.signup = SignupMode::Open;
        c.login_attempts_per_account = std::num::NonZeroU32::new(3).unwrap();
    })
    .await;
    let alice = as_user(sign_up(&app, "alice", None).await).await;
    let mut last = StatusCode::OK;
    for _ in 0..4 {
        last = app
            .post("/api/account/password", &alice)
            .json(
                &json!({ "currentPassword": "wrong-guess-123456", "newPassword": OTHER_PASSWORD }),
            )
            .send()
            .await
            .unwrap()
            .status();
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn an_admin_reset_link_works_once_and_signs_out_the_account() {
    let app = spawn_app_with(|c| c.signup = SignupMode::Open).await;
    let admin = as_user(setup(&app, "admin", GOOD_PASSWORD).await).await;
    let bob = as_user(sign_up(&app, "bob", None).await).await;

    let refused = app
        .post("/api/admin/password_links", &bob)
        .json(&json!({ "username": "admin" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let made = app
        .post("/api/admin/password_links", &admin)
        .json(&json!({ "username": "bob" }))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::CREATED);
    let link: Value = made.json().await.unwrap();
    let token = link["token"].as_str().unwrap().to_owned();
    assert_eq!(link["link"], format!("/#reset={token}"));

    let weak = post_json(
        &app,
        "/api/password_reset",
        json!({ "token": token, "newPassword": "password" }),
    )
    .await;
    assert_eq!(weak.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let used = post_json(
        &app,
        "/api/password_reset",
        json!({ "token": token, "newPassword": OTHER_PASSWORD }),
    )
    .await;
    assert_eq!(
        used.status(),
        StatusCode::NO_CONTENT,
        "a weak try did not spend it"
    );
    assert_eq!(app.auth_status(&bob).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        sign_in(&app, "bob", OTHER_PASSWORD).await.status(),
        StatusCode::OK
    );
    let (status, body) = error_of(
        post_json(
            &app,
            "/api/password_reset",
            json!({ "token": token, "newPassword": "amber-signal-orchard-62" }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["errors"]["token"].is_string(), "{body}");
    assert_eq!(
        sign_in(&app, "bob", OTHER_PASSWORD).await.status(),
        StatusCode::OK,
        "the second use changed nothing"
    );
}

#[tokio::test]
async fn a_reset_link_expires() {
    let app = spawn_app_with(|c| {
        c.signup = SignupMode::Open;
        c.password_link_lifetime = Duration::from_secs(1);
    })
    .await;
    let admin = as_user(setup(&app, "admin", GOOD_PASSWORD).await).await;
    let link: Value = app
        .post("/api/admin/password_links", &admin)
        .json(&json!({ "username": "admin" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let late = post_json(
        &app,
        "/api/password_reset",
        json!({ "token": link["token"], "newPassword": OTHER_PASSWORD }),
    )
    .await;
    assert_eq!(late.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        sign_in(&app, "admin", GOOD_PASSWORD).await.status(),
        StatusCode::OK
    );
}

async fn delete_account(app: &TestApp, user: &TestUser, body: Value) -> reqwest::Response {
    app.client
        .delete(app.url("/api/account"))
        .bearer_auth(&user.token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn deleting_an_account_ends_its_sessions_and_streams_and_keeps_its_messages_for_others() {
    let app = spawn_app_with(|c| c.signup = SignupMode::Open).await;
    let alice = as_user(sign_up(&app, "alice", None).await).await;
    let bob = as_user(sign_up(&app, "bob", None).await).await;
    let conversation = app.conversation_between(&alice, &bob).await;
    app.send_message(&bob, &conversation, "hello from bob")
        .await;
    let mut bob_stream = app.stream(&bob, None).await;

    let wrong = delete_account(&app, &bob, json!({ "password": OTHER_PASSWORD })).await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.auth_status(&bob).await,
        StatusCode::OK,
        "nothing changed"
    );

    let deleted = delete_account(&app, &bob, json!({ "password": GOOD_PASSWORD })).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.auth_status(&bob).await, StatusCode::UNAUTHORIZED);
    let ended = bob_stream.next_named("signed-out").await;
    assert_eq!(ended.event.as_deref(), Some("signed-out"));
    assert_eq!(
        sign_in(&app, "bob", GOOD_PASSWORD).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // The username stays reserved, against any case.
    let (status, body) = error_of(sign_up(&app, "Bob", None).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["errors"]["username"].is_string(), "{body}");
    // Dev login cannot take the account over either.
    assert_eq!(
        app.login_raw(json!({ "username": "bob" })).await.status(),
        StatusCode::FORBIDDEN
    );

    let history: Value = app
        .messages(&alice, &conversation, None)
        .await
        .json()
        .await
        .unwrap();
    let text = history.to_string();
    assert!(text.contains("hello from bob"), "{text}");
}

#[tokio::test]
async fn a_deleted_account_may_take_its_messages_with_it() {
    let app = spawn_app_with(|c| c.signup = SignupMode::Open).await;
    let alice = as_user(sign_up(&app, "alice", None).await).await;
    let bob = as_user(sign_up(&app, "bob", None).await).await;
    let conversation = app.conversation_between(&alice, &bob).await;
    app.send_message(&bob, &conversation, "secret from bob")
        .await;
    app.send_message(&alice, &conversation, "reply from alice")
        .await;

    let deleted = delete_account(
        &app,
        &bob,
        json!({ "password": GOOD_PASSWORD, "removeMessages": true }),
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let history: Value = app
        .messages(&alice, &conversation, None)
        .await
        .json()
        .await
        .unwrap();
    let text = history.to_string();
    assert!(!text.contains("secret from bob"), "{text}");
    assert!(text.contains("reply from alice"), "{text}");
}

#[tokio::test]
async fn a_passwordless_account_is_deleted_only_right_after_signing_in() {
    let app = spawn_app().await;
    let dev = app.login("devuser").await;
    let deleted = delete_account(&app, &dev, json!({})).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT, "a fresh sign-in");
    assert_eq!(app.auth_status(&dev).await, StatusCode::UNAUTHORIZED);
}

/// A real SMTP server for the test: `python3 -m aiosmtpd -n` prints every mail it receives.
struct SmtpSink {
    child: std::process::Child,
    port: u16,
    received: std::sync::Arc<std::sync::Mutex<String>>,
}

impl SmtpSink {
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut child = std::process::Command::new("python3")
            .args(["-u", "-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let received = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut stdout = child.stdout.take()?;
        let sink = received.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        // Ready once it accepts connections.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Self {
                    child,
                    port,
                    received,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        None
    }

    fn mail(&self) -> String {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn forgot_password_mails_a_one_time_link_through_smtp_and_answers_alike_for_strangers() {
    let Some(smtp) = SmtpSink::start() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "aiosmtpd is missing (pip install aiosmtpd)"
        );
        return;
    };
    let smtp_url = format!("smtp://127.0.0.1:{}", smtp.port);
    let app = spawn_app_with(move |c| {
        c.signup = SignupMode::Open;
        c.smtp_url = Some(smtp_url);
        c.smtp_from = "Courier <courier@example.org>".into();
    })
    .await;
    let alice = as_user(sign_up(&app, "alice", None).await).await;
    let bad = app
        .client
        .put(app.url("/api/account/email"))
        .bearer_auth(&alice.token)
        .json(&json!({ "email": "not an address" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let set = app
        .client
        .put(app.url("/api/account/email"))
        .bearer_auth(&alice.token)
        .json(&json!({ "email": "Alice@Example.org" }))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::NO_CONTENT);

    let stranger = post_json(
        &app,
        "/api/password_forgot",
        json!({ "email": "nobody@example.org" }),
    )
    .await;
    let (stranger_status, stranger_body) = (stranger.status(), stranger.text().await.unwrap());
    let known = post_json(
        &app,
        "/api/password_forgot",
        json!({ "email": "alice@example.org" }),
    )
    .await;
    assert_eq!(known.status(), stranger_status);
    assert_eq!(known.status(), StatusCode::ACCEPTED);
    assert_eq!(
        known.text().await.unwrap(),
        stranger_body,
        "the same answer either way"
    );

    let deadline = std::time::Instant::now() + PATIENCE;
    let token = loop {
        let mail = smtp.mail();
        if let Some(at) = mail.find("#reset=") {
            break mail[at + 7..at + 7 + 32].to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no mail arrived: {mail}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mail = smtp.mail();
    assert!(mail.contains("alice@example.org"), "{mail}");
    assert!(
        !mail.contains("nobody@example.org"),
        "no mail to a stranger"
    );

    let used = post_json(
        &app,
        "/api/password_reset",
        json!({ "token": token, "newPassword": OTHER_PASSWORD }),
    )
    .await;
    assert_eq!(used.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.auth_status(&alice).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        sign_in(&app, "alice", OTHER_PASSWORD).await.status(),
        StatusCode::OK
    );
    let again = post_json(
        &app,
        "/api/password_reset",
        json!({ "token": token, "newPassword": "amber-signal-orchard-62" }),
    )
    .await;
    assert_eq!(
        again.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "single use"
    );
}

#[tokio::test]
async fn without_smtp_forgot_password_is_not_offered() {
    let app = spawn_app().await;
    let response = post_json(
        &app,
        "/api/password_forgot",
        json!({ "email": "a@example.org" }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
