//! `--metrics-listen`: Prometheus metrics on a listener of their own, labelled by route
//! template, and valid by Prometheus's own checker (`promtool check metrics`).

use crate::helpers::{PATIENCE, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};

async fn scrape(app: &crate::helpers::TestApp) -> String {
    let addr = app.metrics_addr.expect("metrics listener");
    let response = app
        .client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_are_off_by_default_and_not_on_the_public_listener() {
    let app = spawn_app().await;
    assert!(app.metrics_addr.is_none());
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(
        !response
            .text()
            .await
            .unwrap()
            .contains("courier_http_requests_total"),
        "the public listener must not serve metrics"
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_streams_and_sign_in_failures() {
    let app = spawn_app_with(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let conversation = app.conversation_between(&alice, &bob).await;
    let mut stream = app.stream(&bob, None).await;
    app.send_message(&alice, &conversation, "hello").await;
    stream.next_message().await;
    let response = app.messages(&alice, &conversation, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let refused = app
        .client
        .post(app.url("/api/signin"))
        .json(&json!({"username": "alice", "password": "not her password"}))
        .send()
        .await
        .unwrap();
    assert!(refused.status().is_client_error());

    let text = scrape(&app).await;
    for expected in [
        r#"route="/api/conversations/{id}/messages""#,
        "courier_http_request_duration_seconds_bucket",
        "courier_streams_open",
        "courier_stream_events_delivered_total",
        "courier_store_commit_duration_seconds_bucket",
        "courier_store_commit_group_size_bucket",
        "courier_bus_publish_duration_seconds_bucket",
        r#"courier_sign_in_failures_total{reason="credentials"}"#,
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert!(
        !text.contains(&format!("/api/conversations/{conversation}")),
        "paths with ids must never become labels:\n{text}"
    );
    for route in text.split("route=\"").skip(1) {
        let route = route.split('"').next().unwrap();
        assert!(
            route == "fallback" || route.starts_with('/') && !route.contains(char::is_numeric),
            "a route label is a template: {route}"
        );
    }
    drop(stream);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !scrape(&app)
        .await
        .contains(r#"courier_streams_closed_total{reason="client_gone"}"#)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "closed stream not counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let text = scrape(&app).await;
    // Every metric the documented Grafana dashboard charts exists.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/grafana-dashboard.json"
    ))
    .unwrap();
    for name in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if name.starts_with("courier_") {
            assert!(
                text.contains(&format!(
                    "# TYPE {}",
                    name.trim_end_matches("_bucket")
                        .trim_end_matches("_sum")
                        .trim_end_matches("_count")
                )),
                "the dashboard charts {name}, which /metrics does not have"
            );
        }
    }
}

#[tokio::test]
async fn promtool_accepts_the_metrics_output() {
    let Some(promtool) = promtool() else { return };
    let app = spawn_app_with(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let conversation = app.conversation_between(&alice, &bob).await;
    app.send_message(&alice, &conversation, "hello").await;
    let text = scrape(&app).await;

    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- output checked:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Debian's `prometheus` package provides it; CI (`COURIER_TEST_REQUIRE_SERVICES=1`) must
/// have it, elsewhere the test is skipped with a note.
fn promtool() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var_os("COURIER_TEST_REQUIRE_SERVICES").is_some() {
            panic!(
                "promtool is not installed (apt-get install prometheus), and COURIER_TEST_REQUIRE_SERVICES is set"
            );
        }
        eprintln!("SKIPPED: promtool is not installed (apt-get install prometheus)");
    }
    found
}

/// The value of one sample line (`name{labels} value`), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn streams_closed_by_signing_out_and_by_shutdown_are_counted_by_reason() {
    let mut app = spawn_app_with(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let (signed_out, shutdown) = (
        r#"courier_streams_closed_total{reason="signed_out"}"#,
        r#"courier_streams_closed_total{reason="shutdown"}"#,
    );
    let before = scrape(&app).await;
    let alice = app.login("alice").await;
    let mut stream = app.stream(&alice, None).await;
    let out = app.post("/api/logout", &alice).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let event = stream.next_named("signed-out").await;
    assert_eq!(event.event.as_deref(), Some("signed-out"));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while sample(&scrape(&app).await, signed_out) <= sample(&before, signed_out) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "signed_out not counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let bob = app.login("bob").await;
    let _open = app.stream(&bob, None).await;
    let before = scrape(&app).await;
    app.stop().await;
    // The metrics listener stops with its server; the recorder is the process's: read it
    // through another server.
    let other = spawn_app_with(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let after = scrape(&other).await;
    assert!(
        sample(&after, shutdown) > sample(&before, shutdown),
        "shutdown not counted:\n{after}"
    );
}

/// With NATS as the bus, `/metrics` carries what the node exchanged over it: the figures
/// targeted fan-out is judged by (see bus::nats). The recorder is the process's, so other
/// servers in this test binary may write these series too; every NATS node has sent and
/// received something (its start-up round trip), whichever wrote last.
#[tokio::test]
async fn nats_traffic_is_counted_when_the_bus_is_nats() {
    let nats =
        std::env::var("COURIER_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    if !crate::reachable::nats(&nats) {
        return;
    }
    let app = spawn_app_with(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.nats_url = Some(nats.clone());
    })
    .await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let conversation = app.conversation_between(&alice, &bob).await;
    let mut stream = app.stream(&bob, None).await;
    app.send_message(&alice, &conversation, "hello").await;
    stream.next_message().await;
    let text = scrape(&app).await;
    for series in [
        "courier_nats_received_bytes_total",
        "courier_nats_received_messages_total",
        "courier_nats_sent_bytes_total",
        "courier_nats_sent_messages_total",
    ] {
        assert!(sample(&text, series) >= 1.0, "{series} in:\n{text}");
    }
    assert!(
        text.contains("# TYPE courier_nats_users_listened gauge"),
        "{text}"
    );
}
