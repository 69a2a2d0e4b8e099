//! `POST /api/uploads` streams a file in; `GET /api/uploads/{id}` (and `/thumbnail`) serve
//! it to its owner and to whoever may read a message that carries it, checked on every
//! request. Served bytes are user content: never sniffed, sandboxed, downloaded rather than
//! shown unless they are an image, and never stored by a cache (`no-store`, like all of
//! /api), so a browser shared by two people never answers one from the other's copy. The
//! ETag (the content hash) still lets a client revalidate: a 304 comes only after the check.

use super::extract::AuthUser;
use super::{ApiError, ApiState, BodyTimedOut};
use crate::model::Attachment;
use crate::service::{BodyError, UploadError};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, IF_RANGE, RANGE, VARY,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/uploads",
            // The upload counts its own bytes against `--max-upload-bytes` as they stream.
            post(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/uploads/{id}", get(download))
        .route("/uploads/{id}/thumbnail", get(thumbnail))
}

/// An attachment on the wire: in the upload's answer and in message JSON.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentJson {
    pub id: String,
    pub name: String,
    pub size: i64,
    /// Detected from the content, not taken from the client.
    #[serde(rename = "type")]
    pub content_type: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// `GET` with the bearer token, like every API route.
    pub url: String,
    /// A JPEG at most 320 pixels on a side, for images; null otherwise.
    pub thumbnail: Option<String>,
}

impl From<&Attachment> for AttachmentJson {
    fn from(a: &Attachment) -> Self {
        Self {
            id: a.id.to_string(),
            name: a.name.clone(),
            size: a.size,
            content_type: a.content_type.clone(),
            width: a.width,
            height: a.height,
            url: format!("/api/uploads/{}", a.id),
            thumbnail: a
                .thumbnail
                .then(|| format!("/api/uploads/{}/thumbnail", a.id)),
        }
    }
}

#[derive(Deserialize)]
struct UploadQuery {
    name: Option<String>,
}

#[utoipa::path(post, path = "/api/uploads", tag = "messages",
    params(("name" = Option<String>, Query, description = "The file's name")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses((status = 201, description = "Stored; attach it to a send by id", body = AttachmentJson), (status = 413, description = "Over --max-upload-bytes or the quota"), (status = 422, description = "Empty, or a type that contradicts the content")))]
async fn upload(
    State(state): State<ApiState>,
    me: AuthUser,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let declared = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let name = query.name.unwrap_or_default();
    let stream = body
        .into_data_stream()
        .map_err(|e| -> BodyError { Box::new(e) });
    let attachment = state
        .uploads
        .receive(me.id, &name, declared, length, stream)
        .await
        .map_err(|e| match e {
            UploadError::TooLarge(why) => ApiError::TooLarge(why),
            UploadError::Interrupted(cause) if BodyTimedOut::caused(cause.as_ref()) => {
                ApiError::RequestTimeout
            }
            UploadError::Interrupted(_) => {
                ApiError::BadRequest("the upload was interrupted".into())
            }
            UploadError::Service(e) => e.into(),
        })?;
    Ok((StatusCode::CREATED, Json(AttachmentJson::from(&attachment))).into_response())
}

#[utoipa::path(get, path = "/api/uploads/{id}", tag = "messages",
    params(("id" = String, Path, description = "Upload id"), ("Range" = Option<String>, Header, description = "One byte range")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>), (status = 206, description = "The requested range", content_type = "application/octet-stream", body = Vec<u8>), (status = 304, description = "Not modified"), (status = 404, description = "No such upload, or not yours to see"), (status = 416, description = "The range is outside the file")))]
async fn download(
    State(state): State<ApiState>,
    me: AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(state, me, &id, false, &headers).await
}

#[utoipa::path(get, path = "/api/uploads/{id}/thumbnail", tag = "messages",
    params(("id" = String, Path, description = "Upload id")),
    responses((status = 200, description = "A JPEG thumbnail", content_type = "image/jpeg", body = Vec<u8>), (status = 304, description = "Not modified"), (status = 404, description = "No thumbnail, or not yours to see")))]
async fn thumbnail(
    State(state): State<ApiState>,
    me: AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(state, me, &id, true, &headers).await
}

