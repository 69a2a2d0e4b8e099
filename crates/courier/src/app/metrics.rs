//! Prometheus metrics: the recorder, the per-request layer and the `/metrics` listener.
//!
//! The rooms record through the `metrics` facade (`metrics::counter!` and friends), which costs
//! nothing until a recorder is installed; only `--metrics-listen` installs one. The listener is
//! separate from the public one so that a reverse proxy never exposes it by accident.
//!
//! Labels stay bounded: a request is labelled by its route *template* (axum's `MatchedPath`,
//! `/api/conversations/{id}/messages`), never by its path, and by a method from a fixed list.
//! Nothing is labelled by id or user.

use crate::bus::Bus;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Latency buckets, in seconds: from a cached read to a slow fsync under load.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Messages per group commit (the writers take at most a few hundred at once).
const GROUP_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The process-wide recorder, installed on first use. Tests start many servers in one process;
/// they share it, as they would share any process-wide counter.
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("courier_store_commit_group_size".into()),
                    &GROUP_BUCKETS,
                )
                .and_then(|b| b.set_buckets(&LATENCY_BUCKETS))
                .expect("bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            describe();
            handle
        })
        .clone()
}

/// `# HELP` lines, and the metrics every scrape shows even before their first event.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "courier_http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        "courier_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request (for a stream: to its headers), by method and route template"
    );
    describe_gauge!(
        "courier_streams_open",
        "Event streams (SSE) open on this node"
    );
    describe_counter!(
        "courier_stream_events_delivered_total",
        "Events (messages, changes, signals) handed to open streams"
    );
    describe_counter!(
        "courier_streams_closed_total",
        "Event streams ended, by reason: slow_reader, signed_out, shutdown, error, client_gone"
    );
    describe_histogram!(
        "courier_store_commit_duration_seconds",
        Unit::Seconds,
        "Time to commit one group of messages, by store"
    );
    describe_histogram!(
        "courier_store_bookkeeping_duration_seconds",
        Unit::Seconds,
        "Time the SQLite writer spends on one bookkeeping statement (session or last-seen touches); a send arriving meanwhile waits for it"
    );
    describe_histogram!(
        "courier_search_index_batch_seconds",
        Unit::Seconds,
        "Time the SQLite writer spends writing one batch of new messages' search words"
    );
    describe_histogram!(
        "courier_store_commit_group_size",
        "Messages committed together in one transaction, by store"
    );
    describe_histogram!(
        "courier_bus_publish_duration_seconds",
        Unit::Seconds,
        "Time to publish one event on the bus, by bus"
    );
    describe_counter!(
        "courier_nats_reconnects_total",
        "Connections to NATS re-established after a loss"
    );
    describe_counter!(
        "courier_nats_received_bytes_total",
        "Bytes this node read from its NATS connection (events, replies and protocol)"
    );
    describe_counter!(
        "courier_nats_received_messages_total",
        "Messages NATS delivered to this node (events from other nodes, replies)"
    );
    describe_counter!(
        "courier_nats_sent_bytes_total",
        "Bytes this node wrote to its NATS connection"
    );
    describe_counter!(
        "courier_nats_sent_messages_total",
        "Messages this node published on NATS (one per copy of an event)"
    );
    describe_gauge!(
        "courier_nats_users_listened",
        "Users whose NATS subject this node is subscribed to (those with a stream here)"
    );
    describe_counter!(
        "courier_sign_in_failures_total",
        "Password sign-ins refused, by reason: credentials, rate_limited, other"
    );
    metrics::gauge!("courier_streams_open").set(0.0);
    metrics::counter!("courier_stream_events_delivered_total").absolute(0);
    metrics::counter!("courier_nats_reconnects_total").absolute(0);
}

/// Counts and times every request by its route template.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "fallback".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(
        "courier_http_request_duration_seconds",
        "method" => method,
        "route" => route.clone(),
    )
    .record(started.elapsed());
    metrics::counter!(
        "courier_http_requests_total",
        "method" => method,
        "route" => route,
        "status" => status,
    )
    .increment(1);
    response
}

/// A fixed set, so that a client inventing methods cannot grow the label set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The bus keeps its own totals (the NATS client counts every byte it reads); they are
/// copied into the recorder when scraped, so a scrape always shows the current figures.
/// Tests that run several servers in one process share the recorder, and the last scraped
/// bus wins.
fn record_bus_traffic(bus: &dyn Bus) {
    let Some(traffic) = bus.traffic() else {
        return;
    };
    metrics::counter!("courier_nats_received_bytes_total").absolute(traffic.received_bytes);
    metrics::counter!("courier_nats_received_messages_total").absolute(traffic.received_messages);
    metrics::counter!("courier_nats_sent_bytes_total").absolute(traffic.sent_bytes);
    metrics::counter!("courier_nats_sent_messages_total").absolute(traffic.sent_messages);
    metrics::gauge!("courier_nats_users_listened").set(traffic.users_listened as f64);
}

/// Binds `--metrics-listen` (port 0 picks one).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics listener {addr}"))
}

/// Serves `GET /metrics` in the Prometheus text format until shutdown.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    bus: Arc<dyn Bus>,
    shutdown: CancellationToken,
) {
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            record_bus_traffic(&*bus);
            async move {
                handle.run_upkeep();
                (
                    StatusCode::OK,
                    [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                    handle.render(),
                )
                    .into_response()
            }
        }),
    );
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::warn!(error = %e, "metrics listener failed");
    }
}
