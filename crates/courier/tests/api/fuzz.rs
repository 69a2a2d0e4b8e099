//! A bounded random walk over the request surface against the real server: random methods,
//! paths and ids, query strings, headers and JSON bodies. Every answer must be below 500,
//! every 4xx must carry a JSON error body, and a refused request must leave everything stored
//! exactly as it was.
//!
//! Bounded by time (`COURIER_FUZZ_SECS`, default 6) so it runs in every CI run; the seed is
//! printed, and `COURIER_FUZZ_SEED=<seed>` replays a run.

use crate::helpers::*;
use courier::config::SignupMode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const KEYS: &[&str] = &[
    "content",
    "username",
    "usernames",
    "title",
    "history",
    "role",
    "password",
    "invite",
    "search",
    "id",
    "",
    "__proto__",
];

fn pick<'a, T: ?Sized>(rng: &mut StdRng, items: &'a [&'a T]) -> &'a T {
    items[rng.random_range(0..items.len())]
}

/// Text that goes wrong in interesting ways: controls, invisible and direction characters,
/// lookalikes, long runs, non-BMP characters.
fn text(rng: &mut StdRng) -> String {
    const PIECES: &[&str] = &[
        "a",
        "alice",
        "bob",
        "aIice",
        " ",
        "\n",
        "\t",
        "\0",
        "\u{1b}",
        "\u{7f}",
        "\u{85}",
        "\u{200B}",
        "\u{200D}",
        "\u{FEFF}",
        "\u{202E}",
        "\u{2066}",
        "é",
        "日本",
        "👩\u{200D}👧",
        "%",
        "_",
        "\\",
        "\"",
        "'",
        "<script>",
        "../",
        "%00",
        "\u{FFFD}",
        "\u{10FFFF}",
    ];
    let n = rng.random_range(0..8);
    let mut s: String = (0..n).map(|_| pick(rng, PIECES)).collect();
    if rng.random_bool(0.05) {
        s.push_str(&"x".repeat(rng.random_range(400..3000)));
    }
    s
}

fn value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 2 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<f64>() * 1e300),
        4 => json!(text(rng)),
        5 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| value(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..5))
                .map(|_| (pick(rng, KEYS).to_owned(), value(rng, depth + 1)))
                .collect(),
        ),
    }
}

fn id(rng: &mut StdRng, real: &[String]) -> String {
    const ODD: &[&str] = &[
        "0",
        "-1",
        "abc",
        "%FF",
        "%C3%28",
        "%00",
        "99999999999999999999999",
        "1e3",
        "%2e%2e",
        ".",
        "1.5",
        " 1",
        "%20",
        "0x10",
    ];
    match rng.random_range(0..4) {
        0 => real[rng.random_range(0..real.len())].clone(),
        1 => rng.random::<u32>().to_string(),
        _ => pick(rng, ODD).to_owned(),
    }
}

