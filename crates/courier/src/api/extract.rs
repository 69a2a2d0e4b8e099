//! Extractors: `AppJson` (the API's own 400/413/415/422 bodies), `AuthUser`, and id parsing.

use super::{ApiError, ApiState};
use crate::model::UserId;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;

pub const SESSION_COOKIE: &str = "courier_session";
pub const CSRF_COOKIE: &str = "courier_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// `Json<T>` whose rejections speak the API's error shapes.
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::UnsupportedMediaType),
            Err(JsonRejection::JsonDataError(e)) => {
                Err(ApiError::unprocessable("body", e.body_text()))
            }
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::PayloadTooLarge),
            Err(e) => Err(ApiError::BadRequest(format!(
                "malformed JSON: {}",
                e.body_text()
            ))),
        }
    }
}

/// The signed-in user. The token comes from `Authorization: Bearer`, `?token=` (for
/// EventSource clients that cannot set headers), or the browser's session cookie; a cookie
/// session must also pass the CSRF check on state-changing requests.
pub struct AuthUser {
    pub id: UserId,
    pub session: String,
    pub via_cookie: bool,
}

impl FromRequestParts<ApiState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let (token, via_cookie) = if let Some(value) = parts.headers.get("authorization") {
            let value = value.to_str().map_err(|_| ApiError::Unauthorized)?;
            let (scheme, token) = value.split_once(' ').ok_or(ApiError::Unauthorized)?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(ApiError::Unauthorized);
            }
            (token.trim().to_owned(), false)
        } else if let Some(token) = query_param(parts.uri.query(), "token") {
            (token, false)
        } else if let Some(token) = cookie(&parts.headers, SESSION_COOKIE) {
            (token.to_owned(), true)
        } else {
            return Err(ApiError::Unauthorized);
        };
        let auth = state.accounts.authenticate(&token).await?;
        if via_cookie && !is_safe(&parts.method) {
            let expected = cookie(&parts.headers, CSRF_COOKIE);
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if expected.is_none() || expected != sent {
                return Err(ApiError::Forbidden("missing or wrong CSRF token".into()));
            }
        }
        Ok(Self {
            id: auth.user,
            session: auth.session,
            via_cookie,
        })
    }
}

impl axum::extract::OptionalFromRequestParts<ApiState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Option<Self>, Self::Rejection> {
        match <Self as FromRequestParts<ApiState>>::from_request_parts(parts, state).await {
            Ok(me) => Ok(Some(me)),
            Err(ApiError::Unauthorized) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The value of cookie `name`. Written by hand: two cookies do not warrant a cookie crate.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            urlencoding::decode(v)
                .map(|v| v.into_owned())
                .unwrap_or_default()
        })
    })
}

/// Parses an id from a path or query; anything malformed is a 404, never a 500.
pub fn parse_id<T>(raw: &str, parse: fn(&str) -> Option<T>, what: &str) -> Result<T, ApiError> {
    parse(raw).ok_or_else(|| ApiError::NotFound(format!("{what} not found")))
}

/// The client's address for rate limits: the peer, or, when the peer is a trusted proxy, the
/// rightmost `X-Forwarded-For` hop that is not (see `model::TrustedProxies`).
pub struct ClientIp(pub std::net::IpAddr);

impl FromRequestParts<ApiState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let forwarded_for = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        Ok(Self(
            state.settings.trusted_proxies.client(peer, forwarded_for),
        ))
    }
}

/// What the client calls itself, for the sessions list.
pub fn device(headers: &HeaderMap) -> String {
    headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("unknown device")
        .to_owned()
}
