//! The deployments docs/deploy.md documents, run as documented: its nginx and Caddy configs,
//! taken out of the markdown (only ports, certificate paths, the server name and the upstream
//! read timeout substituted), in front of three `courier` nodes on one fresh PostgreSQL
//! database and NATS, reached over TLS by an HTTP/2 client. If a documented config stops
//! working on the proxies Debian ships, these tests fail.
//!
//! The read timeout is the one setting changed beyond addresses: the docs set it explicitly
//! (`1h`), and the test shortens it to two seconds so that "a stream outlives the read timeout
//! because of Courier's heartbeats" takes seconds to show, not an hour. The control check
//! freezes the node under a stream to show that the shortened timeout is really in force.

#![cfg(all(feature = "postgres", feature = "nats"))]

#[allow(dead_code)]
#[path = "../cluster/harness.rs"]
mod harness;
#[path = "../common/services.rs"]
mod reachable;
mod support;

use harness::{Database, Node, Session, http, init_logs, login, machine_nats, machine_postgres};
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Frame, Kind, Proxy, Relay, Sse};

/// Courier's `--heartbeat` on every node, well inside the read timeout below.
const HEARTBEAT: &str = "500ms";
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
/// What the test substitutes for the docs' `proxy_read_timeout 1h` / `read_timeout 1h`.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Anything that should happen "at once" gets this long before the test gives up.
const PROMPT: Duration = Duration::from_secs(10);
/// Password attempts per client address per node: the client-address check runs into it.
const ATTEMPTS_PER_ADDRESS: &str = "3";

#[test]
fn the_documented_systemd_unit_passes_systemd_analyze_verify() {
    if !reachable::program_installed("systemd-analyze") {
        return;
    }
    let courier = env!("CARGO_BIN_EXE_courier");
    let unit = support::substitute(
        &support::docs_block("systemd"),
        &[("/usr/local/bin/courier", courier.to_owned())],
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("courier.service");
    std::fs::write(&file, &unit).unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
        .expect("systemd-analyze runs");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
    // The hardening holds: systemd's own exposure score stays at most 2.0 of 10 ("OK"; the
    // threshold is in tenths). It was 1.4 when the unit was written.
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&file)
        .output()
        .expect("systemd-analyze security runs");
    assert!(
        security.status.success(),
        "the unit's exposure rose above 2.0:\n{}",
        String::from_utf8_lossy(&security.stdout)
    );

    // Courier takes the unit's arguments, and knows every variable of its environment file.
    let exec = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    let args: Vec<&str> = exec.split_whitespace().collect();
    let help = Command::new(args[0])
        .args(&args[1..])
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        help.status.success(),
        "courier refuses the unit's ExecStart: {}",
        String::from_utf8_lossy(&help.stderr)
    );
    let help = String::from_utf8_lossy(&help.stdout);
    let env = support::docs_block("systemd-env");
    for name in env
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, _)| name)
    {
        assert!(
            help.contains(&format!("[env: {name}=")) || help.contains(&format!("[env: {name}]")),
            "courier has no {name} (docs/deploy.md's environment file)"
        );
    }
}

