//! `ApiError`: the only place that knows status codes and JSON error shapes.

use crate::realtime::OpenError;
use crate::service::ServiceError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("this endpoint streams text/event-stream; send Accept: text/event-stream")]
    NotAcceptable,
    #[error("request body too large")]
    PayloadTooLarge,
    /// 413 with the reason (file size limit, quota).
    #[error("{0}")]
    TooLarge(String),
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("invalid input")]
    Unprocessable(BTreeMap<String, String>),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("temporarily unavailable, try again")]
    Unavailable,
    #[error("internal server error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What reading a request body yields once its time is up (the server loop sets the deadline;
/// `AppJson` turns it into `ApiError::RequestTimeout`).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

impl BodyTimedOut {
    /// Whether `error`, or anything in its chain of causes, is a `BodyTimedOut`.
    pub fn caused(error: &(dyn std::error::Error + 'static)) -> bool {
        std::iter::successors(Some(error), |e| e.source()).any(|e| e.is::<Self>())
    }
}

impl ApiError {
    pub fn unprocessable(field: &str, message: impl ToString) -> Self {
        Self::Unprocessable(BTreeMap::from([(field.to_owned(), message.to_string())]))
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(what) => Self::NotFound(format!("{what} not found")),
            ServiceError::Forbidden(why) => Self::Forbidden(why.to_owned()),
            ServiceError::Unauthorized => Self::Unauthorized,
            ServiceError::TooManyRequests(why) => Self::TooManyRequests(why.to_owned()),
            ServiceError::Conflict(why) => Self::Conflict(why),
            ServiceError::Invalid { field, message } => Self::unprocessable(field, message),
            ServiceError::Unavailable(source) => {
                tracing::warn!(error = %source, cause = ?std::error::Error::source(&source), "store unavailable");
                Self::Unavailable
            }
            ServiceError::Internal(source) => Self::Internal(source),
        }
    }
}

impl From<OpenError> for ApiError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::TooManyStreams(_) => Self::TooManyRequests(e.to_string()),
            OpenError::Service(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Self::PayloadTooLarge | Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if let Self::Internal(source) = &self {
            // Logged once, inside the request span; the client learns nothing more.
            tracing::error!(error = %source, cause = ?source, "internal error");
        }
        let body = match self {
            Self::Unprocessable(errors) => json!({ "errors": errors }),
            e => json!({ "error": e.to_string() }),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still be on its way: this connection cannot carry
            // another request (RFC 9110 §15.5.9).
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}
