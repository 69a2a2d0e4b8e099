//! Three (or more) real `courier` processes sharing one PostgreSQL database and one NATS,
//! and HTTP/SSE clients that talk to them as a browser would.

use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Every node signs and checks tokens with this: it must match across a cluster.
pub const TOKEN_SECRET: &str = "cluster-test-secret-0123456789abcdef-0123456789";

pub fn init_logs() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        courier::telemetry::init(&filter, std::io::stderr);
    }
}

pub fn random_name(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 6]>()))
}

pub fn machine_postgres() -> String {
    std::env::var("COURIER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn machine_nats() -> String {
    std::env::var("COURIER_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A fresh database on the PostgreSQL behind `admin_url`; dropped by `drop_database`.
pub struct Database {
    admin_url: String,
    pub name: String,
    pub url: String,
}

fn with_database(admin_url: &str, database: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[start..].find('/') {
        Some(slash) => &base[..start + slash],
        None => base,
    };
    format!("{base}/{database}{query}")
}

impl Database {
    pub async fn create(admin_url: &str) -> Self {
        use sqlx::Connection;
        let name = random_name("courier_cluster_");
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is needed: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        Self {
            admin_url: admin_url.to_owned(),
            url: with_database(admin_url, &name),
            name,
        }
    }

    pub async fn drop_database(self) {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// One `courier serve` process; SIGKILLed on drop.
pub struct Node {
    child: Child,
    pub base: String,
    /// Its `/metrics` URL, when started with `--metrics-listen`.
    pub metrics: Option<String>,
    _dir: tempfile::TempDir,
}

impl Node {
    #[allow(dead_code)] // tests/deploy shares this file
    pub fn spawn(database_url: &str, nats_url: &str, heartbeat: &str) -> Self {
        Self::spawn_on(0, database_url, nats_url, heartbeat, &[])
    }

    /// A node on `127.0.0.1:port` (0 picks one) with extra `COURIER_*` settings in `env`.
    #[allow(dead_code)] // tests/deploy shares this file
    pub fn spawn_on(
        port: u16,
        database_url: &str,
        nats_url: &str,
        heartbeat: &str,
        env: &[(&str, &str)],
    ) -> Self {
        Self::launch(port, database_url, nats_url, heartbeat, env, &[])
    }

    fn launch(
        port: u16,
        database_url: &str,
        nats_url: &str,
        heartbeat: &str,
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new(env!("CARGO_BIN_EXE_courier"));
        command
            .arg("serve")
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--dev-login",
                "true",
            ])
            .args(["--dev-login-per-minute", "0"])
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--database-url", database_url, "--nats-url", nats_url])
            .args(["--token-secret", TOKEN_SECRET, "--heartbeat", heartbeat])
            .args(["--sse-retry", "100ms"])
            .envs(env.iter().copied())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        // Its log goes to a file beside its data, so a node that fails to start says why.
        let log_path = dir.path().join("stderr.log");
        match std::env::var("TEST_LOG") {
            Ok(filter) => command.env("COURIER_LOG", filter).stderr(Stdio::inherit()),
            Err(_) => command
                .env("COURIER_LOG", "warn")
                .stderr(std::fs::File::create(&log_path).expect("node log file")),
        };
        let mut child = command.spawn().expect("spawn courier");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                // The address line, then the metrics line when there is one.
                let found = line
                    .strip_prefix("courier listening on ")
                    .or_else(|| line.strip_prefix("courier metrics on "));
                if let Some(found) = found {
                    let _ = tx.send(found.trim().to_owned());
                }
            }
        });
        let mut printed = || match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(found) => found,
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("courier did not print its address ({e}; exit: {status}); its log:\n{log}")
            }
        };
        let base = printed();
        let metrics = extra.contains(&"--metrics-listen").then(printed);
        Self {
            child,
            base,
            metrics,
            _dir: dir,
        }
    }

    /// The value of one series of its `/metrics` (`name` or `name{labels}`), 0 when absent.
    pub async fn metric(&self, client: &reqwest::Client, series: &str) -> f64 {
        let url = self
            .metrics
            .as_ref()
            .expect("started with --metrics-listen");
        let text = client
            .get(url)
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    #[allow(dead_code)] // the deploy tests signal nodes
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no graceful shutdown, open streams and in-flight requests just break.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    pub fn start(count: usize, database_url: &str, nats_url: &str, heartbeat: &str) -> Self {
        Self::start_with(count, database_url, nats_url, heartbeat, &[])
    }

    /// Starts `count` nodes with extra command-line flags.
    pub fn start_with(
        count: usize,
        database_url: &str,
        nats_url: &str,
        heartbeat: &str,
        extra: &[&str],
    ) -> Self {
        Self::start_env(count, database_url, nats_url, heartbeat, &[], extra)
    }

    /// Starts `count` nodes with extra `COURIER_*` settings in `env` and command-line flags.
    pub fn start_env(
        count: usize,
        database_url: &str,
        nats_url: &str,
        heartbeat: &str,
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Self {
        // Started together, as a deploy would: migrations race and must cope.
        let nodes = std::thread::scope(|s| {
            let handles: Vec<_> = (0..count)
                .map(|_| s.spawn(|| Node::launch(0, database_url, nats_url, heartbeat, env, extra)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        Self { nodes }
    }

    pub fn bases(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.base.clone()).collect()
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

#[derive(Debug, Clone)]
pub struct Session {
    pub username: String,
    pub token: String,
}

pub async fn login(client: &reqwest::Client, base: &str, username: &str) -> Session {
    let response = client
        .post(format!("{base}/api/login"))
        .json(&json!({ "username": username }))
        .send()
        .await
        .expect("login");
    assert!(
        response.status().is_success(),
        "login: {}",
        response.status()
    );
    let body: Value = response.json().await.expect("login body");
    Session {
        username: username.to_owned(),
        token: body["token"].as_str().expect("token").to_owned(),
    }
}

pub async fn open_conversation(
    client: &reqwest::Client,
    base: &str,
    me: &Session,
    other: &Session,
) -> String {
    let response = client
        .post(format!("{base}/api/conversations"))
        .bearer_auth(&me.token)
        .json(&json!({ "username": other.username }))
        .send()
        .await
        .expect("start conversation");
    assert!(response.status().is_success(), "{}", response.status());
    let body: Value = response.json().await.expect("conversation body");
    body["id"].as_str().expect("conversation id").to_owned()
}

/// The outcome of one POST: the message id on 201, else the status (or 0 when the
/// connection broke) and the body.
pub async fn send(
    client: &reqwest::Client,
    base: &str,
    me: &Session,
    conversation: &str,
    content: &str,
    idempotency_key: Option<&str>,
) -> Result<i64, (u16, String)> {
    let mut request = client
        .post(format!("{base}/api/conversations/{conversation}/messages"))
        .bearer_auth(&me.token)
        .timeout(Duration::from_secs(10))
        .json(&json!({ "content": content }));
    if let Some(key) = idempotency_key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.map_err(|e| (0, e.to_string()))?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| (0, e.to_string()))?;
    if status != 201 {
        return Err((status, body));
    }
    let json: Value = serde_json::from_str(&body).map_err(|e| (status, e.to_string()))?;
    let id = json["id"].as_str().and_then(|id| id.parse().ok());
    id.ok_or((status, body))
}

/// A message as one stream delivered it.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub cursor: String,
    pub id: i64,
    pub conversation: String,
    /// Which connection (0, 1, …) of the subscriber carried it.
    pub connection: usize,
}

pub enum SseItem {
    Message(Delivered),
    /// A named change event (`conversation`, `member`): its cursor and data.
    Change(String, Value),
    Reset(String),
    /// A named event without an id (typing, presence), when the stream asked for them.
    Signal(String, Value),
}

/// The id of the signed-in user.
pub async fn user_id(client: &reqwest::Client, base: &str, me: &Session) -> String {
    let user: Value = client
        .get(format!("{base}/api/auth_user"))
        .bearer_auth(&me.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    user["id"].as_str().unwrap().to_owned()
}

/// The next signal named `name` whose data matches `want`, within `limit`.
pub async fn signal(
    stream: &mut SseStream,
    name: &str,
    limit: Duration,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => panic!("no matching `{name}` event within {limit:?}"),
            Ok(None) => panic!("the stream ended while waiting for `{name}`"),
            Ok(Some(SseItem::Signal(got, data))) if got == name && want(&data) => return data,
            Ok(Some(_)) => {}
        }
    }
}

/// One open `GET /api/messages` stream.
pub struct SseStream {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
    connection: usize,
    signals: bool,
}

impl SseStream {
    pub async fn open(
        client: &reqwest::Client,
        base: &str,
        me: &Session,
        last_event_id: Option<&str>,
        connection: usize,
    ) -> Result<Self, String> {
        let mut request = client
            .get(format!("{base}/api/messages"))
            .bearer_auth(&me.token)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("stream: {}", response.status()));
        }
        Ok(Self {
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
            connection,
            signals: false,
        })
    }

    /// Also yields signals (named events without an id: typing, presence).
    pub fn with_signals(mut self) -> Self {
        self.signals = true;
        self
    }

    /// The next message or reset; `None` when the stream ended or broke.
    pub async fn next(&mut self) -> Option<SseItem> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8_lossy(&block).into_owned();
                let (mut id, mut data, mut event) = (None, None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = Some(v.to_owned());
                    }
                }
                match (event.as_deref(), id, data) {
                    (Some("reset"), _, data) => {
                        return Some(SseItem::Reset(data.unwrap_or_default()));
                    }
                    (Some(_), Some(cursor), Some(data)) => {
                        let json: Value = serde_json::from_str(&data).expect("event JSON");
                        return Some(SseItem::Change(cursor, json));
                    }
                    (Some(name), None, Some(data)) if self.signals => {
                        let json: Value = serde_json::from_str(&data).expect("event JSON");
                        return Some(SseItem::Signal(name.to_owned(), json));
                    }
                    (None, Some(cursor), Some(data)) => {
                        let json: Value = serde_json::from_str(&data).expect("event JSON");
                        return Some(SseItem::Message(Delivered {
                            cursor,
                            id: json["id"]
                                .as_str()
                                .and_then(|s| s.parse().ok())
                                .expect("id"),
                            conversation: json["conversationId"].as_str().expect("conv").to_owned(),
                            connection: self.connection,
                        }));
                    }
                    _ => continue, // comments: connected, heartbeat
                }
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                _ => return None,
            }
        }
    }
}