/// The unit is `Type=notify`: the binary must really send `READY=1` (after it listens) and
/// `STOPPING=1` (when SIGTERM arrives) to `NOTIFY_SOCKET`, a path or an abstract `@name`.
#[test]
fn courier_tells_systemd_when_it_is_ready_and_when_it_stops() {
    use std::io::BufRead;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    assert!(
        support::docs_block("systemd").contains("\nType=notify\n"),
        "the documented unit waits for readiness"
    );
    let dir = tempfile::tempdir().unwrap();
    let abstract_name = format!("courier-notify-test-{}", std::process::id());
    let path = dir.path().join("notify.sock");
    for (socket, receiver) in [
        (
            path.display().to_string(),
            UnixDatagram::bind(&path).unwrap(),
        ),
        (
            format!("@{abstract_name}"),
            UnixDatagram::bind_addr(
                &SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap(),
            )
            .unwrap(),
        ),
    ] {
        receiver.set_read_timeout(Some(PROMPT)).unwrap();
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_courier"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--push=false",
                "--data-dir",
            ])
            .arg(data.path())
            .env("NOTIFY_SOCKET", &socket)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("courier listening on"), "{line}");
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).expect("READY=1 within the wait");
        assert_eq!(&buf[..n], b"READY=1", "on {socket}");
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let n = receiver.recv(&mut buf).expect("STOPPING=1 within the wait");
        assert_eq!(&buf[..n], b"STOPPING=1", "on {socket}");
        assert!(child.wait().unwrap().success(), "a clean exit on SIGTERM");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_nginx_config_serves_a_cluster_over_http2_streams_and_fails_over() {
    proxy_in_front_of_a_cluster(Kind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_caddy_config_serves_a_cluster_over_http2_streams_and_fails_over() {
    proxy_in_front_of_a_cluster(Kind::Caddy).await;
}

async fn proxy_in_front_of_a_cluster(kind: Kind) {
    init_logs();
    let program = match kind {
        Kind::Nginx => "nginx",
        Kind::Caddy => "caddy",
    };
    let services = reachable::postgres(&machine_postgres()) && reachable::nats(&machine_nats());
    if !services
        || !reachable::program_installed(program)
        || !reachable::program_installed("openssl")
    {
        return;
    }
    let started = Instant::now();
    let mut d = Deployment::start(kind).await;
    let report = |what: &str| eprintln!("{kind:?}: {what} ({:.1?} in)", started.elapsed());
    report("up");

    the_app_loads_over_http2_and_courier_knows_it_came_over_https(&d).await;
    let latency = an_event_arrives_while_its_stream_stays_open(&d).await;
    report(&format!(
        "an event arrived {latency:.1?} after its send began"
    ));
    the_client_address_is_the_real_client_and_cannot_be_spoofed(&d).await;
    a_body_over_the_limit_gets_courier_s_own_413(&d).await;
    a_quiet_stream_outlives_the_read_timeout_on_heartbeats(&d).await;
    report("a quiet stream outlived the read timeout");
    a_stream_whose_node_falls_silent_is_cut_at_the_read_timeout(&d).await;
    report("a silent upstream was cut at the read timeout");
    let (out, degraded) = readiness_decides_which_nodes_take_traffic(&d).await;
    report(&format!(
        "no-database node out of rotation after {out:.1?}, no-NATS node seen in rotation after {degraded:.1?}"
    ));
    let failed = a_stream_broken_by_a_dead_node_resumes_through_the_proxy(&mut d).await;
    report(&format!(
        "resumed after a node died; failed reconnects: {failed:?}"
    ));
    d.stop().await;
    report("stopped");
}

/// Three nodes on one database; the third reaches PostgreSQL and NATS through relays the
/// test can cut. The proxy fronts all three.
struct Deployment {
    db: Database,
    ports: [u16; 3],
    urls: [(String, String); 3],
    nodes: Vec<Node>,
    pg: Relay,
    nats: Relay,
    proxy: Proxy,
    /// Talks to nodes directly (for setup and for sends that must not go through the proxy).
    direct: reqwest::Client,
    alice: Session,
    bob: Session,
    conversation: String,
}

/// `scheme://user@host:port/rest` → `host:port`.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    rest.rsplit_once('@').map_or(rest, |(_, host)| host)
}

impl Deployment {
    async fn start(kind: Kind) -> Self {
        let db = Database::create(&machine_postgres()).await;
        let nats_url = machine_nats();
        let pg = Relay::start(authority(&db.url)).await;
        let nats = Relay::start(authority(&nats_url)).await;
        let relayed = |url: &str, relay: &Relay| {
            url.replacen(authority(url), &format!("127.0.0.1:{}", relay.port), 1)
        };
        let urls = [
            (db.url.clone(), nats_url.clone()),
            (db.url.clone(), nats_url.clone()),
            (relayed(&db.url, &pg), relayed(&nats_url, &nats)),
        ];
        // Each node binds a port of its own choosing (a port picked here and bound later can
        // be taken in between, by any connection's local end), and the proxy is told it.
        let nodes: Vec<Node> = tokio::task::block_in_place(|| {
            std::thread::scope(|s| {
                let spawned: Vec<_> = (0..3)
                    .map(|i| {
                        let urls = &urls;
                        s.spawn(move || spawn_node(0, &urls[i]))
                    })
                    .collect();
                spawned.into_iter().map(|h| h.join().unwrap()).collect()
            })
        });
        let ports: [u16; 3] = std::array::from_fn(|i| {
            let base = &nodes[i].base;
            let port = base.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
            port.unwrap_or_else(|| panic!("a port in {base}"))
        });
        let proxy = tokio::task::block_in_place(|| Proxy::start(kind, ports, READ_TIMEOUT));
        proxy.wait_until_up().await;
        let direct = http();
        let base = format!("http://127.0.0.1:{}", ports[0]);
        let alice = login(&direct, &base, "alice").await;
        let bob = login(&direct, &base, "bob").await;
        let conversation = harness::open_conversation(&direct, &base, &bob, &alice).await;
        Self {
            db,
            ports,
            urls,
            nodes,
            pg,
            nats,
            proxy,
            direct,
            alice,
            bob,
            conversation,
        }
    }

    fn node(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    /// Bob sends to alice through node `i` directly.
    async fn send_via(&self, i: usize, text: &str) -> i64 {
        harness::send(
            &self.direct,
            &self.node(i),
            &self.bob,
            &self.conversation,
            text,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("send through node {i}: {e:?}"))
    }

    /// Alice's event stream, opened through the proxy; returns once it is registered.
    async fn stream(&self, client: &reqwest::Client, last_event_id: Option<&str>) -> Watch {
        let sse = Sse::open(
            client,
            &self.proxy.url("/api/messages"),
            &self.alice.token,
            last_event_id,
        )
        .await
        .expect("a stream through the proxy");
        let mut watch = Watch {
            sse,
            last: last_event_id.map(str::to_owned),
        };
        // The first frame (`: connected`, `id: <cursor>`) is written once the stream is
        // subscribed, so a send after this reaches it.
        match tokio::time::timeout(PROMPT, watch.sse.next()).await {
            Ok(Some(Frame::Event { id, .. })) => watch.last = id.or(watch.last),
            other => panic!("no opening frame through the proxy: {other:?}"),
        }
        watch
    }

    fn restart(&mut self, i: usize) {
        self.nodes[i].kill();
        self.nodes[i] = tokio::task::block_in_place(|| spawn_node(self.ports[i], &self.urls[i]));
    }

    fn signal(&self, i: usize, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.nodes[i].pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal}");
    }

    async fn stop(self) {
        drop(self.proxy);
        drop(self.nodes);
        self.db.drop_database().await;
    }
}

fn spawn_node(port: u16, (database_url, nats_url): &(String, String)) -> Node {
    Node::spawn_on(
        port,
        database_url,
        nats_url,
        HEARTBEAT,
        &[("COURIER_LOGIN_ATTEMPTS_PER_IP", ATTEMPTS_PER_ADDRESS)],
    )
}

/// An open stream and the last event id it has seen.
struct Watch {
    sse: Sse,
    last: Option<String>,
}

#[derive(Debug, PartialEq)]
enum Next {
    Message(i64),
    Ended,
    Silent,
}

impl Watch {
    /// The next message event within `limit`, skipping heartbeats and other events.
    async fn message(&mut self, limit: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.sse.next()).await {
                Err(_) => return Next::Silent,
                Ok(None) => return Next::Ended,
                Ok(Some(Frame::Comment(_))) => {}
                Ok(Some(Frame::Event { id, event, data })) => {
                    self.last = id.or(self.last.take());
                    if let (None, Some(data)) = (event, data) {
                        let json: serde_json::Value = serde_json::from_str(&data).unwrap();
                        return Next::Message(json["id"].as_str().unwrap().parse().unwrap());
                    }
                }
            }
        }
    }
}

