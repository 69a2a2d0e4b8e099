//! HTTP API: one `router()` per resource, the shared state, errors and wire shapes.

mod account;
mod admin;
mod auth;
mod conversations;
mod error;
mod extract;
mod messages;
mod oauth;
mod openapi;
mod presence;
mod profile;
mod push;
mod search;
mod stream;
pub mod uploads;
mod users;
mod wire;

pub use error::{ApiError, BodyTimedOut};

use crate::model::TrustedProxies;
use crate::realtime::Realtime;
use crate::service::{Accounts, Admin, Messenger, OAuth, Signals, Uploads};
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What every handler reaches. axum clones the state for each extractor and middleware of
/// every request, so it is one `Arc`: eight shared counters bumped and dropped per request
/// showed in the send profile as cache lines bouncing between cores.
#[derive(Clone)]
pub struct ApiState(Arc<Services>);

impl ApiState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for ApiState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub messenger: Arc<Messenger>,
    pub realtime: Arc<Realtime>,
    pub accounts: Arc<Accounts>,
    pub admin: Arc<Admin>,
    pub oauth: Arc<OAuth>,
    pub signals: Arc<Signals>,
    pub uploads: Arc<Uploads>,
    pub settings: Arc<ApiSettings>,
}

#[derive(Debug)]
pub struct ApiSettings {
    pub dev_login: DevLogin,
    pub token_lifetime: Duration,
    /// Mark cookies `Secure` even without `X-Forwarded-Proto: https`.
    pub secure_cookies: bool,
    /// Whose `X-Forwarded-For` entries name the client (see `model::TrustedProxies`).
    pub trusted_proxies: TrustedProxies,
}

/// Whether `POST /api/login` answers. A default-on dev login turns itself off for good once a
/// request shows the server is behind a proxy: a proxied node listens on loopback, which is
/// what turned it on. Only an explicit `--dev-login=true` survives that.
#[derive(Debug)]
pub struct DevLogin {
    enabled: bool,
    explicit: bool,
    proxied: AtomicBool,
}

impl DevLogin {
    pub fn new(enabled: bool, explicit: bool) -> Self {
        Self {
            enabled,
            explicit,
            proxied: AtomicBool::new(false),
        }
    }

    /// Dev login for a request with these headers.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if !self.enabled {
            return false;
        }
        self.observe(headers);
        self.explicit || !self.proxied.load(Ordering::Relaxed)
    }

    /// Notes a request that came through a proxy.
    fn observe(&self, headers: &HeaderMap) {
        let proxied = headers.keys().any(|name| {
            let name = name.as_str();
            name.starts_with("x-forwarded-") || name == "forwarded" || name == "x-real-ip"
        });
        if proxied && self.enabled && !self.proxied.swap(true, Ordering::Relaxed) {
            if self.explicit {
                tracing::warn!(
                    "a request came through a proxy and --dev-login is set: anyone who can reach the proxy can sign in by username"
                );
            } else {
                tracing::warn!(
                    "a request came through a proxy: dev login is now off (set --dev-login=true to keep it)"
                );
            }
        }
    }
}

/// Lets every API request tell `DevLogin` whether the server is behind a proxy.
async fn observe_proxy(
    State(state): State<ApiState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    state.settings.dev_login.observe(request.headers());
    next.run(request).await
}

#[derive(Deserialize)]
struct BeforeQuery {
    before: Option<String>,
}

/// Everything under `/api`; unknown routes get a JSON 404.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .merge(auth::router(state.settings.dev_login.enabled))
        .merge(account::router())
        .merge(admin::router())
        .merge(conversations::router())
        .merge(messages::router())
        .merge(oauth::router())
        .merge(presence::router())
        .merge(profile::router())
        .merge(push::router())
        .merge(search::router())
        .merge(stream::router())
        .merge(users::router())
        .route("/openapi.json", get(openapi::openapi_json))
        .merge(uploads::router())
        .fallback(|| async { ApiError::NotFound("no such API route".into()) })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(serde_json::json!({ "error": "method not allowed" })),
            )
        })
        .layer(axum::middleware::map_response(json_errors_no_store))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe_proxy,
        ))
        .with_state(state)
}

/// Every `/api` answer is `Cache-Control: no-store` (they carry tokens and private data), and
/// every error is JSON: a refusal that axum or a layer wrote as `text/plain` is rewrapped as
/// `{"error": "<its text>"}`. The typed extractors already answer JSON; this is the net.
async fn json_errors_no_store(mut response: Response) -> Response {
    // Except what a route marked public itself: a picture under its content hash.
    let public = response
        .headers()
        .get(CACHE_CONTROL)
        .is_some_and(|v| v.as_bytes().starts_with(b"public"));
    if !public {
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let text = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let body = serde_json::to_vec(&serde_json::json!({ "error": text })).unwrap_or_default();
    Response::from_parts(parts, Body::from(body))
}

/// `/healthz`: the process answers. `/readyz`: the store and bus can be reached.
pub fn health_router(state: ApiState) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    match state.messenger.ready().await {
        Ok(None) => (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        ),
        Ok(Some(degraded)) => (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "degraded", "error": degraded })),
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "unavailable", "error": reason })),
        ),
    }
}