/// How a subscriber moves between nodes.
#[derive(Clone, Copy)]
pub enum Hop {
    /// Stay on one connection unless it breaks.
    Never,
    /// Disconnect after a random 1..=max messages and resume on the next node.
    Every(usize),
}

/// A client that keeps a stream open somewhere in the cluster, resuming with its last
/// event id after every disconnect, and records everything it is given.
pub struct Subscriber {
    pub delivered: Arc<Mutex<Vec<Delivered>>>,
    pub resets: Arc<Mutex<Vec<String>>>,
    /// Change events with their log position, in the order received.
    pub changes: Arc<Mutex<Vec<(i64, Value)>>>,
    pub connections: Arc<Mutex<usize>>,
    /// The nodes it may connect to; tests remove a node they kill.
    pub nodes: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    pub async fn start(me: Session, nodes: Vec<String>, hop: Hop) -> Self {
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let resets = Arc::new(Mutex::new(Vec::new()));
        let changes = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let nodes = Arc::new(Mutex::new(nodes));
        let stop = CancellationToken::new();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn({
            let (delivered, resets, changes, connections, nodes, stop) = (
                delivered.clone(),
                resets.clone(),
                changes.clone(),
                connections.clone(),
                nodes.clone(),
                stop.clone(),
            );
            async move {
                let client = http();
                let mut ready = Some(ready_tx);
                let mut last: Option<String> = None;
                let mut turn = 0usize;
                while !stop.is_cancelled() {
                    let base = {
                        let nodes = nodes.lock().unwrap();
                        nodes[turn % nodes.len()].clone()
                    };
                    turn += 1;
                    let connection = *connections.lock().unwrap();
                    let mut stream =
                        match SseStream::open(&client, &base, &me, last.as_deref(), connection)
                            .await
                        {
                            Ok(stream) => stream,
                            Err(_) => {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        };
                    *connections.lock().unwrap() += 1;
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                    let budget = match hop {
                        Hop::Never => usize::MAX,
                        Hop::Every(max) => 1 + rand::random_range(0..max),
                    };
                    let mut taken = 0;
                    while taken < budget {
                        let item = tokio::select! {
                            _ = stop.cancelled() => return,
                            item = stream.next() => item,
                        };
                        match item {
                            Some(SseItem::Message(m)) => {
                                last = Some(m.cursor.clone());
                                delivered.lock().unwrap().push(m);
                                taken += 1;
                            }
                            Some(SseItem::Change(cursor, data)) => {
                                let position = position_of(&cursor);
                                changes.lock().unwrap().push((position, data));
                                last = Some(cursor);
                            }
                            Some(SseItem::Reset(reason)) => resets.lock().unwrap().push(reason),
                            Some(SseItem::Signal(..)) => {}
                            None => break,
                        }
                    }
                }
            }
        });
        // The first stream is registered once its response headers arrived.
        let _ = tokio::time::timeout(Duration::from_secs(10), ready_rx).await;
        Self {
            delivered,
            resets,
            changes,
            connections,
            nodes,
            stop,
            task,
        }
    }

    pub fn delivered(&self) -> Vec<Delivered> {
        self.delivered.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }

    /// Waits until every id in `expected` arrived (or `limit` passes), then stops.
    pub async fn wait_for(&self, expected: &BTreeSet<i64>, limit: Duration) -> Vec<Delivered> {
        let deadline = Instant::now() + limit;
        loop {
            let got: BTreeSet<i64> = self.delivered().iter().map(|d| d.id).collect();
            if expected.is_subset(&got) || Instant::now() > deadline {
                return self.delivered();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn stop(self) -> Vec<Delivered> {
        self.stop.cancel();
        let delivered = self.delivered.clone();
        let _ = self.task.await;
        delivered.lock().unwrap().clone()
    }
}

/// The log position a cursor `<instance>-<position>` names.
pub fn position_of(cursor: &str) -> i64 {
    cursor
        .rsplit_once('-')
        .and_then(|(_, p)| p.parse().ok())
        .expect("cursor")
}

/// Everything `expected` arrived exactly once, in commit order (so also in order within
/// each conversation), and the stream never had to reset its cursor.
pub fn assert_exactly_once_in_order(
    who: &str,
    delivered: &[Delivered],
    resets: &[String],
    expected: &BTreeSet<i64>,
) {
    assert!(resets.is_empty(), "{who}: cursor resets {resets:?}");
    let ids: Vec<i64> = delivered.iter().map(|d| d.id).collect();
    for pair in delivered.windows(2) {
        assert!(
            pair[0].id < pair[1].id,
            "{who}: {} (connection {}) then {} (connection {})",
            pair[0].id,
            pair[0].connection,
            pair[1].id,
            pair[1].connection
        );
    }
    let got: BTreeSet<i64> = ids.iter().copied().collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{who}: missing {} messages: {missing:?}",
        missing.len()
    );
    let mut per_conversation: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for d in delivered {
        per_conversation
            .entry(&d.conversation)
            .or_default()
            .push(d.id);
    }
    for (conversation, ids) in per_conversation {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{who}: order in {conversation}"
        );
    }
}
