//! Sign-in routes: dev login, password sign-up and sign-in, the current user, token refresh,
//! sessions (list, sign out one, sign out everywhere), and the provider list.

use super::extract::{AppJson, AuthUser, CSRF_COOKIE, ClientIp, SESSION_COOKIE, device, parse_id};
use super::wire::{UserJson, time};
use super::{ApiError, ApiState};
use crate::service::{SignedIn, Signup};
use axum::extract::{Path, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

pub fn router(dev_login: bool) -> Router<ApiState> {
    let router = Router::new()
        .route("/auth_user", get(get_auth_user))
        .route("/refresh_token", post(refresh_token))
        .route("/logout", post(logout))
        .route("/signup", post(sign_up))
        .route("/signin", post(sign_in))
        .route("/sessions", get(list_sessions).delete(sign_out_everywhere))
        .route("/sessions/{id}", delete(sign_out_session))
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

#[derive(Deserialize)]
struct PasswordBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    invite: Option<String>,
}

async fn login(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    AppJson(body): AppJson<LoginBody>,
) -> Result<Response, ApiError> {
    if !state.settings.dev_login.allows(&headers) {
        return Err(ApiError::NotFound("no such API route".into()));
    }
    let username = body.username.unwrap_or_default();
    let signed_in = state
        .accounts
        .dev_login(&username, &device(&headers), ip)
        .await?;
    Ok(signed_in_response(
        &state,
        &headers,
        StatusCode::OK,
        signed_in,
    ))
}

async fn sign_up(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    AppJson(body): AppJson<PasswordBody>,
) -> Result<Response, ApiError> {
    let signed_in = state
        .accounts
        .sign_up(
            &body.username,
            &body.password,
            body.invite.as_deref(),
            &device(&headers),
            ip,
        )
        .await?;
    Ok(signed_in_response(
        &state,
        &headers,
        StatusCode::CREATED,
        signed_in,
    ))
}

async fn sign_in(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    AppJson(body): AppJson<PasswordBody>,
) -> Result<Response, ApiError> {
    let signed_in = state
        .accounts
        .sign_in(&body.username, &body.password, &device(&headers), ip)
        .await?;
    Ok(signed_in_response(
        &state,
        &headers,
        StatusCode::OK,
        signed_in,
    ))
}

/// The seed's login shape, plus the browser session cookies.
pub(super) fn signed_in_response(
    state: &ApiState,
    headers: &HeaderMap,
    status: StatusCode,
    signed_in: SignedIn,
) -> Response {
    let body = json!({
        "authUser": UserJson::from(signed_in.user),
        "token": signed_in.token,
        "expiresAt": time(&signed_in.expires_at),
    });
    (
        status,
        session_cookies(state, headers, Some(&signed_in.token)),
        Json(body),
    )
        .into_response()
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
    let auth = crate::service::Authenticated {
        user: me.id,
        session: me.session,
    };
    let (token, expires_at) = state.accounts.refresh(&auth).await?;
    let body = Json(json!({ "token": token, "expiresAt": time(&expires_at) }));
    if me.via_cookie {
        Ok((session_cookies(&state, &headers, Some(&token)), body).into_response())
    } else {
        Ok(body.into_response())
    }
}

/// Ends this session (when the request has one) and clears the browser's cookies.
async fn logout(
    State(state): State<ApiState>,
    headers: HeaderMap,
    me: Option<AuthUser>,
) -> Result<Response, ApiError> {
    if let Some(me) = me {
        state.accounts.sign_out(me.id, Some(&me.session)).await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        session_cookies(&state, &headers, None),
    )
        .into_response())
}

async fn list_sessions(
    State(state): State<ApiState>,
    me: AuthUser,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let sessions = state.accounts.sessions(me.id).await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "device": s.device,
                    "createdAt": time(&s.created_at),
                    "lastSeenAt": time(&s.last_seen_at),
                    "expiresAt": time(&s.expires_at),
                    "current": s.id == me.session,
                })
            })
            .collect(),
    ))
}

async fn sign_out_session(
    State(state): State<ApiState>,
    headers: HeaderMap,
    me: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(
        &id,
        |s| (s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_owned()),
        "session",
    )?;
    state.accounts.sign_out(me.id, Some(&id)).await?;
    if id == me.session {
        return Ok((
            StatusCode::NO_CONTENT,
            session_cookies(&state, &headers, None),
        )
            .into_response());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn sign_out_everywhere(
    State(state): State<ApiState>,
    headers: HeaderMap,
    me: AuthUser,
) -> Result<Response, ApiError> {
    state.accounts.sign_out(me.id, None).await?;
    Ok((
        StatusCode::NO_CONTENT,
        session_cookies(&state, &headers, None),
    )
        .into_response())
}

async fn list_providers(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Json<serde_json::Value> {
    let settings = state.accounts.settings();
    let signup = match settings.signup {
        Signup::Open => "open",
        Signup::Invite(_) => "invite",
        Signup::Closed => "closed",
    };
    Json(json!({
        "devLogin": state.settings.dev_login.allows(&headers),
        "password": settings.passwords,
        "signup": signup,
        "passwordMinLength": settings.password_min_len,
        "providers": state
            .oauth
            .providers()
            .map(|(id, name)| json!({ "id": id, "name": name, "url": format!("/api/oauth/{id}") }))
            .collect::<Vec<_>>(),
    }))
}

/// The browser session: an HttpOnly cookie holding the token, and a readable CSRF cookie
/// whose value must come back in `X-CSRF-Token` (double submit). `None` clears both.
pub(super) fn session_cookies(
    state: &ApiState,
    request: &HeaderMap,
    token: Option<&str>,
) -> AppendHeaders<[(HeaderName, HeaderValue); 2]> {
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