async fn the_app_loads_over_http2_and_courier_knows_it_came_over_https(d: &Deployment) {
    let client = d.proxy.client(None);
    let page = client.get(d.proxy.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.version(),
        reqwest::Version::HTTP_2,
        "{:?} speaks HTTP/2 to browsers",
        d.proxy.kind
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("<html"), "the web app: {html:.200}");

    // TLS ends at the proxy; X-Forwarded-Proto tells Courier, which then marks its cookies.
    let signed_in = client
        .post(d.proxy.url("/api/login"))
        .json(&serde_json::json!({ "username": "carol" }))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    let cookies: Vec<String> = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Host-courier_session=") && c.contains("; Secure")),
        "a Secure session cookie behind the HTTPS proxy: {cookies:?}"
    );
}

/// Returns the time from starting the send to the event arriving through the proxy.
async fn an_event_arrives_while_its_stream_stays_open(d: &Deployment) -> Duration {
    let client = d.proxy.client(None);
    let mut watch = d.stream(&client, None).await;
    assert_eq!(watch.sse.version, reqwest::Version::HTTP_2);
    let started = Instant::now();
    let id = d.send_via(1, "unbuffered").await;
    // A buffering proxy would hold this event (a few hundred bytes) until kilobytes of
    // heartbeats had piled up behind it, or until the stream ended.
    assert_eq!(watch.message(PROMPT).await, Next::Message(id));
    let latency = started.elapsed();
    // And the stream is still open: the next heartbeat comes through it.
    match tokio::time::timeout(PROMPT, watch.sse.next()).await {
        Ok(Some(Frame::Comment(comment))) => assert_eq!(comment, "heartbeat"),
        other => panic!("the stream should stay open after an event: {other:?}"),
    }
    latency
}

