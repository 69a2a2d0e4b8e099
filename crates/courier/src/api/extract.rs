//! Extractors: `AppJson` (the API's own 400/408/413/415/422 bodies), `AuthUser`, and id parsing.

use super::{ApiError, ApiState, BodyTimedOut};
use crate::model::UserId;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;

pub const SESSION_COOKIE: &str = "courier_session";
pub const CSRF_COOKIE: &str = "courier_csrf";
/// Over HTTPS the cookies carry the `__Host-` prefix: the browser then accepts them only
/// with `Secure`, `Path=/` and no `Domain`, so a sibling subdomain cannot plant or shadow them.
pub const HOST_PREFIX: &str = "__Host-";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// `Json<T>` whose rejections speak the API's error shapes.
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::UnsupportedMediaType),
            Err(e) if BodyTimedOut::caused(&e) => Err(ApiError::RequestTimeout),
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

/// `Path<T>` whose every rejection (a segment that is not UTF-8, a value that does not parse)
/// is a JSON 404: a malformed id names nothing, so it is "not found" like an unknown one.
pub struct AppPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for AppPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => {
                Err(ApiError::NotFound("not found".into()))
            }
            Err(e) => Err(ApiError::Internal(Box::new(e))),
        }
    }
}

/// `Query<T>` whose rejections (malformed encoding, a repeated or mistyped parameter) are a
/// JSON 400 instead of axum's `text/plain`.
pub struct AppQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::BadRequest(
                format!("malformed query string: {}", e.body_text()),
            )),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// The signed-in user. The token comes from `Authorization: Bearer`, `?token=` (only on
/// `GET /api/messages`, for EventSource clients that cannot set headers: a token in the URL of
/// any other route, a write above all, is ignored), or the browser's session cookie; a cookie
/// session must also send its CSRF token on state-changing requests.
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
        } else if let Some(token) = is_stream(parts)
            .then(|| query_param(parts.uri.query(), "token"))
            .flatten()
        {
            (token, false)
        } else if let Some(token) = session_cookie(&parts.headers) {
            (token.to_owned(), true)
        } else {
            return Err(ApiError::Unauthorized);
        };
        let auth = state.accounts.authenticate(&token).await?;
        if via_cookie && !is_safe(&parts.method) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !state.accounts.verify_csrf(&auth.session, sent) {
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

/// `GET /api/messages`, the one route that takes `?token=`. Nested routers see the path
/// without `/api`.
fn is_stream(parts: &Parts) -> bool {
    parts.method == Method::GET && matches!(parts.uri.path(), "/messages" | "/api/messages")
}

/// The session cookie, `__Host-` prefixed or not (plain HTTP has no prefix).
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, &format!("{HOST_PREFIX}{SESSION_COOKIE}"))
        .or_else(|| cookie(headers, SESSION_COOKIE))
        .filter(|v| !v.is_empty())
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
