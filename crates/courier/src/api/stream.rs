//! `GET /api/messages`: the user's realtime stream, framed as Server-Sent Events.

use super::extract::{AuthUser, query_param};
use super::wire::{ChangeJson, MessageJson, PresenceJson, TypingJson};
use super::{ApiError, ApiState};
use crate::realtime::Frame;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;
use std::convert::Infallible;

pub fn router() -> Router<ApiState> {
    Router::new().route("/messages", get(stream_messages))
}

async fn stream_messages(
    State(state): State<ApiState>,
    me: AuthUser,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let accepts = headers
        .get_all(ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("text/event-stream")));
    if !accepts {
        return Err(ApiError::NotAcceptable);
    }
    // The header wins: browsers send it on automatic reconnects; the query is for first connects.
    let last_event_id = match headers.get("last-event-id") {
        Some(v) => Some(v.to_str().unwrap_or("\u{fffd}").to_owned()),
        None => query_param(uri.query(), "lastEventId"),
    };
    let frames = state
        .realtime
        .open(me.id, me.session, last_event_id.as_deref())
        .await?;
    let body = Body::from_stream(frames.map(|frame| Ok::<_, Infallible>(encode(frame))));
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell nginx-style proxies not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn encode(frame: Frame) -> Bytes {
    match frame {
        Frame::Open { retry, cursor } => Bytes::from(format!(
            ": connected\nretry: {}\nid: {cursor}\n\n",
            retry.as_millis()
        )),
        Frame::Message {
            cursor,
            event,
            mine,
        } => event.frame(mine, || {
            let Some(message) = event.message() else {
                return Bytes::new();
            };
            let json =
                serde_json::to_string(&MessageJson::with_mine(message, mine)).unwrap_or_default();
            Bytes::from(format!("id: {cursor}\ndata: {json}\n\n"))
        }),
        Frame::Change { cursor, event } => event.frame(false, || {
            let crate::model::EventKind::Change(change) = &event.kind else {
                return Bytes::new();
            };
            let json = serde_json::to_string(&ChangeJson::new(change)).unwrap_or_default();
            let name = change.change.event_name();
            Bytes::from(format!("event: {name}\nid: {cursor}\ndata: {json}\n\n"))
        }),
        // No `id:`: a signal is never replayed, and must not move the client's cursor.
        Frame::Signal { event } => event.frame(false, || {
            let (name, json) = match &event.kind {
                crate::model::EventKind::Typing(t) => {
                    ("typing", serde_json::to_string(&TypingJson::new(t)))
                }
                crate::model::EventKind::Presence(p) => {
                    ("presence", serde_json::to_string(&PresenceJson::new(p)))
                }
                _ => return Bytes::new(),
            };
            let json = json.unwrap_or_default();
            Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
        }),
        Frame::Reset { reason } => {
            let json = serde_json::json!({ "reason": reason });
            Bytes::from(format!("event: reset\ndata: {json}\n\n"))
        }
        Frame::SignedOut => Bytes::from_static(b"event: signed-out\ndata: {}\n\n"),
        Frame::Heartbeat => Bytes::from_static(b": heartbeat\n\n"),
    }
}