/// Password sign-ins from one client, each with a different invented `X-Forwarded-For`,
/// run into that client's per-address limit; another client behind the same proxy keeps its
/// own allowance. (Courier counts per node: three nodes allow 3 each.)
async fn the_client_address_is_the_real_client_and_cannot_be_spoofed(d: &Deployment) {
    let sign_in = async |client: &reqwest::Client, n: usize, forwarded_for: Option<String>| {
        let mut request = client
            .post(d.proxy.url("/api/signin"))
            .json(&serde_json::json!({ "username": format!("nobody{n}"), "password": "wrong-password-0" }));
        if let Some(forwarded_for) = forwarded_for {
            request = request.header("x-forwarded-for", forwarded_for);
        }
        request.send().await.unwrap().status().as_u16()
    };
    // Other loopback addresses stand for other machines; the proxy itself is 127.0.0.1.
    let spoofer = d
        .proxy
        .client(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
    let mut statuses = Vec::new();
    for n in 0..10 {
        statuses.push(sign_in(&spoofer, n, Some(format!("198.51.100.{n}"))).await);
    }
    assert_eq!(
        statuses[..3],
        [422; 3],
        "wrong passwords first: {statuses:?}"
    );
    assert!(
        statuses.contains(&429),
        "10 attempts over 3 nodes that allow 3 each must be limited, whatever X-Forwarded-For says: {statuses:?}"
    );
    let neighbour = d
        .proxy
        .client(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))));
    for n in 10..13 {
        assert_eq!(
            sign_in(&neighbour, n, None).await,
            422,
            "another client behind the same proxy is not limited by the first"
        );
    }
}