async fn serve(
    state: ApiState,
    me: AuthUser,
    id: &str,
    thumbnail: bool,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let download = state.uploads.open(me.id, id, thumbnail).await?;
    let a = &download.attachment;
    let etag = format!("\"{}\"", download.hash);
    let (content_type, disposition) = if thumbnail {
        ("image/jpeg".to_owned(), "inline".to_owned())
    } else if a.is_image() {
        (
            a.content_type.clone(),
            content_disposition("inline", &a.name),
        )
    } else {
        (
            a.content_type.clone(),
            content_disposition("attachment", &a.name),
        )
    };
    let mut response = Response::builder()
        .header(CONTENT_TYPE, content_type)
        .header(CONTENT_DISPOSITION, disposition)
        .header("x-content-type-options", "nosniff")
        .header(CONTENT_SECURITY_POLICY, "sandbox; default-src 'none'")
        // Overwritten with `no-store` for all of /api; said here for the route's own sake.
        .header(CACHE_CONTROL, "no-store")
        .header(VARY, "Authorization, Cookie")
        .header(ETAG, &etag)
        .header(ACCEPT_RANGES, "bytes");
    let matches = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    };
    if matches(IF_NONE_MATCH) {
        return response
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(internal);
    }
    let size = if thumbnail {
        None
    } else {
        Some(u64::try_from(a.size).unwrap_or(0))
    };
    // A range of a thumbnail (whose size is not recorded) is answered with all of it.
    let range = match (size, headers.get(RANGE)) {
        (Some(size), Some(value)) if headers.get(IF_RANGE).is_none() || matches(IF_RANGE) => {
            match parse_range(value.to_str().unwrap_or_default(), size) {
                RangeRequest::Whole => None,
                RangeRequest::Part(start, end) => Some((start, end, size)),
                RangeRequest::Unsatisfiable => {
                    return Ok((
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        [(CONTENT_RANGE, format!("bytes */{size}"))],
                        Json(serde_json::json!({ "error": "range not satisfiable" })),
                    )
                        .into_response());
                }
            }
        }
        _ => None,
    };
    let bytes = state
        .uploads
        .files()
        .read(&download.hash, range.map(|(s, e, _)| (s, e)))
        .await
        .map_err(internal)?;
    let body = Body::from_stream(bytes);
    response = match (range, size) {
        (Some((start, end, size)), _) => response
            .status(StatusCode::PARTIAL_CONTENT)
            .header(CONTENT_RANGE, format!("bytes {start}-{}/{size}", end - 1))
            .header(CONTENT_LENGTH, end - start),
        (None, Some(size)) => response.header(CONTENT_LENGTH, size),
        (None, None) => response,
    };
    response.body(body).map_err(internal)
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::Internal(Box::new(e))
}

/// `inline` or `attachment`, with the name as RFC 6266 `filename*` (and an ASCII fallback).
fn content_disposition(kind: &str, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{}",
        urlencoding::encode(name)
    )
}

#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    Whole,
    /// Start, end (exclusive).
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range (RFC 9110 §14.1.2); several ranges, or a malformed header, get the whole
/// file, as the RFC allows.
fn parse_range(header: &str, size: u64) -> RangeRequest {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    let (start, end) = match (first.is_empty(), last.is_empty()) {
        (true, true) => return RangeRequest::Whole,
        (true, false) => match parse(last) {
            Some(0) => return RangeRequest::Unsatisfiable,
            Some(n) => (size.saturating_sub(n), size),
            None => return RangeRequest::Whole,
        },
        (false, _) => {
            let Some(start) = parse(first) else {
                return RangeRequest::Whole;
            };
            let end = if last.is_empty() {
                size
            } else {
                match parse(last) {
                    Some(l) if l >= start => (l + 1).min(size),
                    _ => return RangeRequest::Whole,
                }
            };
            (start, end)
        }
    };
    if start >= size || size == 0 {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Part(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeRequest::Part(0, 10));
        assert_eq!(parse_range("bytes=90-", 100), RangeRequest::Part(90, 100));
        assert_eq!(parse_range("bytes=-10", 100), RangeRequest::Part(90, 100));
        assert_eq!(
            parse_range("bytes=50-500", 100),
            RangeRequest::Part(50, 100)
        );
        assert_eq!(parse_range("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeRequest::Whole);
        assert_eq!(parse_range("items=0-1", 100), RangeRequest::Whole);
        assert_eq!(parse_range("bytes=9-1", 100), RangeRequest::Whole);
    }

    #[test]
    fn dispositions_carry_unicode_names_safely() {
        assert_eq!(
            content_disposition("attachment", "résumé \"v2\".pdf"),
            "attachment; filename=\"r_sum_ _v2_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22v2%22.pdf"
        );
    }
}