fn query(rng: &mut StdRng) -> String {
    const NAMES: &[&str] = &[
        "before",
        "after",
        "limit",
        "search",
        "token",
        "lastEventId",
        "next",
    ];
    let parts: Vec<String> = (0..rng.random_range(0..4))
        .map(|_| {
            let name = pick(rng, NAMES);
            let value = match rng.random_range(0..3) {
                0 => urlencoding::encode(&text(rng)).into_owned(),
                1 => "%ZZ%FF%00".to_owned(),
                _ => rng.random::<i64>().to_string(),
            };
            format!("{name}={value}")
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Everything a refused request could have changed, as alice and bob see it.
async fn snapshot(
    app: &TestApp,
    alice: &TestUser,
    bob: &TestUser,
    conv: &str,
    group: &str,
) -> Value {
    let mut sessions: Value = app.get_json("/api/sessions", alice).await;
    for s in sessions.as_array_mut().into_iter().flatten() {
        s.as_object_mut().unwrap().remove("lastSeenAt");
    }
    json!({
        "messages": app.get_json::<Value>(&format!("/api/conversations/{conv}/messages"), alice).await,
        "groupMessages": app.get_json::<Value>(&format!("/api/conversations/{group}/messages"), alice).await,
        "alice": app.get_json::<Value>("/api/conversations", alice).await,
        "bob": app.get_json::<Value>("/api/conversations", bob).await,
        "members": app.get_json::<Value>(&format!("/api/conversations/{group}/members"), alice).await,
        "names": app.get_json::<Value>("/api/usernames?search=a", bob).await,
        "sessions": sessions,
    })
}

#[tokio::test]
async fn random_requests_never_500_always_answer_json_errors_and_refusals_change_nothing() {
    let seed: u64 = std::env::var("COURIER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let budget = Duration::from_secs(
        std::env::var("COURIER_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(6),
    );
    eprintln!("fuzz seed {seed} (COURIER_FUZZ_SEED={seed} replays it), budget {budget:?}");
    let mut rng = StdRng::seed_from_u64(seed);

    let app = spawn_app_with(|c| c.signup = SignupMode::Open).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    app.login("carol").await;
    let conv = app.conversation_between(&alice, &bob).await;
    let first = app.send_message(&alice, &conv, "hello").await;
    let group: Value = app
        .post("/api/conversations", &alice)
        .json(&json!({ "usernames": ["bob"], "title": "Club" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let group = group["id"].as_str().unwrap().to_owned();
    let ids = vec![
        conv.clone(),
        group.clone(),
        first["id"].as_str().unwrap().to_owned(),
        alice.id.clone(),
        bob.id.clone(),
    ];
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let started = Instant::now();
    let mut requests = 0;
    let mut before = snapshot(&app, &alice, &bob, &conv, &group).await;
    while started.elapsed() < budget {
        let a = id(&mut rng, &ids);
        let b = id(&mut rng, &ids);
        let path = match rng.random_range(0..14) {
            0 => "/api/conversations".to_owned(),
            1 => format!("/api/conversations/{a}"),
            2 => format!("/api/conversations/{a}/messages"),
            3 => format!("/api/conversations/{a}/members"),
            4 => format!("/api/conversations/{a}/members/{b}"),
            5 => format!("/api/conversations/{a}/leave"),
            6 => format!("/api/conversations/{a}/read_messages"),
            7 => format!("/api/conversations/{a}/other_participant"),
            8 => "/api/usernames".to_owned(),
            9 => format!("/api/sessions/{a}"),
            10 => pick(&mut rng, &["/api/login", "/api/signup", "/api/signin"]).to_owned(),
            11 => "/api/refresh_token".to_owned(),
            12 => format!("/api/oauth/{a}"),
            _ => "/api/auth_user".to_owned(),
        };
        let method = pick(
            &mut rng,
            &[
                &Method::GET,
                &Method::POST,
                &Method::PATCH,
                &Method::DELETE,
                &Method::PUT,
            ],
        )
        .clone();
        let url = format!("{}{}", app.url(&path), query(&mut rng));
        let mut request = client.request(method.clone(), &url);
        match rng.random_range(0..5) {
            0 => {}
            1 => request = request.bearer_auth("not-a-token"),
            2 => {
                let garbage: String = text(&mut rng)
                    .chars()
                    .filter(|c| c.is_ascii_graphic() || *c == ' ')
                    .collect();
                request = request.header("authorization", format!("Bearer {garbage}"))
            }
            _ => request = request.bearer_auth(&alice.token),
        }
        if rng.random_bool(0.3) {
            request = request.header("idempotency-key", rng.random::<u64>().to_string());
        }
        if rng.random_bool(0.2) {
            request = request.header("last-event-id", format!("x-{}", rng.random::<i64>()));
        }
        if rng.random_bool(0.3) {
            request = request.header(
                "accept",
                pick(&mut rng, &["text/event-stream", "text/html", "*/*"]),
            );
        }
        let body = value(&mut rng, 0);
        request = match rng.random_range(0..4) {
            0 => request,
            1 => request
                .header("content-type", "text/plain")
                .body(body.to_string()),
            2 => request
                .header("content-type", "application/json")
                .body(body.to_string().replacen('}', "", 1)),
            _ => request.json(&body),
        };
        let what = format!("{method} {url} {body}");
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        requests += 1;
        let status = response.status();
        assert!(status.as_u16() < 500, "{what} answered {status}");
        if status.is_success() || status.is_redirection() {
            // Accepted (or a live stream, left unread): what is stored may have changed.
            drop(response);
            before = snapshot(&app, &alice, &bob, &conv, &group).await;
            continue;
        }
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.unwrap();
        assert!(
            content_type.starts_with("application/json"),
            "{what} answered {status} {content_type}: {text}"
        );
        let error: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
        assert!(
            error["error"].is_string() || error["errors"].is_object(),
            "{what}: {error}"
        );
        if status == StatusCode::UNAUTHORIZED && app.auth_status(&alice).await != StatusCode::OK {
            panic!("{what} signed alice out while answering {status}");
        }
        let after = snapshot(&app, &alice, &bob, &conv, &group).await;
        assert_eq!(
            after, before,
            "{what} was refused with {status} yet changed what is stored"
        );
    }
    eprintln!("fuzz: {requests} requests in {:?}", started.elapsed());
    assert!(
        requests > 20,
        "the walk made too few requests to mean anything"
    );
}
