//! Sign-in through identity providers, against real servers: a real OpenID provider
//! (`oidc-provider` on Node, from e2e/oidc) and a small local server that speaks GitHub's
//! OAuth and `/user` shapes. Every flow goes over HTTP with a cookie-keeping client that
//! follows redirects by hand, as a browser would.
//!
//! The OpenID tests need `npm ci` in e2e/oidc (scripts/test runs it). Without it they are
//! skipped with a message, except under CI, where they fail.

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use courier::app::App;
use courier::config::{OidcProvider, Secret, ServeConfig};
use courier::service::{FlowSeal, FlowState};
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

const TOKEN_SECRET: &str = "oauth-test-signing-secret-0123456789abcdef";
const CLIENT_ID: &str = "courier-test";
const CLIENT_SECRET: &str = "oidc-client-secret-4f1e9a";

// ---------------------------------------------------------------------------------------------
// OpenID Connect, through oidc-provider

#[tokio::test]
async fn signing_in_through_an_openid_provider_lands_signed_in_with_a_cookie_session() {
    let world = World::start().await;
    let browser = world.browser();
    let callback = browser
        .authorize(&world.start_url("test"), "alice@one")
        .await;
    assert!(callback.contains("code=") && callback.contains("state="));
    let landed = browser.get(&callback).await;
    assert_eq!(landed.status(), StatusCode::FOUND);
    assert_eq!(
        location(&landed),
        "/",
        "lands on the app, with nothing in the URL"
    );
    assert!(browser.cookie("courier_session").is_some());
    assert!(browser.cookie("courier_csrf").is_some());
    assert!(
        browser.cookie("courier_oauth").is_none(),
        "the flow cookie is spent"
    );

    let me = browser.auth_user().await;
    assert_eq!(me["username"], "alice");
    assert_eq!(me["avatarURL"], "https://avatars.example.com/u/alice%40one");

    // A new browser, the same person at the provider: the same Courier account.
    let again = world.browser();
    again.sign_in(&world.start_url("test"), "alice@one").await;
    assert_eq!(again.auth_user().await["id"], me["id"]);

    // Another person who also wants "alice" gets a numbered variant.
    let other = world.browser();
    other.sign_in(&world.start_url("test"), "alice@two").await;
    let other_me = other.auth_user().await;
    assert_ne!(other_me["id"], me["id"]);
    assert_eq!(other_me["username"], "alice_2");
}

#[tokio::test]
async fn a_browser_returns_to_the_page_it_started_from_and_never_to_another_site() {
    let world = World::start().await;
    for (next, lands) in [
        ("/c/12", "/c/12"),
        ("//evil.example/x", "/"),
        ("https://evil.example", "/"),
    ] {
        let browser = world.browser();
        let start = format!("{}?next={}", world.start_url("test"), urlencoding(next));
        let callback = browser.authorize(&start, "bob").await;
        let landed = browser.get(&callback).await;
        assert_eq!(location(&landed), lands, "next={next}");
    }
}

