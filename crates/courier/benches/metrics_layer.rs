//! What the metrics layer (`app::metrics::track`) costs per request: one router with a route
//! template like the API's, driven in process with `tower::ServiceExt::oneshot`, once bare and
//! once behind the layer with the Prometheus recorder installed. No network, no store: the
//! difference between the two is the layer (route label, histogram, counter).
//!
//! `cargo bench -p courier --bench metrics_layer -- --quick`; figures in docs/benchmarks.md.

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use courier::app::metrics;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tower::ServiceExt;

fn router() -> Router {
    Router::new().route("/api/conversations/{id}/messages", get(|| async { "[]" }))
}

fn request() -> Request<Body> {
    Request::get("/api/conversations/42/messages")
        .body(Body::empty())
        .expect("a valid request")
}

fn per_request(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let bare = router();
    let _handle = metrics::recorder();
    let tracked = router().layer(axum::middleware::from_fn(metrics::track));
    let mut group = c.benchmark_group("request");
    group.bench_function("bare", |b| {
        b.iter(|| {
            let response = runtime.block_on(bare.clone().oneshot(request()));
            black_box(response.expect("infallible"))
        });
    });
    group.bench_function("with_metrics", |b| {
        b.iter(|| {
            let response = runtime.block_on(tracked.clone().oneshot(request()));
            black_box(response.expect("infallible"))
        });
    });
    group.finish();
}

criterion_group!(benches, per_request);
criterion_main!(benches);
