//! Slow and abusive connections, over real sockets: half-sent requests are capped per address
//! and timed out while other clients keep working; a trickled body is answered 408 and its
//! connection closed; past the global cap new connections are closed unread until one ends;
//! idle keep-alive connections close, idle streams do not; a stream whose client stopped
//! reading is closed after the write timeout.
//!
//! Loopback has many addresses: the attacker connects from 127.0.0.2, honest clients from
//! 127.0.0.3, and nobody is a trusted proxy.

use crate::helpers::*;
use courier::config::MaxConnections;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ATTACKER: &str = "127.0.0.2";
const HONEST: &str = "127.0.0.3";

async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// A request that never finishes its headers.
async fn half_sent(to: SocketAddr) -> TcpStream {
    let mut tcp = connect_from(ATTACKER, to).await;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: courier\r\nX-Slow: ")
        .await
        .unwrap();
    tcp
}

/// Whether the server has closed `tcp` (EOF or reset) within `wait`; reads and drops any bytes.
async fn closed_within(tcp: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

fn honest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(HONEST.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn half_sent_requests_are_capped_per_address_and_timed_out_while_others_keep_working() {
    let app = spawn_app_with(|c| {
        c.trusted_proxies = Vec::new();
        c.max_connections_per_address = 40;
        c.header_read_timeout = Duration::from_secs(5);
    })
    .await;
    let honest = honest_client();

    // The attacker fills its allowance with half-sent requests; they stay open for now.
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(half_sent(app.addr).await);
    }
    assert!(
        !closed_within(&mut held[0], Duration::from_millis(200)).await,
        "within its allowance and its header time, a connection stays open"
    );
    // Everything past the cap is closed at once (well before the header timeout), and costs
    // the server nothing.
    for _ in 0..300 {
        let mut extra = half_sent(app.addr).await;
        assert!(
            closed_within(&mut extra, Duration::from_secs(2)).await,
            "a connection past the per-address cap is closed"
        );
    }
    // Meanwhile an honest client is served.
    for _ in 0..5 {
        let response = honest.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    // The held requests never finish their headers: each is closed after the header timeout.
    for tcp in &mut held {
        assert!(
            closed_within(tcp, PATIENCE).await,
            "a half-sent request is closed"
        );
    }
    // Their slots are free again: the same address is served once it behaves.
    let mut tcp = connect_from(ATTACKER, app.addr).await;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: courier\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

/// Everything the server sends on `tcp` until it closes it (a reset ends it too).
async fn read_until_closed(tcp: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open; it sent {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&received).into_owned(),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends a keep-alive `GET /healthz` on `tcp` and reads its whole answer.
async fn healthz_on(tcp: &mut TcpStream) -> String {
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: courier\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(PATIENCE, tcp.read(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_body_trickled_past_the_body_timeout_gets_a_json_408_and_its_connection_is_closed() {
    let app = spawn_app_with(|c| {
        c.trusted_proxies = Vec::new();
        c.request_body_timeout = Duration::from_secs(1);
    })
    .await;
    let mut tcp = connect_from(ATTACKER, app.addr).await;
    tcp.write_all(
        b"POST /api/login HTTP/1.1\r\nHost: courier\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{\"username\": \"",
    )
    .await
    .unwrap();
    let (mut reader, mut writer) = tcp.into_split();
    // One byte every 50 ms: never idle long enough for any per-read timeout, never done.
    let trickle = tokio::spawn(async move {
        let mut sent = 0;
        let mut every = tokio::time::interval(Duration::from_millis(50));
        loop {
            every.tick().await;
            if writer.write_all(b"a").await.is_err() {
                return sent;
            }
            sent += 1;
        }
    });
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, reader.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the trickling connection was never closed");
    let response = String::from_utf8_lossy(&received);
    let (head, body) = response.split_once("\r\n\r\n").expect("a whole response");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 408"), "{response}");
    assert!(
        head.contains("content-type: application/json"),
        "{response}"
    );
    assert!(head.contains("connection: close"), "{response}");
    let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert!(body["error"].is_string(), "{body}");
    // The client went on trickling until the server closed the connection under it.
    let sent = tokio::time::timeout(PATIENCE, trickle)
        .await
        .unwrap()
        .unwrap();
    assert!(sent > 5, "only {sent} bytes were trickled");
}

#[tokio::test]
async fn past_the_global_cap_new_connections_are_closed_unread_until_one_ends() {
    let app = spawn_app_with(|c| {
        c.trusted_proxies = Vec::new();
        c.max_connections = MaxConnections::Limit(8);
        c.max_connections_per_address = 0;
        c.keep_alive_timeout = Duration::from_secs(600);
    })
    .await;
    // Eight keep-alive connections, each served once (so each surely holds its place).
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut tcp = connect_from(ATTACKER, app.addr).await;
        assert!(healthz_on(&mut tcp).await.starts_with("HTTP/1.1 200"));
        held.push(tcp);
    }
    // A ninth, from anywhere, is closed without an answer.
    for _ in 0..20 {
        let mut tcp = connect_from(HONEST, app.addr).await;
        let _ = tcp
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: courier\r\n\r\n")
            .await;
        assert_eq!(
            read_until_closed(&mut tcp).await,
            "",
            "no answer past the cap"
        );
    }
    // The held ones are still served.
    assert!(healthz_on(&mut held[0]).await.starts_with("HTTP/1.1 200"));
    // One ends; its place goes to the next connection.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut tcp = connect_from(HONEST, app.addr).await;
        let _ = tcp
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: courier\r\nConnection: close\r\n\r\n")
            .await;
        if read_until_closed(&mut tcp)
            .await
            .starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a freed place was never given out again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn idle_and_silent_connections_are_closed_but_a_quiet_stream_is_not() {
    let app = spawn_app_with(|c| {
        c.trusted_proxies = Vec::new();
        c.header_read_timeout = Duration::from_secs(1);
        c.keep_alive_timeout = Duration::from_secs(2);
        c.heartbeat = Duration::from_secs(3600);
    })
    .await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;
    let mut stream = app.stream(&bob, None).await;

    // A connection that never says anything.
    let mut silent = connect_from(HONEST, app.addr).await;
    // A keep-alive connection after one request.
    let mut idle = connect_from(HONEST, app.addr).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: courier\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    assert!(
        closed_within(&mut silent, PATIENCE).await,
        "silent connection closed"
    );
    assert!(
        closed_within(&mut idle, PATIENCE).await,
        "idle keep-alive connection closed"
    );
    // The stream, open all along and writing nothing, still delivers.
    let sent = app.send_message(&alice, &id, "still here").await;
    assert_eq!(stream.next_message().await["id"], sent["id"]);
}

#[tokio::test]
async fn a_stream_whose_client_stopped_reading_is_closed_after_the_write_timeout() {
    use hyper_util::rt::TokioIo;

    // A buffer too large to overflow here: only the write timeout can end the stuck stream.
    let app = spawn_app_with(|c| {
        c.stream_buffer = 100_000;
        c.socket_send_buffer = 4096;
        c.write_timeout = Duration::from_secs(1);
        c.max_streams_per_user = 1;
    })
    .await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;

    // Bob's device stops reading at the TCP level: a tiny receive window, a body nobody reads.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(app.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get("/api/messages")
        .header("host", app.addr.to_string())
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {}", bob.token))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let stuck = sender.send_request(request).await.unwrap();
    assert_eq!(stuck.status(), 200);
    // His one stream is taken.
    let second = app
        .get("/api/messages", &bob)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 429);
    drop(second);

    let content = "x".repeat(400);
    for _ in 0..300 {
        app.send_message(&alice, &id, &content).await;
    }
    // The server's writes stall, time out, and the stream and its socket are let go, which
    // frees Bob's stream slot.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let response = app
            .get("/api/messages", &bob)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            break;
        }
        assert_eq!(response.status(), 429);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stuck stream was never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stuck);
}

/// Reads from `tcp` until `done` holds for everything received so far.
async fn read_until(tcp: &mut TcpStream, done: impl Fn(&str) -> bool) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if done(&text) {
            return text;
        }
        match tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => received.extend_from_slice(&buf[..n]),
            _ => panic!("the server stopped before it sent what was expected: {text:?}"),
        }
    }
}

/// A stream that opens its connection skips hyper (`app/serve/lean.rs`): it is chunked, says
/// it will close the connection (hyper would keep it alive), and delivers live; a refused one
/// gets its JSON error with a length, and the connection closes.
#[tokio::test]
async fn a_stream_that_opens_its_connection_is_served_lean_chunked_and_live() {
    let app = spawn_app().await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = app.conversation_between(&alice, &bob).await;

    let mut tcp = connect_from(HONEST, app.addr).await;
    let request = format!(
        "GET /api/messages HTTP/1.1\r\nHost: courier\r\nAccept: text/event-stream\r\n\
         Authorization: Bearer {}\r\n\r\n",
        bob.token
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let head = read_until(&mut tcp, |t| t.contains("\r\n\r\n")).await;
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    for expected in [
        "content-type: text/event-stream",
        "transfer-encoding: chunked",
        "connection: close",
        "date: ",
    ] {
        assert!(lower.contains(expected), "{expected} in {head}");
    }
    assert!(!lower.contains("content-length"), "{head}");

    let sent = app.send_message(&alice, &id, "over the lean path").await;
    // What follows the head (read above) is the chunked body.
    let body = read_until(&mut tcp, |t| t.contains("over the lean path")).await;
    // Every chunk is `<hex length>\r\n<that many bytes>\r\n`.
    let mut rest = body.as_bytes();
    let mut events = String::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let length = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16)
            .expect("a hex chunk length");
        let data = &rest[eol + 2..];
        if data.len() < length + 2 {
            break;
        }
        assert_eq!(&data[length..length + 2], b"\r\n", "chunk framing");
        events.push_str(std::str::from_utf8(&data[..length]).unwrap());
        rest = &data[length + 2..];
    }
    assert!(
        events.contains(&format!("data: {{\"id\":{}", sent["id"])),
        "{events}"
    );

    // Refused (no credentials): the JSON error, with a length, then the connection closes.
    let mut refused = connect_from(HONEST, app.addr).await;
    refused
        .write_all(b"GET /api/messages HTTP/1.1\r\nHost: courier\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut refused).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("content-length: "), "{answer}");
    assert!(lower.contains("connection: close"), "{answer}");
    let json = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let json: serde_json::Value = serde_json::from_str(json).unwrap();
    assert!(json["error"].is_string(), "{json}");
}
