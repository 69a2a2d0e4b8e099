//! What wrapping the routes costs per request: the app's outer layers (a body limit, four
//! security headers, the trace span) applied per route with `Router::layer`, as before
//! `app::router` did until the issue-12 thirteenth pass, against the same layers wrapped once around the router
//! (`ServiceBuilder` under a `fallback_service`, as `app::router` does now). The routes have
//! the API's shape: nested under `/api`, behind two middleware of their own. No network, no
//! store: the difference is the layering alone.
//!
//! `cargo bench -p courier --bench router_layers -- --quick`; figures in docs/benchmarks.md.

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{Next, from_fn, map_response};
use axum::response::Response;
use axum::routing::{get, post};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

const HEADERS: [(&str, &str); 4] = [
    ("content-security-policy", "default-src 'self'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];

fn header(name: &'static str, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}

async fn pass(request: Request, next: Next) -> Response {
    next.run(request).await
}

/// Routes shaped like the API's: a few dozen, nested, behind two middleware.
fn routes() -> Router {
    let mut api = Router::new();
    for i in 0..30 {
        api = api.route(&format!("/things{i}/{{id}}"), get(|| async { "[]" }));
    }
    let api = api
        .route(
            "/conversations/{id}/messages",
            post(|| async { "{}" }).get(|| async { "[]" }),
        )
        .layer(map_response(|r: Response| async { r }))
        .layer(from_fn(pass));
    Router::new()
        .nest("/api", api)
        .fallback(|| async { "page" })
}

fn per_route() -> Router {
    let mut router = routes().layer(DefaultBodyLimit::max(1 << 20));
    for (name, value) in HEADERS {
        router = router.layer(header(name, value));
    }
    router.layer(TraceLayer::new_for_http())
}

fn once() -> Router {
    let [a, b, c, d] = HEADERS.map(|(name, value)| header(name, value));
    let stack = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(d)
        .layer(c)
        .layer(b)
        .layer(a)
        .layer(DefaultBodyLimit::max(1 << 20))
        .service(routes());
    Router::new().fallback_service(stack)
}

fn request() -> Request<Body> {
    Request::post("/api/conversations/42/messages")
        .body(Body::from("{\"content\":\"hi\"}"))
        .expect("a valid request")
}

fn per_request(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("layers");
    for (name, router) in [("per_route", per_route()), ("once", once())] {
        let response = runtime
            .block_on(router.clone().oneshot(request()))
            .expect("infallible");
        assert_eq!(response.headers()["x-frame-options"], "DENY");
        group.bench_function(name, |b| {
            b.iter(|| {
                let response = runtime.block_on(router.clone().oneshot(request()));
                black_box(response.expect("infallible"))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, per_request);
criterion_main!(benches);
