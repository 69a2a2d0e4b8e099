//! `spawn_app()` and `TestApp`: the real server on a random port over a fresh database,
//! with one helper per endpoint and an SSE reader, so tests read like the API.
//!
//! Backend: SQLite in a temp dir by default. `COURIER_TEST_BACKEND=postgres` runs the same
//! suite on a fresh PostgreSQL database per test (`COURIER_TEST_PG`, default the machine's
//! server) with NATS (`COURIER_TEST_NATS`, default nats://127.0.0.1:4222).

use courier::app::App;
use courier::config::ServeConfig;
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Once;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct TestApp {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when `metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub client: Client,
    pub data_dir: tempfile::TempDir,
    pub config: ServeConfig,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: String,
    pub username: String,
    pub token: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns with a configuration tweak (limits, heartbeat, …).
pub async fn spawn_app_with(tweak: impl FnOnce(&mut ServeConfig)) -> TestApp {
    init_logs();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut config = ServeConfig::for_data_dir(data_dir.path());
    config.dev_login = Some(true);
    // Tests sign in many people from one address; the limit has its own test.
    config.dev_login_per_minute = 0;
    if std::env::var("COURIER_TEST_BACKEND").as_deref() == Ok("postgres") {
        config.database_url = Some(fresh_postgres_database().await);
        config.nats_url = Some(
            std::env::var("COURIER_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
        );
    }
    tweak(&mut config);
    start(config, data_dir).await
}

/// Starts a server with exactly `config`, owning `data_dir` (for a data directory prepared
/// beforehand: a restored backup, an upgrade fixture).
pub async fn start(config: ServeConfig, data_dir: tempfile::TempDir) -> TestApp {
    let app = App::build(config.clone()).await.expect("app builds");
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run(std::future::pending()));
    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    TestApp {
        addr,
        metrics_addr,
        client,
        data_dir,
        config,
        shutdown,
        server: Some(server),
    }
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            courier::telemetry::init("debug,sqlx=warn", std::io::stderr);
        }
    });
}

/// Whether the PostgreSQL server the suite uses answers (see `common/services.rs`).
pub fn postgres_available() -> bool {
    crate::reachable::postgres(&postgres_admin_url())
}

/// The PostgreSQL server the suite uses, as `host:port` (see `COURIER_TEST_PG`).
pub fn postgres_addr() -> String {
    let admin = postgres_admin_url();
    let host = admin
        .split_once('@')
        .map(|(_, rest)| rest)
        .unwrap_or(&admin)
        .trim_start_matches("postgres://");
    host.split('/').next().unwrap_or(host).to_owned()
}

fn postgres_admin_url() -> String {
    std::env::var("COURIER_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty PostgreSQL database; returns its URL.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    let admin = postgres_admin_url();
    let name = format!("courier_test_{}", hex_id());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(&admin);
    format!("{base}/{name}")
}

fn hex_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{:016x}", h.finish())
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the server the way a signal does and waits for it to finish.
    pub async fn stop(&mut self) -> Duration {
        let started = std::time::Instant::now();
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server ran cleanly");
        }
        started.elapsed()
    }

    /// Stops the server and starts a new one on the same data directory (and database).
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let TestApp {
            data_dir, config, ..
        } = self;
        start(config, data_dir).await
    }

    pub fn get(&self, path: &str, user: &TestUser) -> RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(&user.token)
    }

    /// The status `GET /api/auth_user` answers `user`: 200 while the session lives, else 401.
    pub async fn auth_status(&self, user: &TestUser) -> StatusCode {
        self.get("/api/auth_user", user)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// `GET /api/auth/providers`, anonymously.
    pub async fn providers(&self) -> Value {
        let response = self
            .client
            .get(self.url("/api/auth/providers"))
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    /// GETs `path` as `user` and parses the JSON body (whatever the status).
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str, user: &TestUser) -> T {
        self.get(path, user)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub fn post(&self, path: &str, user: &TestUser) -> RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(&user.token)
    }

    pub async fn login_raw(&self, body: Value) -> Response {
        self.client
            .post(self.url("/api/login"))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn login_owned(&self, username: String) -> TestUser {
        self.login(&username).await
    }

    pub async fn login(&self, username: &str) -> TestUser {
        let response = self.login_raw(json!({ "username": username })).await;
        assert_eq!(response.status(), StatusCode::OK, "login {username}");
        let body: Value = response.json().await.unwrap();
        TestUser {
            id: body["authUser"]["id"].as_str().unwrap().to_owned(),
            username: body["authUser"]["username"].as_str().unwrap().to_owned(),
            token: body["token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn start_conversation_raw(&self, user: &TestUser, username: &str) -> Response {
        self.post("/api/conversations", user)
            .json(&json!({ "username": username }))
            .send()
            .await
            .unwrap()
    }

    /// The id of `user`'s conversation with `other`, created if needed.
    pub async fn conversation_between(&self, user: &TestUser, other: &TestUser) -> String {
        let response = self.start_conversation_raw(user, &other.username).await;
        match response.status() {
            StatusCode::CREATED => response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
            StatusCode::FOUND => {
                let location = response.headers()["location"].to_str().unwrap();
                location.rsplit('/').next().unwrap().to_owned()
            }
            other => panic!("unexpected status {other}"),
        }
    }

    pub async fn send_message_raw(
        &self,
        user: &TestUser,
        conversation: &str,
        content: &str,
    ) -> Response {
        self.post(&format!("/api/conversations/{conversation}/messages"), user)
            .json(&json!({ "content": content }))
            .send()
            .await
            .unwrap()
    }

    /// Sends and returns the created message JSON.
    pub async fn send_message(&self, user: &TestUser, conversation: &str, content: &str) -> Value {
        let response = self.send_message_raw(user, conversation, content).await;
        assert_eq!(response.status(), StatusCode::CREATED, "send {content:?}");
        response.json().await.unwrap()
    }

    pub async fn messages(
        &self,
        user: &TestUser,
        conversation: &str,
        before: Option<&str>,
    ) -> Response {
        let path = match before {
            Some(b) => format!("/api/conversations/{conversation}/messages?before={b}"),
            None => format!("/api/conversations/{conversation}/messages"),
        };
        self.get(&path, user).send().await.unwrap()
    }

    pub async fn conversations(&self, user: &TestUser, before: Option<&str>) -> Response {
        let path = match before {
            Some(b) => format!("/api/conversations?before={b}"),
            None => "/api/conversations".to_owned(),
        };
        self.get(&path, user).send().await.unwrap()
    }

    /// `POST /api/conversations/{id}/typing`.
    pub async fn typing(&self, user: &TestUser, conversation: &str) -> Response {
        self.post(&format!("/api/conversations/{conversation}/typing"), user)
            .send()
            .await
            .unwrap()
    }

    /// `PUT /api/presence {"state"}`: the client says it is `away` or `online`.
    pub async fn report_presence(&self, user: &TestUser, state: &str) -> Response {
        self.client
            .put(self.url("/api/presence"))
            .bearer_auth(&user.token)
            .json(&json!({ "state": state }))
            .send()
            .await
            .unwrap()
    }

    /// `PATCH /api/me/settings` with `body`.
    pub async fn update_settings(&self, user: &TestUser, body: Value) -> Response {
        self.client
            .patch(self.url("/api/me/settings"))
            .bearer_auth(&user.token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Opens `user`'s event stream, resuming after `last_event_id` if given.
    pub async fn stream(&self, user: &TestUser, last_event_id: Option<&str>) -> SseStream {
        let mut request = self
            .get("/api/messages", user)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseStream::new(response)
    }
}

#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
    /// Comment lines (`: …`) seen in this block.
    pub comments: Vec<String>,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }
}

/// A minimal SSE parser over a response body: yields every block, comments included.
pub struct SseStream {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, String>> + Send>>,
    buffer: String,
    blocks: VecDeque<SseEvent>,
    pub last_id: Option<String>,
    pub ended: bool,
}

impl SseStream {
    pub fn new(response: Response) -> Self {
        use futures::TryStreamExt;
        Self::from_stream(response.bytes_stream().map_err(|e| e.to_string()))
    }

    pub fn from_stream(
        body: impl futures::Stream<Item = Result<bytes::Bytes, String>> + Send + 'static,
    ) -> Self {
        Self {
            body: Box::pin(body),
            buffer: String::new(),
            blocks: VecDeque::new(),
            last_id: None,
            ended: false,
        }
    }

    /// The next block (event, comment or retry hint), or `None` if the stream ended or `wait` passed.
    pub async fn next_block(&mut self, wait: Duration) -> Option<SseEvent> {
        use futures::StreamExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(block) = self.blocks.pop_front() {
                if block.id.is_some() {
                    self.last_id = block.id.clone();
                }
                return Some(block);
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => self.ended = true,
                Ok(Some(Ok(chunk))) => {
                    self.buffer.push_str(&String::from_utf8_lossy(&chunk));
                    self.parse_blocks();
                }
            }
        }
    }

    fn parse_blocks(&mut self) {
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = SseEvent::default();
            for line in block.lines() {
                if let Some(comment) = line.strip_prefix(':') {
                    event.comments.push(comment.trim().to_owned());
                } else if let Some((field, value)) = line.split_once(':') {
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => event.id = Some(value.to_owned()),
                        "event" => event.event = Some(value.to_owned()),
                        "retry" => event.retry = value.parse().ok(),
                        "data" => {
                            if !event.data.is_empty() {
                                event.data.push('\n');
                            }
                            event.data.push_str(value);
                        }
                        _ => {}
                    }
                }
            }
            self.blocks.push_back(event);
        }
    }

    /// The next block that carries data (messages and named events), skipping comments.
    pub async fn next_event(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let block = self.next_block(left).await?;
            if !block.data.is_empty() {
                return Some(block);
            }
        }
    }

    /// The next event named `name` (skipping others); panics if none arrives in time.
    pub async fn next_named(&mut self, name: &str) -> SseEvent {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self
                .next_event(left)
                .await
                .unwrap_or_else(|| panic!("an `{name}` event in time"));
            if event.event.as_deref() == Some(name) {
                return event;
            }
        }
    }

    /// The next event that is not `presence` must be a message: its JSON.
    pub async fn next_message_skipping_presence(&mut self) -> Value {
        loop {
            let event = self.next_event(PATIENCE).await.expect("a message in time");
            match event.event.as_deref() {
                Some("presence") => continue,
                None => return event.json(),
                Some(_) => panic!("expected a message, got {event:?}"),
            }
        }
    }

    /// The next message event's JSON; panics if none arrives in time.
    pub async fn next_message(&mut self) -> Value {
        let event = self
            .next_event(PATIENCE)
            .await
            .expect("a message event in time");
        assert_eq!(
            event.event, None,
            "expected an unnamed message event, got {event:?}"
        );
        event.json()
    }

    /// Collects message events until `count` arrived or `wait` passed.
    pub async fn messages(&mut self, count: usize, wait: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        while out.len() < count {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(event) if event.event.is_none() => out.push(event.json()),
                Some(_) => {}
                None => break,
            }
        }
        out
    }

    /// Asserts that no message arrives within `wait`.
    pub async fn assert_quiet(&mut self, wait: Duration) {
        if let Some(event) = self.next_event(wait).await {
            panic!("unexpected event {event:?}");
        }
    }
}

pub fn ids(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}
