//! Sign-in through an identity provider: `GET /api/oauth/{provider}` redirects there, and
//! `GET /api/oauth/{provider}/callback` comes back, opens the session (cookies only: the token
//! never travels in a URL) and lands on the saved page.
//!
//! Refusals redirect a browser to `/?error=<code>` (no secret in it) and answer API clients
//! with the usual JSON error and a 4xx.

use super::auth::session_cookies;
use super::extract::{AppPath, AuthUser, cookie, device};
use super::{ApiError, ApiState};
use crate::service::{CallbackParams, FLOW_LIFETIME, OAuthError};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

/// Holds the flow state (state, PKCE verifier, nonce, return path) between the two routes.
pub const FLOW_COOKIE: &str = "courier_oauth";

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/oauth/{provider}", get(start_sign_in))
        .route("/oauth/{provider}/callback", get(finish_sign_in))
}

#[derive(Deserialize)]
struct StartQuery {
    /// A same-origin path to land on afterwards.
    next: Option<String>,
    /// Link this provider to the signed-in account instead of signing in.
    #[serde(default)]
    link: bool,
}

#[utoipa::path(get, path = "/api/oauth/{provider}", tag = "auth", security(()),
    params(("provider" = String, Path, description = "Provider id, e.g. github"), ("next" = Option<String>, Query, description = "Where to return after signing in (a local path)"), ("link" = Option<bool>, Query, description = "Link the provider to the signed-in account")),
    responses((status = 302, description = "To the provider, with the flow cookie"), (status = 401, description = "`link` without a session"), (status = 403, description = "`link` started from another site"), (status = 404, description = "Unknown provider"), (status = 503, description = "The provider cannot be reached")))]
async fn start_sign_in(
    State(state): State<ApiState>,
    AppPath(provider): AppPath<String>,
    headers: HeaderMap,
    me: Option<AuthUser>,
    query: Result<Query<StartQuery>, QueryRejection>,
) -> Response {
    let (next, link) = match query {
        Ok(Query(q)) => (q.next, q.link),
        Err(_) => (None, false),
    };
    let link = match (link, me) {
        (false, _) => None,
        (true, None) => return ApiError::Unauthorized.into_response(),
        // Linking changes the account: only from the app's own pages, never from a link
        // another site made (browsers say where a navigation came from).
        (true, Some(_)) if fetched_cross_site(&headers) => {
            return ApiError::Forbidden("start linking from Settings".into()).into_response();
        }
        (true, Some(me)) => Some(me.id),
    };
    match state.oauth.start(&provider, next.as_deref(), link).await {
        Ok(started) => (
            StatusCode::FOUND,
            AppendHeaders([
                (LOCATION, header(&started.redirect)),
                (CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (
                    SET_COOKIE,
                    flow_cookie(&state, &headers, Some(&started.flow)),
                ),
            ]),
        )
            .into_response(),
        Err(e) => refuse(&state, &headers, e),
    }
}

#[utoipa::path(get, path = "/api/oauth/{provider}/callback", tag = "auth", security(()),
    params(("provider" = String, Path, description = "Provider id"), ("code" = Option<String>, Query), ("state" = Option<String>, Query), ("error" = Option<String>, Query)),
    responses((status = 302, description = "Signed in (or refused): back to the app"), (status = 400, description = "Bad or missing flow state or code"), (status = 403, description = "The provider said no"), (status = 404, description = "Unknown provider"), (status = 503, description = "The provider cannot be reached")))]
async fn finish_sign_in(
    State(state): State<ApiState>,
    AppPath(provider): AppPath<String>,
    headers: HeaderMap,
    query: Result<Query<CallbackParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = query else {
        return refuse(
            &state,
            &headers,
            OAuthError::InvalidFlow("malformed callback query"),
        );
    };
    let flow = cookie(&headers, FLOW_COOKIE).filter(|v| !v.is_empty());
    match state
        .oauth
        .finish(&provider, flow, &params, &device(&headers))
        .await
    {
        Ok(finished) => {
            // Linked: the session that started it stays as it is.
            let Some(signed_in) = &finished.signed_in else {
                return (
                    StatusCode::FOUND,
                    AppendHeaders([
                        (LOCATION, header(&finished.return_to)),
                        (CACHE_CONTROL, HeaderValue::from_static("no-store")),
                        (SET_COOKIE, flow_cookie(&state, &headers, None)),
                    ]),
                )
                    .into_response();
            };
            (
                StatusCode::FOUND,
                session_cookies(
                    &state,
                    &headers,
                    Some((&signed_in.token, &signed_in.session)),
                ),
                AppendHeaders([
                    (LOCATION, header(&finished.return_to)),
                    (CACHE_CONTROL, HeaderValue::from_static("no-store")),
                    (SET_COOKIE, flow_cookie(&state, &headers, None)),
                ]),
            )
                .into_response()
        }
        Err(e) => refuse(&state, &headers, e),
    }
}

fn fetched_cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site")
}

/// A refused sign-in: the browser goes back to the app with an error code to show, an API
/// client gets the JSON error. Either way the flow cookie is spent.
fn refuse(state: &ApiState, headers: &HeaderMap, e: OAuthError) -> Response {
    tracing::info!(error = %e, "sign-in through a provider refused");
    let code = match &e {
        OAuthError::UnknownProvider => "oauth_unknown_provider",
        OAuthError::InvalidFlow(_) => "oauth_state",
        OAuthError::Denied(_) => "oauth_denied",
        OAuthError::Rejected => "oauth_failed",
        OAuthError::Unavailable => "oauth_unavailable",
        OAuthError::Account(_) => "oauth_account",
    };
    let clear = AppendHeaders([(SET_COOKIE, flow_cookie(state, headers, None))]);
    let wants_html = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html {
        let location = HeaderValue::from_str(&format!("/?error={code}"))
            .unwrap_or(HeaderValue::from_static("/"));
        return (StatusCode::FOUND, clear, [(LOCATION, location)]).into_response();
    }
    let error = match e {
        OAuthError::UnknownProvider => ApiError::NotFound(e.to_string()),
        OAuthError::InvalidFlow(why) => ApiError::BadRequest(why.to_owned()),
        OAuthError::Denied(_) => ApiError::Forbidden(e.to_string()),
        OAuthError::Rejected => ApiError::BadRequest(format!("{e}; start again")),
        OAuthError::Unavailable => ApiError::Unavailable,
        OAuthError::Account(e) => e.into(),
    };
    (clear, error).into_response()
}

/// Short-lived, HttpOnly, and `SameSite=Lax` so it comes along on the provider's top-level
/// redirect back to us. `None` clears it.
fn flow_cookie(state: &ApiState, request: &HeaderMap, sealed: Option<&str>) -> HeaderValue {
    let https = request
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes() == b"https");
    let secure = if https || state.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let (value, max_age) = match sealed {
        Some(sealed) => (sealed, FLOW_LIFETIME.as_secs()),
        None => ("", 0),
    };
    header(&format!(
        "{FLOW_COOKIE}={value}; Path=/api/oauth; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static(""))
}
