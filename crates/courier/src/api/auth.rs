//! Sign-in routes: dev login, password sign-up and sign-in, the current user, token refresh,
//! sessions (list, sign out one, sign out everywhere), and the provider list.

use super::extract::{
    AppJson, AppPath, AuthUser, CSRF_COOKIE, ClientIp, HOST_PREFIX, SESSION_COOKIE, device,
    parse_id,
};
use super::wire::{UserJson, time};
use super::{ApiError, ApiState};
use crate::service::{ServiceError, SignedIn, Signup};
use axum::extract::State;
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

#[derive(Deserialize, utoipa::ToSchema)]
struct LoginBody {
    #[serde(default)]
    username: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct PasswordBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    invite: Option<String>,
}

#[utoipa::path(post, path = "/api/login", tag = "auth", security(()), request_body = LoginBody,
    responses((status = 200, description = "Signed in (dev login; the route exists only with --dev-login)", body = super::openapi::SignedInJson), (status = 403, description = "The account has a password or a provider identity"), (status = 404, description = "Dev login is off")))]
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

#[utoipa::path(post, path = "/api/signup", tag = "auth", security(()), request_body = PasswordBody,
    responses((status = 201, description = "Account created and signed in", body = super::openapi::SignedInJson), (status = 403, description = "Sign-up is closed"), (status = 404, description = "Passwords are off"), (status = 422, description = "Taken name, weak password or bad invite")))]
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

#[utoipa::path(post, path = "/api/signin", tag = "auth", security(()), request_body = PasswordBody,
    responses((status = 200, description = "Signed in", body = super::openapi::SignedInJson), (status = 404, description = "Passwords are off"), (status = 422, description = "Wrong username or password")))]
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
        session_cookies(state, headers, Some((&signed_in.token, &signed_in.session))),
        Json(body),
    )
        .into_response()
}

#[utoipa::path(get, path = "/api/auth_user", tag = "auth",
    responses((status = 200, description = "The signed-in user", body = UserJson), (status = 401, description = "Not signed in")))]
async fn get_auth_user(
    State(state): State<ApiState>,
    me: AuthUser,
) -> Result<Json<UserJson>, ApiError> {
    // A valid token for a user that no longer exists is not a session; a store that cannot
    // be reached is a 503 (the web app shows "reconnecting", not the sign-in page).
    let user = state.messenger.user(me.id).await.map_err(|e| match e {
        ServiceError::NotFound(_) => ApiError::Unauthorized,
        e => e.into(),
    })?;
    Ok(Json(user.into()))
}

#[utoipa::path(post, path = "/api/refresh_token", tag = "auth",
    responses((status = 200, description = "A fresh token for this session", body = super::openapi::TokenJson), (status = 401, description = "Not signed in")))]
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
        Ok((
            session_cookies(&state, &headers, Some((&token, &auth.session))),
            body,
        )
            .into_response())
    } else {
        Ok(body.into_response())
    }
}

/// Ends this session (when the request has one) and clears the browser's cookies.
#[utoipa::path(post, path = "/api/logout", tag = "auth", security((), ("bearer" = []), ("session_cookie" = [])),
    responses((status = 204, description = "This session has ended; the session cookies are cleared")))]
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

#[utoipa::path(get, path = "/api/sessions", tag = "auth",
    responses((status = 200, description = "The caller's sessions", body = Vec<super::openapi::SessionJson>)))]
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

#[utoipa::path(delete, path = "/api/sessions/{id}", tag = "auth", params(("id" = String, Path, description = "Session id (32 hex digits)")),
    responses((status = 204, description = "That session is signed out"), (status = 404, description = "No such session of yours")))]
async fn sign_out_session(
    State(state): State<ApiState>,
    headers: HeaderMap,
    me: AuthUser,
    AppPath(id): AppPath<String>,
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

#[utoipa::path(delete, path = "/api/sessions", tag = "auth",
    responses((status = 204, description = "Every session of the caller is signed out")))]
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

#[utoipa::path(get, path = "/api/auth/providers", tag = "auth", security(()),
    responses((status = 200, description = "How people can sign in here", body = super::openapi::ProvidersJson)))]
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
/// whose value must come back in `X-CSRF-Token`. The CSRF value is an HMAC of the session id
/// (bound to this session, useless for any other). Over HTTPS both names carry `__Host-`.
/// `None` clears both (under both names, so a switch to HTTPS leaves nothing behind).
pub(super) fn session_cookies(
    state: &ApiState,
    request: &HeaderMap,
    signed_in: Option<(&str, &str)>,
) -> AppendHeaders<Vec<(HeaderName, HeaderValue)>> {
    let https = request
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes() == b"https");
    let secure = https || state.settings.secure_cookies;
    let prefix = if secure { HOST_PREFIX } else { "" };
    let secure_attr = if secure { "; Secure" } else { "" };
    let cookie =
        |value: String| HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(""));
    let mut headers = Vec::with_capacity(4);
    match signed_in {
        Some((token, session)) => {
            let max_age = state.settings.token_lifetime.as_secs();
            let csrf = state.accounts.csrf_token(session);
            headers.push((SET_COOKIE, cookie(format!(
                "{prefix}{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure_attr}"
            ))));
            headers.push((SET_COOKIE, cookie(format!(
                "{prefix}{CSRF_COOKIE}={csrf}; Path=/; Max-Age={max_age}; SameSite=Strict{secure_attr}"
            ))));
        }
        None => {
            for prefix in ["", HOST_PREFIX] {
                // A `__Host-` cookie can only be cleared with `Secure`.
                let secure_attr = if prefix.is_empty() {
                    secure_attr
                } else {
                    "; Secure"
                };
                for name in [SESSION_COOKIE, CSRF_COOKIE] {
                    headers.push((
                        SET_COOKIE,
                        cookie(format!(
                            "{prefix}{name}=; Path=/; Max-Age=0; SameSite=Strict{secure_attr}"
                        )),
                    ));
                }
            }
        }
    }
    AppendHeaders(headers)
}
