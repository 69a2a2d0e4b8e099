//! HTTP API: one `router()` per resource, the shared state, errors and wire shapes.

mod auth;
mod conversations;
mod error;
mod extract;
mod messages;
mod oauth;
mod push;
mod stream;
mod users;
mod wire;

pub use error::ApiError;

use crate::realtime::Realtime;
use crate::service::{Accounts, Messenger, OAuth};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct ApiState {
    pub messenger: Arc<Messenger>,
    pub realtime: Arc<Realtime>,
    pub accounts: Arc<Accounts>,
    pub oauth: Arc<OAuth>,
    pub settings: Arc<ApiSettings>,
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub dev_login: bool,
    pub token_lifetime: Duration,
    /// Mark cookies `Secure` even without `X-Forwarded-Proto: https`.
    pub secure_cookies: bool,
    /// Take the client address from `X-Forwarded-For` (behind a trusted reverse proxy).
    pub trust_forwarded_for: bool,
}

#[derive(Deserialize)]
struct BeforeQuery {
    before: Option<String>,
}

/// Everything under `/api`; unknown routes get a JSON 404.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .merge(auth::router(state.settings.dev_login))
        .merge(conversations::router())
        .merge(messages::router())
        .merge(oauth::router())
        .merge(push::router())
        .merge(stream::router())
        .merge(users::router())
        .fallback(|| async { ApiError::NotFound("no such API route".into()) })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(serde_json::json!({ "error": "method not allowed" })),
            )
        })
        .with_state(state)
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