async fn a_body_over_the_limit_gets_courier_s_own_413(d: &Deployment) {
    let client = d.proxy.client(None);
    let response = client
        .post(
            d.proxy
                .url(&format!("/api/conversations/{}/messages", d.conversation)),
        )
        .bearer_auth(&d.bob.token)
        .json(&serde_json::json!({ "content": "x".repeat(20_000) }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        kind.as_deref()
            .is_some_and(|k| k.starts_with("application/json")),
        "Courier's JSON error, not the proxy's page: {kind:?}"
    );
}

async fn a_quiet_stream_outlives_the_read_timeout_on_heartbeats(d: &Deployment) {
    let client = d.proxy.client(None);
    let mut watch = d.stream(&client, None).await;
    let opened = Instant::now();
    let mut heartbeats = 0;
    while opened.elapsed() < READ_TIMEOUT * 3 {
        match tokio::time::timeout(READ_TIMEOUT, watch.sse.next()).await {
            Ok(Some(Frame::Comment(comment))) if comment == "heartbeat" => heartbeats += 1,
            Ok(Some(_)) => {}
            Ok(None) => panic!(
                "the proxy ended a quiet stream after {:.1?} (read timeout {READ_TIMEOUT:?})",
                opened.elapsed()
            ),
            Err(_) => panic!("no heartbeat through the proxy for a whole read timeout"),
        }
    }
    assert!(heartbeats >= 4, "heartbeats came through: {heartbeats}");
    let id = d.send_via(0, "still there").await;
    assert_eq!(watch.message(PROMPT).await, Next::Message(id));
}

/// The control for the check above: with its node frozen (SIGSTOP, so no heartbeats), a
/// stream is cut by the proxy once the read timeout passes. Freezes each node in turn until
/// the one under the stream is found; a stream elsewhere gets the probe sent meanwhile.
async fn a_stream_whose_node_falls_silent_is_cut_at_the_read_timeout(d: &Deployment) {
    let client = d.proxy.client(None);
    let mut watch = d.stream(&client, None).await;
    for victim in 0..3 {
        d.signal(victim, "STOP");
        let frozen = Instant::now();
        let probe = d.send_via((victim + 1) % 3, "probe").await;
        let next = watch.message(READ_TIMEOUT * 2 + PROMPT).await;
        let after = frozen.elapsed();
        d.signal(victim, "CONT");
        match next {
            Next::Message(id) => assert_eq!(id, probe, "the stream lives on another node"),
            Next::Ended => {
                // The timeout runs from the last heartbeat read, up to one interval earlier.
                assert!(
                    after >= READ_TIMEOUT - HEARTBEAT_EVERY - Duration::from_millis(100),
                    "cut after {after:?}, before the read timeout"
                );
                return;
            }
            Next::Silent => panic!(
                "a silent upstream outlived the read timeout by far: is the substituted timeout in force?"
            ),
        }
    }
    panic!("no node was under the stream");
}

/// GET `/readyz` through the proxy: its `status` field, or the HTTP status if not JSON.
async fn readiness(client: &reqwest::Client, url: &str) -> String {
    let Ok(response) = client
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
    else {
        return "unreachable".into();
    };
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    body["status"]
        .as_str()
        .map_or_else(|| status.to_string(), str::to_owned)
}

async fn eventually(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// A node whose database is unreachable answers 503 on `/readyz` and is taken out of
/// rotation (Caddy's active `health_uri`; nginx retries the 503 on the next node); a node
/// whose NATS is down answers 200 "degraded" and keeps its share of requests. Returns how long
/// each took to show through the proxy.
async fn readiness_decides_which_nodes_take_traffic(d: &Deployment) -> (Duration, Duration) {
    let client = d.proxy.client(None);
    let through_proxy = d.proxy.url("/readyz");
    let node_c = format!("{}/readyz", d.node(2));
    let rotation = Duration::from_secs(20);

    let cut = Instant::now();
    d.nats.cut().await;
    eventually("node C finds NATS gone", PROMPT, async || {
        readiness(&d.direct, &node_c).await == "degraded"
    })
    .await;
    eventually(
        "the node without NATS answers through the proxy",
        rotation,
        async || readiness(&client, &through_proxy).await == "degraded",
    )
    .await;
    let degraded = cut.elapsed();
    d.nats.restore().await;
    eventually("node C has NATS back", PROMPT, async || {
        readiness(&d.direct, &node_c).await == "ready"
    })
    .await;
    let cut = Instant::now();
    d.pg.cut().await;
    eventually("node C finds its database gone", PROMPT, async || {
        readiness(&d.direct, &node_c).await == "unavailable"
    })
    .await;
    eventually(
        "six answers in a row through the proxy from ready nodes",
        rotation,
        async || {
            for _ in 0..6 {
                if readiness(&client, &through_proxy).await != "ready" {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let out = cut.elapsed();
    d.pg.restore().await;
    eventually("node C has its database back", PROMPT, async || {
        readiness(&d.direct, &node_c).await == "ready"
    })
    .await;

    (out, degraded)
}

/// Kills nodes in turn until the one under the stream is found (a stream elsewhere gets the
/// probe, and the killed node is restarted), then reconnects through the proxy the way the
/// browser does: same URL, `Last-Event-ID`, a new attempt after each failure. Everything sent
/// meanwhile arrives once, in order, then live events. Returns the failed reconnect attempts.
async fn a_stream_broken_by_a_dead_node_resumes_through_the_proxy(
    d: &mut Deployment,
) -> Vec<String> {
    let client = d.proxy.client(None);
    let mut watch = d.stream(&client, None).await;
    let mut missed = Vec::new();
    let mut victim = None;
    for candidate in 0..3 {
        d.nodes[candidate].kill();
        let probe = d.send_via((candidate + 1) % 3, "probe").await;
        match watch.message(PROMPT).await {
            Next::Message(id) => {
                assert_eq!(id, probe);
                d.restart(candidate);
            }
            Next::Ended => {
                missed.push(probe);
                victim = Some(candidate);
                break;
            }
            Next::Silent => panic!("a stream on a killed node neither ended nor delivered"),
        }
    }
    let victim = victim.expect("no node was under the stream");
    let alive = (victim + 1) % 3;
    // The proxy routes around the dead node: requests right after its death all succeed.
    for _ in 0..6 {
        let me = client
            .get(d.proxy.url("/api/auth_user"))
            .bearer_auth(&d.alice.token)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200, "a request right after a node died");
    }
    for i in 0..3 {
        missed.push(d.send_via(alive, &format!("away {i}")).await);
    }

    let mut failures = Vec::new();
    let mut resumed = loop {
        match Sse::open(
            &client,
            &d.proxy.url("/api/messages"),
            &d.alice.token,
            watch.last.as_deref(),
        )
        .await
        {
            Ok(sse) => break Watch { sse, last: None },
            Err(e) => {
                failures.push(e);
                assert!(
                    failures.len() < 50,
                    "no reconnect went through: {failures:?}"
                );
                // The stream's `retry:` (100 ms on these nodes), as EventSource would wait.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let mut got = Vec::new();
    while got.len() < missed.len() {
        match resumed.message(PROMPT).await {
            Next::Message(id) => got.push(id),
            other => panic!("resuming: {other:?} after {got:?}"),
        }
    }
    assert_eq!(got, missed, "what was missed, once each, in order");
    let live = d.send_via(alive, "live again").await;
    assert_eq!(resumed.message(PROMPT).await, Next::Message(live));
    d.restart(victim);
    assert!(
        failures.is_empty(),
        "the first reconnect went through: {failures:?}"
    );
    failures
}
