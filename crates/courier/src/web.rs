//! The web app: files under `web/`, embedded at compile time by rust-embed (which walks the
//! folder), served with ETags; any other non-API path falls back to `index.html`.

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "web/"]
struct Assets;

/// Serves an embedded file, or the app shell for client-side routes.
pub async fn serve(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    let file = Assets::get(path)
        .filter(|_| !path.is_empty())
        .or_else(|| Assets::get("index.html"));
    let Some(file) = file else {
        return (
            StatusCode::NOT_FOUND,
            "the web app is not built into this binary",
        )
            .into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..12]));
    // `no-cache` means "revalidate": the ETag makes that a cheap 304.
    let mut response = if headers
        .get(IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(file.data))
    };
    let h = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, etag);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(mime) = HeaderValue::from_str(file.metadata.mimetype()) {
        h.insert(CONTENT_TYPE, mime);
    }
    response
}
