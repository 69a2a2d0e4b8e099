//! Sign-in routes: dev login, the current user, token refresh, sign-out, provider list.

use super::extract::{AppJson, AuthUser, CSRF_COOKIE, SESSION_COOKIE};
use super::wire::{UserJson, time};
use super::{ApiError, ApiState};
use crate::model::UserId;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

pub fn router(dev_login: bool) -> Router<ApiState> {
    let router = Router::new()
        .route("/auth_user", get(get_auth_user))
        .route("/refresh_token", post(refresh_token))
        .route("/logout", post(logout))
        .route("/auth/providers", get(list_providers));
    // Without dev login the route does not exist at all: the /api fallback answers 404.
    if dev_login {
        router.route("/login", post(login))
    } else {
        router
    }
}

#[derive(Deserialize)]
struct LoginBody {
    #[serde(default)]
    username: Option<String>,
}

async fn login(
    State(state): State<ApiState>,
    headers: HeaderMap,
    AppJson(body): AppJson<LoginBody>,
) -> Result<Response, ApiError> {
    let user = state
        .messenger
        .dev_login(body.username.as_deref().unwrap_or_default())
        .await?;
    let (token, expires_at) = issue(&state, user.id)?;
    let body =
        json!({ "authUser": UserJson::from(user), "token": token, "expiresAt": time(&expires_at) });
    Ok((session_cookies(&state, &headers, Some(&token)), Json(body)).into_response())
}

async fn get_auth_user(
    State(state): State<ApiState>,
    me: AuthUser,
) -> Result<Json<UserJson>, ApiError> {
    // A valid token for a user that no longer exists is not a session.
    let user = state
        .messenger
        .user(me.id)
        .await
        .map_err(|_| ApiError::Unauthorized)?;
    Ok(Json(user.into()))
}

async fn refresh_token(
    State(state): State<ApiState>,
    headers: HeaderMap,
    me: AuthUser,
) -> Result<Response, ApiError> {
    let (token, expires_at) = issue(&state, me.id)?;
    let body = Json(json!({ "token": token, "expiresAt": time(&expires_at) }));
    if me.via_cookie {
        Ok((session_cookies(&state, &headers, Some(&token)), body).into_response())
    } else {
        Ok(body.into_response())
    }
}

async fn logout(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    (
        StatusCode::NO_CONTENT,
        session_cookies(&state, &headers, None),
    )
        .into_response()
}

async fn list_providers(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(json!({ "devLogin": state.settings.dev_login, "password": false, "providers": [] }))
}

fn issue(
    state: &ApiState,
    user: UserId,
) -> Result<(String, chrono::DateTime<chrono::Utc>), ApiError> {
    state
        .tokens
        .issue(user)
        .map_err(|e| ApiError::Internal(Box::new(e)))
}

/// The browser session: an HttpOnly cookie holding the token, and a readable CSRF cookie
/// whose value must come back in `X-CSRF-Token` (double submit). `None` clears both.
fn session_cookies(
    state: &ApiState,
    request: &HeaderMap,
    token: Option<&str>,
) -> AppendHeaders<[(axum::http::HeaderName, HeaderValue); 2]> {
    let https = request
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes() == b"https");
    let secure = if https || state.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let (session, csrf, max_age) = match token {
        Some(token) => (
            token.to_owned(),
            hex::encode(rand::random::<[u8; 16]>()),
            state.settings.token_lifetime.as_secs(),
        ),
        None => (String::new(), String::new(), 0),
    };
    let cookie =
        |value: String| HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(""));
    AppendHeaders([
        (
            SET_COOKIE,
            cookie(format!(
                "{SESSION_COOKIE}={session}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
            )),
        ),
        (
            SET_COOKIE,
            cookie(format!(
                "{CSRF_COOKIE}={csrf}; Path=/; Max-Age={max_age}; SameSite=Strict{secure}"
            )),
        ),
    ])
}