#[tokio::test]
async fn the_providers_list_names_every_configured_provider() {
    let world = World::start().await;
    let body: Value = world
        .api()
        .get(world.app_url("/api/auth/providers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["providers"],
        json!([
            { "id": "github", "name": "GitHub", "url": "/api/oauth/github" },
            { "id": "test", "name": "Test IdP", "url": "/api/oauth/test" },
            { "id": "other", "name": "other", "url": "/api/oauth/other" },
        ])
    );
}

#[tokio::test]
async fn a_tampered_state_is_refused() {
    let world = World::start().await;
    let browser = world.browser();
    let callback = browser.authorize(&world.start_url("test"), "carol").await;
    let tampered = replace_param(&callback, "state", "forged-state");
    let refused = browser.get(&tampered).await;
    assert_refused(refused, StatusCode::BAD_REQUEST, "state does not match").await;
    assert!(browser.cookie("courier_session").is_none());

    // A browser is sent back to the app with an error code it can show, and nothing else.
    let browser = world.browser().html();
    let callback = browser.authorize(&world.start_url("test"), "carol").await;
    let refused = browser
        .get(&replace_param(&callback, "state", "forged"))
        .await;
    assert_eq!(refused.status(), StatusCode::FOUND);
    assert_eq!(location(&refused), "/?error=oauth_state");
    assert!(browser.cookie("courier_session").is_none());
}

#[tokio::test]
async fn a_replayed_callback_is_refused_after_the_sign_in_it_finished() {
    let world = World::start().await;
    let browser = world.browser();
    let callback = browser.authorize(&world.start_url("test"), "henry").await;
    let sealed = browser.cookie("courier_oauth").expect("flow cookie");
    let landed = browser.get(&callback).await;
    assert_eq!(location(&landed), "/");
    let session = browser.cookie("courier_session").unwrap();

    // The same flow cookie, state and code again (a captured callback, or a browser's
    // history): the flow is spent, so no second session comes out of it.
    let replayer = world.browser();
    replayer.plant_cookie("courier_oauth", &sealed);
    assert_refused(
        replayer.get(&callback).await,
        StatusCode::BAD_REQUEST,
        "already used",
    )
    .await;
    assert!(replayer.cookie("courier_session").is_none());
    browser.plant_cookie("courier_oauth", &sealed);
    assert_refused(
        browser.get(&callback).await,
        StatusCode::BAD_REQUEST,
        "already used",
    )
    .await;
    assert_eq!(browser.cookie("courier_session").unwrap(), session);
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_callback_replayed_at_another_node_on_the_same_postgres_is_refused() {
    let Some(database) = PgDatabase::create().await else {
        return;
    };
    let script = provider_script();
    let mut idp = Idp::start(&script).await;
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node = |data: &std::path::Path| {
        let mut config = base_config(data);
        config.database_url = Some(database.url.clone());
        config.oidc = vec![oidc("test", "Test IdP", &idp.issuer)];
        config
    };
    let (config_a, config_b) = (node(data_a.path()), node(data_b.path()));
    let a = TestCourier::build(config_a).await;
    let b = TestCourier::build(config_b).await;
    idp.configure(&[
        a.url("/api/oauth/test/callback"),
        b.url("/api/oauth/test/callback"),
    ])
    .await;
    let (a, b) = (a.run(), b.run());

    let browser = Browser::new(&a.base());
    let callback = browser.authorize(&a.url("/api/oauth/test"), "iris").await;
    let sealed = browser.cookie("courier_oauth").expect("flow cookie");
    assert_eq!(location(&browser.get(&callback).await), "/");
    assert_eq!(browser.auth_user().await["username"], "iris");

    // Node B shares the secret, so it can open the cookie; the store says it is spent.
    let at_b = callback.replace(&a.base(), &b.base());
    assert_ne!(at_b, callback);
    let replayer = Browser::new(&b.base());
    replayer.plant_cookie("courier_oauth", &sealed);
    assert_refused(
        replayer.get(&at_b).await,
        StatusCode::BAD_REQUEST,
        "already used",
    )
    .await;
    assert!(replayer.cookie("courier_session").is_none());

    drop((a, b));
    database.drop().await;
}

#[tokio::test]
async fn a_missing_or_forged_flow_cookie_is_refused() {
    let world = World::start().await;
    let browser = world.browser();
    let callback = browser.authorize(&world.start_url("test"), "dave").await;
    let sealed = browser.cookie("courier_oauth").expect("flow cookie");

    // Without the cookie (another browser, or one that lost it).
    let stranger = world.browser();
    assert_refused(
        stranger.get(&callback).await,
        StatusCode::BAD_REQUEST,
        "no state",
    )
    .await;

    // With a cookie whose content was changed: it no longer decrypts.
    let mut raw = b64().decode(&sealed).unwrap();
    let last = raw.len() - 20;
    raw[last] ^= 0x40;
    browser.set_cookie("courier_oauth", &b64().encode(&raw));
    assert_refused(
        browser.get(&callback).await,
        StatusCode::BAD_REQUEST,
        "not valid",
    )
    .await;
    assert!(browser.cookie("courier_session").is_none());
}

#[tokio::test]
async fn a_flow_without_its_pkce_verifier_is_refused() {
    let world = World::start().await;
    let seal = FlowSeal::new(TOKEN_SECRET.as_bytes());

    // A well-sealed flow state with no verifier (as if it had been dropped): refused before
    // the code is ever sent to the provider.
    let browser = world.browser();
    let callback = browser.authorize(&world.start_url("test"), "erin").await;
    let mut flow = seal
        .open(&browser.cookie("courier_oauth").unwrap())
        .unwrap();
    flow.verifier = String::new();
    browser.set_cookie("courier_oauth", &seal.seal(&flow));
    assert_refused(
        browser.get(&callback).await,
        StatusCode::BAD_REQUEST,
        "PKCE verifier",
    )
    .await;

    // A wrong verifier reaches the provider, which refuses the code: PKCE is enforced there.
    let browser = world.browser();
    let callback = browser.authorize(&world.start_url("test"), "erin").await;
    let flow = FlowState {
        verifier: "a-verifier-that-never-made-the-challenge-0123456789".into(),
        ..seal
            .open(&browser.cookie("courier_oauth").unwrap())
            .unwrap()
    };
    browser.set_cookie("courier_oauth", &seal.seal(&flow));
    assert_refused(
        browser.get(&callback).await,
        StatusCode::BAD_REQUEST,
        "could not be verified",
    )
    .await;
    assert!(browser.cookie("courier_session").is_none());
}

#[tokio::test]
async fn a_code_from_another_flow_is_refused() {
    let world = World::start().await;
    // The victim has started a sign-in; an attacker's code (from the attacker's own flow) is
    // pushed at the victim's callback with the victim's state.
    let victim = world.browser();
    let victims_callback = victim.authorize(&world.start_url("test"), "victim").await;
    let attacker = world.browser();
    let attackers_callback = attacker
        .authorize(&world.start_url("test"), "mallory")
        .await;
    let code = param(&attackers_callback, "code");
    let mixed = replace_param(&victims_callback, "code", &code);
    assert_refused(
        victim.get(&mixed).await,
        StatusCode::BAD_REQUEST,
        "could not be verified",
    )
    .await;
    assert!(victim.cookie("courier_session").is_none());
}

#[tokio::test]
async fn a_callback_for_another_provider_than_the_flow_started_with_is_refused() {
    let world = World::start().await;
    let browser = world.browser();
    let callback = browser.authorize(&world.start_url("test"), "frank").await;
    let elsewhere = callback.replace("/api/oauth/test/", "/api/oauth/other/");
    assert_refused(
        browser.get(&elsewhere).await,
        StatusCode::BAD_REQUEST,
        "another provider",
    )
    .await;
}

#[tokio::test]
async fn a_person_who_cancels_at_the_provider_is_told_so() {
    let world = World::start().await;
    let browser = world.browser().html();
    let login_page = browser.until_page(&world.start_url("test")).await;
    let abort = format!("{}/abort", login_page.trim_end_matches('/'));
    let callback = browser.until_page(&abort).await;
    assert!(callback.contains("error=access_denied"), "{callback}");
    let refused = browser.get(&callback).await;
    assert_eq!(refused.status(), StatusCode::FOUND);
    assert_eq!(location(&refused), "/?error=oauth_denied");

    // An API client gets a 403 with the provider's error code.
    let browser = world.browser();
    let login_page = browser.until_page(&world.start_url("test")).await;
    let callback = browser
        .until_page(&format!("{}/abort", login_page.trim_end_matches('/')))
        .await;
    assert_refused(
        browser.get(&callback).await,
        StatusCode::FORBIDDEN,
        "access_denied",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_provider_is_404() {
    let world = World::start().await;
    let response = world.browser().get(&world.start_url("nope")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_provider_that_is_down_does_not_stop_the_server() {
    let data = tempfile::tempdir().unwrap();
    let mut config = base_config(data.path());
    // Port 1 on loopback: nothing listens there.
    config.oidc = vec![oidc("down", "Down", "http://127.0.0.1:1")];
    let app = TestCourier::start(config).await;
    let api = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let providers: Value = api
        .get(app.url("/api/auth/providers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(providers["providers"][0]["id"], "down");
    let response = api.get(app.url("/api/oauth/down")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let response = api
        .get(app.url("/api/oauth/down"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(location(&response), "/?error=oauth_unavailable");
}

#[tokio::test]
async fn no_code_token_or_secret_reaches_a_log_line() {
    let script = provider_script();
    let mut idp = Idp::start(&script).await;
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log", "trace"])
        .args(["--token-secret", TOKEN_SECRET])
        .arg("--data-dir")
        .arg(data.path())
        .env(
            "COURIER_OIDC",
            format!(
                "id=test,issuer={},client-id={CLIENT_ID},client-secret={CLIENT_SECRET}",
                idp.issuer
            ),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = stdout.next_line().await.unwrap().expect("address line");
    let base = line
        .strip_prefix("courier listening on ")
        .unwrap()
        .to_owned();
    let mut stderr = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut all = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut all)
            .await
            .unwrap();
        all
    });
    idp.configure(&[format!("{base}/api/oauth/test/callback")])
        .await;

    let browser = Browser::new(&base);
    let callback = browser
        .authorize(&format!("{base}/api/oauth/test"), "grace")
        .await;
    let sealed = browser.cookie("courier_oauth").unwrap();
    let flow = FlowSeal::new(TOKEN_SECRET.as_bytes())
        .open(&sealed)
        .unwrap();
    let landed = browser.get(&callback).await;
    assert_eq!(location(&landed), "/");
    let session = browser.cookie("courier_session").unwrap();
    assert_eq!(browser.auth_user().await["username"], "grace");

    kill_term(&child);
    child.wait().await.unwrap();
    let logs = logs.await.unwrap();
    assert!(
        logs.contains("/api/oauth/test/callback"),
        "the callback was logged at all:\n{logs}"
    );
    let code = param(&callback, "code");
    let state = param(&callback, "state");
    for (what, value) in [
        ("authorization code", code.as_str()),
        ("state", state.as_str()),
        ("PKCE verifier", flow.verifier.as_str()),
        ("flow id", flow.id.as_str()),
        ("client secret", CLIENT_SECRET),
        ("signing secret", TOKEN_SECRET),
        // A JWT's signature part is what makes it a credential.
        ("session token", session.rsplit('.').next().unwrap()),
        ("flow cookie", sealed.as_str()),
    ] {
        assert!(!logs.contains(value), "the {what} reached the logs");
    }
}

// ---------------------------------------------------------------------------------------------
// GitHub, through a local server that speaks its shapes

#[tokio::test]
async fn signing_in_with_github_takes_the_numeric_id_login_and_avatar() {
    let github = FakeGitHub::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut config = base_config(data.path());
    github.configure(&mut config);
    let app = TestCourier::start(config).await;

    let browser = Browser::new(&app.base());
    browser
        .sign_in_github(&app.url("/api/oauth/github"), 42)
        .await;
    let me = browser.auth_user().await;
    assert_eq!(me["username"], "octocat");
    assert_eq!(
        me["avatarURL"],
        "https://avatars.githubusercontent.com/u/42?v=4"
    );

    let again = Browser::new(&app.base());
    again
        .sign_in_github(&app.url("/api/oauth/github"), 42)
        .await;
    assert_eq!(again.auth_user().await["id"], me["id"]);

    // Another GitHub account (another id) whose login is taken here.
    let twin = Browser::new(&app.base());
    twin.sign_in_github(&app.url("/api/oauth/github"), 43).await;
    let twin_me = twin.auth_user().await;
    assert_ne!(twin_me["id"], me["id"]);
    assert_eq!(twin_me["username"], "octocat_2");
    assert!(
        github.saw_pkce_for_every_exchange(),
        "every code exchange carried a matching code_verifier"
    );
}

#[tokio::test]
async fn github_refusing_the_client_secret_refuses_the_sign_in() {
    let github = FakeGitHub::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut config = base_config(data.path());
    github.configure(&mut config);
    config.github_client_secret = Some(Secret("not-the-secret".into()));
    let app = TestCourier::start(config).await;

    let browser = Browser::new(&app.base());
    let authorize = location(&browser.get(&app.url("/api/oauth/github")).await);
    let callback = location(&browser.get(&format!("{authorize}&login=42")).await);
    assert_refused(
        browser.get(&callback).await,
        StatusCode::BAD_REQUEST,
        "could not be verified",
    )
    .await;
    assert!(browser.cookie("courier_session").is_none());
}

// ---------------------------------------------------------------------------------------------
// The test world: one OpenID provider, one Courier with it (twice) and a GitHub look-alike.

struct World {
    _idp: Idp,
    _github: FakeGitHub,
    app: TestCourier,
    _data: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
        let script = provider_script();
        let mut idp = Idp::start(&script).await;
        let github = FakeGitHub::start().await;
        let data = tempfile::tempdir().unwrap();
        let mut config = base_config(data.path());
        github.configure(&mut config);
        config.oidc = vec![
            oidc("test", "Test IdP", &idp.issuer),
            oidc("other", "", &idp.issuer),
        ];
        let app = TestCourier::build(config).await;
        idp.configure(&[
            app.url("/api/oauth/test/callback"),
            app.url("/api/oauth/other/callback"),
        ])
        .await;
        World {
            _idp: idp,
            _github: github,
            app: app.run(),
            _data: data,
        }
    }

    fn browser(&self) -> Browser {
        Browser::new(&self.app.base())
    }

    fn api(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    fn app_url(&self, path: &str) -> String {
        self.app.url(path)
    }

    fn start_url(&self, provider: &str) -> String {
        self.app.url(&format!("/api/oauth/{provider}"))
    }
}

fn base_config(data: &std::path::Path) -> ServeConfig {
    let mut config = ServeConfig::for_data_dir(data);
    config.token_secret = Some(TOKEN_SECRET.parse().unwrap());
    config
}

/// `name` may be empty: the id is then shown.
fn oidc(id: &str, name: &str, issuer: &str) -> OidcProvider {
    let name = if name.is_empty() {
        String::new()
    } else {
        format!("name={name},")
    };
    format!("id={id},{name}issuer={issuer},client-id={CLIENT_ID},client-secret={CLIENT_SECRET}")
        .parse()
        .unwrap()
}

/// The provider script, once `npm ci` has run in e2e/oidc. Without it the OpenID tests fail:
/// a suite that turns green by skipping itself hides exactly the regressions it is for.
fn provider_script() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../e2e/oidc");
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "e2e/oidc/node_modules is missing: run `npm ci --prefix e2e/oidc` (scripts/test does) to test OpenID sign-in"
    );
    dir.join("provider.js")
}

/// A fresh PostgreSQL database for a test, or `None` (test skipped) when PostgreSQL is not
/// running and COURIER_TEST_REQUIRE_SERVICES is unset.
#[cfg(feature = "postgres")]
struct PgDatabase {
    name: String,
    url: String,
}

#[cfg(feature = "postgres")]
impl PgDatabase {
    fn admin_url() -> String {
        std::env::var("COURIER_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    async fn admin() -> Option<sqlx::PgConnection> {
        use sqlx::Connection;
        match sqlx::PgConnection::connect(&Self::admin_url()).await {
            Ok(conn) => Some(conn),
            Err(e) if std::env::var_os("COURIER_TEST_REQUIRE_SERVICES").is_some() => {
                panic!("PostgreSQL at {} is required: {e}", Self::admin_url())
            }
            Err(e) => {
                eprintln!(
                    "skipped: PostgreSQL at {} unreachable: {e}",
                    Self::admin_url()
                );
                None
            }
        }
    }

    async fn create() -> Option<PgDatabase> {
        let mut conn = Self::admin().await?;
        let name = format!("courier_oauth_{:016x}", rand::random::<u64>());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        let admin = Self::admin_url();
        let (base, query) = match admin.split_once('?') {
            Some((base, query)) => (base.to_owned(), format!("?{query}")),
            None => (admin.clone(), String::new()),
        };
        let authority_end = base.find("://").map_or(0, |i| i + 3);
        let base = match base[authority_end..].find('/') {
            Some(slash) => base[..authority_end + slash].to_owned(),
            None => base,
        };
        let url = format!("{base}/{name}{query}");
        Some(PgDatabase { name, url })
    }

    async fn drop(self) {
        if let Some(mut conn) = Self::admin().await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// oidc-provider in a Node process of its own, killed when dropped.
struct Idp {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    issuer: String,
}

impl Idp {
    async fn start(script: &std::path::Path) -> Idp {
        let mut child = Command::new("node")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts (is Node.js installed?)");
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = stdout.next_line().await.unwrap().expect("issuer line");
        let issuer = line
            .strip_prefix("issuer ")
            .expect("issuer line")
            .to_owned();
        Idp {
            child,
            stdout,
            issuer,
        }
    }

    /// Registers Courier's redirect URIs, now that its port is known.
    async fn configure(&mut self, redirect_uris: &[String]) {
        let clients = json!({ "clients": [{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": redirect_uris,
        }]});
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{clients}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
        let line = self.stdout.next_line().await.unwrap();
        assert_eq!(line.as_deref(), Some("ready"));
    }
}

/// Courier in this process, on its own port and data directory.
struct TestCourier {
    addr: SocketAddr,
    app: Option<App>,
    shutdown: CancellationToken,
}

impl TestCourier {
    async fn build(config: ServeConfig) -> TestCourier {
        if std::env::var_os("TEST_LOG").is_some() {
            courier::telemetry::init("info,courier=debug,sqlx=warn", std::io::stderr);
        }
        let app = App::build(config).await.expect("courier builds");
        TestCourier {
            addr: app.local_addr(),
            shutdown: app.shutdown_token(),
            app: Some(app),
        }
    }

    fn run(mut self) -> TestCourier {
        let app = self.app.take().unwrap();
        tokio::spawn(app.run(std::future::pending()));
        self
    }

    async fn start(config: ServeConfig) -> TestCourier {
        Self::build(config).await.run()
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for TestCourier {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A client that keeps cookies per origin and path, and follows no redirect by itself.
struct Browser {
    client: reqwest::Client,
    app: String,
    accept_html: bool,
    jar: Mutex<Vec<Cookie>>,
}

#[derive(Clone, Debug)]
struct Cookie {
    origin: String,
    name: String,
    value: String,
    path: String,
}

impl Browser {
    fn new(app: &str) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            app: app.to_owned(),
            accept_html: false,
            jar: Mutex::new(Vec::new()),
        }
    }

    /// Sends `Accept: text/html`, as a browser's navigations do.
    fn html(mut self) -> Browser {
        self.accept_html = true;
        self
    }

    async fn get(&self, url: &str) -> reqwest::Response {
        self.send(self.client.get(url), url).await
    }

    async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.send(self.client.post(url).form(form), url).await
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> reqwest::Response {
        let parsed = Url::parse(url).unwrap();
        let origin = parsed.origin().ascii_serialization();
        let cookies: Vec<String> = self
            .jar
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.origin == origin && parsed.path().starts_with(&c.path))
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        let mut request = request;
        if !cookies.is_empty() {
            request = request.header("cookie", cookies.join("; "));
        }
        if self.accept_html {
            request = request.header("accept", "text/html,application/xhtml+xml");
        }
        let response = request.send().await.unwrap();
        for value in response.headers().get_all("set-cookie") {
            self.store(&origin, value.to_str().unwrap());
        }
        response
    }

    fn store(&self, origin: &str, header: &str) {
        let mut parts = header.split(';').map(str::trim);
        let (name, value) = parts.next().unwrap().split_once('=').unwrap();
        let mut path = "/".to_owned();
        let mut gone = value.is_empty();
        for attribute in parts {
            let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
            match key.to_ascii_lowercase().as_str() {
                "path" => path = val.to_owned(),
                "max-age" => gone |= val == "0",
                "expires" => gone |= val.contains("1970"),
                _ => {}
            }
        }
        let mut jar = self.jar.lock().unwrap();
        jar.retain(|c| !(c.origin == origin && c.name == name && c.path == path));
        if !gone {
            jar.push(Cookie {
                origin: origin.to_owned(),
                name: name.to_owned(),
                value: value.to_owned(),
                path,
            });
        }
    }

    /// The value of a cookie Courier set.
    fn cookie(&self, name: &str) -> Option<String> {
        let origin = Url::parse(&self.app)
            .unwrap()
            .origin()
            .ascii_serialization();
        self.jar
            .lock()
            .unwrap()
            .iter()
            .find(|c| c.origin == origin && c.name == name)
            .map(|c| c.value.clone())
    }

    fn set_cookie(&self, name: &str, value: &str) {
        let origin = Url::parse(&self.app)
            .unwrap()
            .origin()
            .ascii_serialization();
        let mut jar = self.jar.lock().unwrap();
        for cookie in jar.iter_mut() {
            if cookie.origin == origin && cookie.name == name {
                cookie.value = value.to_owned();
            }
        }
    }

    /// Puts a cookie in the jar for the app's origin, as if Courier had set it on `/`.
    fn plant_cookie(&self, name: &str, value: &str) {
        let origin = Url::parse(&self.app)
            .unwrap()
            .origin()
            .ascii_serialization();
        self.store(&origin, &format!("{name}={value}; Path=/"));
    }

    /// Follows redirects from `url` until a page (200) or a redirect back to Courier; returns
    /// that page's or redirect's URL.
    async fn until_page(&self, url: &str) -> String {
        let mut url = url.to_owned();
        for _ in 0..20 {
            let response = self.get(&url).await;
            if !response.status().is_redirection() {
                assert_eq!(response.status(), StatusCode::OK, "{url}");
                return url;
            }
            let next = resolve(&url, &location(&response));
            if next.starts_with(&format!("{}/api/oauth/", self.app)) && next.contains("/callback") {
                return next;
            }
            url = next;
        }
        panic!("too many redirects from {url}");
    }

    /// Starts at Courier's `/api/oauth/{id}` and signs in at the provider as `login` (its login
    /// and consent forms, submitted as a person would), up to the redirect back to Courier's
    /// callback, whose URL it returns without following it.
    async fn authorize(&self, start: &str, login: &str) -> String {
        let mut url = start.to_owned();
        for _ in 0..10 {
            url = self.until_page(&url).await;
            if url.contains("/callback?") {
                return url;
            }
            let page = self.get(&url).await.text().await.unwrap();
            let action = page
                .split("action=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("a form on {url}:\n{page}"));
            let action = resolve(&url, &action.replace("&amp;", "&"));
            let form: &[(&str, &str)] = if page.contains("name=\"login\"") {
                &[("prompt", "login"), ("login", login), ("password", "any")]
            } else {
                &[("prompt", "consent")]
            };
            let response = self.post_form(&action, form).await;
            assert!(response.status().is_redirection(), "{action}: {response:?}");
            url = resolve(&action, &location(&response));
        }
        panic!("the provider never sent us back");
    }

    /// A whole OpenID sign-in, checked to land on the app with a session.
    async fn sign_in(&self, start: &str, login: &str) {
        let callback = self.authorize(start, login).await;
        let landed = self.get(&callback).await;
        assert_eq!(location(&landed), "/");
    }

    /// A whole GitHub sign-in as the GitHub user with this id.
    async fn sign_in_github(&self, start: &str, user: u64) {
        let authorize = location(&self.get(start).await);
        assert!(authorize.contains("scope=read%3Auser"), "{authorize}");
        assert!(authorize.contains("code_challenge_method=S256"));
        // `login` is GitHub's own hint for which account to use; the fake honours it.
        let callback = location(&self.get(&format!("{authorize}&login={user}")).await);
        let landed = self.get(&callback).await;
        assert_eq!(landed.status(), StatusCode::FOUND);
        assert_eq!(location(&landed), "/");
    }

    /// `GET /api/auth_user` with the session cookie alone.
    async fn auth_user(&self) -> Value {
        let response = self.get(&format!("{}/api/auth_user", self.app)).await;
        assert_eq!(response.status(), StatusCode::OK, "signed in by cookie");
        response.json().await.unwrap()
    }
}

async fn assert_refused(response: reqwest::Response, status: StatusCode, says: &str) {
    assert_eq!(response.status(), status);
    let cleared = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("courier_oauth=;"));
    assert!(cleared, "a refusal spends the flow cookie");
    assert!(
        !response
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap().starts_with("courier_session=")),
        "no session on a refusal"
    );
    let body: Value = response.json().await.unwrap();
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{message:?} should say {says:?}");
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("a redirect, got {}", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

fn resolve(base: &str, location: &str) -> String {
    Url::parse(base)
        .unwrap()
        .join(location)
        .unwrap()
        .to_string()
}

fn param(url: &str, name: &str) -> String {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{name} in {url}"))
}

fn replace_param(url: &str, name: &str, value: &str) -> String {
    let mut parsed = Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name { value.into() } else { v };
            (k.into_owned(), v.into_owned())
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
}

fn urlencoding(raw: &str) -> String {
    url_form(&[("x", raw)])[2..].to_owned()
}

fn url_form(pairs: &[(&str, &str)]) -> String {
    let mut url = Url::parse("http://x/").unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap().to_owned()
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn kill_term(child: &Child) {
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// A GitHub look-alike: /login/oauth/authorize, /login/oauth/access_token and /user.

const GITHUB_CLIENT_ID: &str = "gh-client";
const GITHUB_CLIENT_SECRET: &str = "gh-secret-7d2c";

#[derive(Clone, Default)]
struct FakeGitHub {
    addr: Option<SocketAddr>,
    inner: Arc<Mutex<GitHubState>>,
}

#[derive(Default)]
struct GitHubState {
    /// code → (S256 challenge, redirect_uri, user id)
    codes: HashMap<String, (String, String, u64)>,
    tokens: HashMap<String, u64>,
    exchanges: usize,
    verified_exchanges: usize,
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    client_id: String,
    redirect_uri: String,
    state: String,
    scope: String,
    code_challenge: String,
    code_challenge_method: String,
    login: Option<u64>,
}

#[derive(Deserialize)]
struct TokenForm {
    client_id: String,
    client_secret: String,
    code: String,
    redirect_uri: String,
    code_verifier: Option<String>,
}

impl FakeGitHub {
    async fn start() -> FakeGitHub {
        let mut github = FakeGitHub::default();
        let router = Router::new()
            .route("/login/oauth/authorize", get(github_authorize))
            .route("/login/oauth/access_token", post(github_token))
            .route("/user", get(github_user))
            .with_state(github.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        github.addr = Some(listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        github
    }

    fn configure(&self, config: &mut ServeConfig) {
        let base = format!("http://{}", self.addr.unwrap());
        config.github_client_id = Some(GITHUB_CLIENT_ID.into());
        config.github_client_secret = Some(Secret(GITHUB_CLIENT_SECRET.into()));
        config.github_auth_url = format!("{base}/login/oauth/authorize");
        config.github_token_url = format!("{base}/login/oauth/access_token");
        config.github_api_url = base;
    }

    fn saw_pkce_for_every_exchange(&self) -> bool {
        let state = self.inner.lock().unwrap();
        state.exchanges > 0 && state.exchanges == state.verified_exchanges
    }
}

async fn github_authorize(
    State(github): State<FakeGitHub>,
    Query(q): Query<AuthorizeQuery>,
) -> Response {
    if q.client_id != GITHUB_CLIENT_ID
        || q.code_challenge_method != "S256"
        || !q.scope.split(' ').any(|s| s == "read:user")
    {
        return (StatusCode::BAD_REQUEST, "bad authorize request").into_response();
    }
    let code = hex::encode(rand::random::<[u8; 10]>());
    github.inner.lock().unwrap().codes.insert(
        code.clone(),
        (
            q.code_challenge,
            q.redirect_uri.clone(),
            q.login.unwrap_or(42),
        ),
    );
    let query = url_form(&[("code", &code), ("state", &q.state)]);
    Redirect::to(&format!("{}?{query}", q.redirect_uri)).into_response()
}

/// GitHub answers errors with 200 and an `error` field, as here.
async fn github_token(
    State(github): State<FakeGitHub>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let wants_json = headers
        .get("accept")
        .is_some_and(|v| v.to_str().unwrap().contains("application/json"));
    if !wants_json {
        return (StatusCode::NOT_ACCEPTABLE, "ask for JSON").into_response();
    }
    let mut state = github.inner.lock().unwrap();
    state.exchanges += 1;
    if form.client_id != GITHUB_CLIENT_ID || form.client_secret != GITHUB_CLIENT_SECRET {
        return Json(json!({ "error": "incorrect_client_credentials" })).into_response();
    }
    let Some((challenge, redirect_uri, user)) = state.codes.remove(&form.code) else {
        return Json(json!({ "error": "bad_verification_code" })).into_response();
    };
    let verified = form
        .code_verifier
        .is_some_and(|v| b64().encode(sha2::Sha256::digest(v.as_bytes())) == challenge);
    if !verified || redirect_uri != form.redirect_uri {
        return Json(json!({ "error": "bad_verification_code" })).into_response();
    }
    state.verified_exchanges += 1;
    let token = format!("gho_{}", hex::encode(rand::random::<[u8; 16]>()));
    state.tokens.insert(token.clone(), user);
    Json(json!({ "access_token": token, "token_type": "bearer", "scope": "read:user" }))
        .into_response()
}

async fn github_user(State(github): State<FakeGitHub>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let Some(&id) = github.inner.lock().unwrap().tokens.get(token) else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "message": "Bad credentials" })),
        )
            .into_response();
    };
    Json(json!({
        "id": id,
        "login": "octocat",
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "type": "User",
    }))
    .into_response()
}

// ---------------------------------------------------------------------------------------------
// Linking a provider to a password account

#[tokio::test]
async fn a_password_account_links_github_and_then_signs_in_with_it() {
    linking_github(None).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_password_account_links_github_on_postgres_too() {
    let Some(database) = PgDatabase::create().await else {
        return;
    };
    linking_github(Some(database.url.clone())).await;
    database.drop().await;
}

async fn linking_github(database_url: Option<String>) {
    let github = FakeGitHub::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut config = base_config(data.path());
    github.configure(&mut config);
    config.signup = courier::config::SignupMode::Open;
    config.database_url = database_url;
    let app = TestCourier::start(config).await;

    let carol = Browser::new(&app.base());
    assert_eq!(
        sign_up(&app, &carol, "carol").await.status(),
        StatusCode::CREATED
    );
    let me = carol.auth_user().await;
    let session = carol.cookie("courier_session").unwrap();

    // Not signed in: nothing to link to.
    let stranger = Browser::new(&app.base());
    let refused = stranger.get(&app.url("/api/oauth/github?link=true")).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // Started by another site's link: refused (linking changes the account).
    let url = app.url("/api/oauth/github?link=true&next=/settings");
    let cross = carol
        .send(
            carol
                .client
                .get(&url)
                .header("sec-fetch-site", "cross-site"),
            &url,
        )
        .await;
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);

    // From Settings: GitHub, then back to Settings with the same session.
    let authorize = location(
        &carol
            .send(
                carol
                    .client
                    .get(&url)
                    .header("sec-fetch-site", "same-origin"),
                &url,
            )
            .await,
    );
    let callback = location(&carol.get(&format!("{authorize}&login=42")).await);
    let landed = carol.get(&callback).await;
    assert_eq!(landed.status(), StatusCode::FOUND);
    assert_eq!(location(&landed), "/settings");
    assert_eq!(
        carol.cookie("courier_session").unwrap(),
        session,
        "still the same session"
    );
    assert_eq!(carol.auth_user().await["id"], me["id"]);
    let account: Value = carol
        .get(&app.url("/api/account"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(account["providers"], json!(["github"]), "{account}");

    // Signing in with that GitHub account now opens carol's account.
    let elsewhere = Browser::new(&app.base());
    elsewhere
        .sign_in_github(&app.url("/api/oauth/github"), 42)
        .await;
    assert_eq!(elsewhere.auth_user().await["id"], me["id"]);
    assert_eq!(elsewhere.auth_user().await["username"], "carol");

    // The same GitHub account cannot be linked to a second account.
    let dave = Browser::new(&app.base());
    assert_eq!(
        sign_up(&app, &dave, "dave").await.status(),
        StatusCode::CREATED
    );
    let authorize = location(&dave.get(&app.url("/api/oauth/github?link=true")).await);
    let callback = location(&dave.get(&format!("{authorize}&login=42")).await);
    let refused = dave.get(&callback).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = refused.json().await.unwrap();
    assert!(body["errors"]["identity"].is_string(), "{body}");
    let account: Value = dave
        .get(&app.url("/api/account"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(account["providers"], json!([]), "nothing linked");
}

async fn sign_up(app: &TestCourier, browser: &Browser, username: &str) -> reqwest::Response {
    let url = app.url("/api/signup");
    let request = browser
        .client
        .post(&url)
        .json(&json!({ "username": username, "password": "violet-harbor-tractor-91" }));
    browser.send(request, &url).await
}
