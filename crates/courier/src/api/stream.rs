//! `GET /api/messages`: the user's realtime stream, framed as Server-Sent Events.

use super::extract::{AppJson, AuthUser, query_param};
use super::wire::{ChangeJson, DeliveredJson, MessageJson, PresenceJson, TypingJson};
use super::{ApiError, ApiState};
use crate::realtime::{Frame, Published};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt;
use std::convert::Infallible;
use std::sync::OnceLock;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/messages", get(stream_messages))
        .route("/ack", post(acknowledge))
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
struct AckBody {
    #[serde(default)]
    cursor: Option<String>,
}

/// `POST /api/ack {"cursor"}`: this device has processed its stream up to the cursor; without
/// a cursor, it has just loaded the user's conversations and so has everything up to now.
#[utoipa::path(post, path = "/api/ack", tag = "realtime", request_body = AckBody,
    responses((status = 204, description = "This device has the stream up to the cursor"), (status = 422, description = "A malformed cursor or another server's")))]
async fn acknowledge(
    State(state): State<ApiState>,
    me: AuthUser,
    AppJson(body): AppJson<AckBody>,
) -> Result<axum::http::StatusCode, ApiError> {
    state
        .messenger
        .acknowledge(me.id, &me.session, body.cursor.as_deref())
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/messages", tag = "realtime",
    params(("Last-Event-ID" = Option<String>, Header, description = "Resume after this cursor"), ("token" = Option<String>, Query, description = "For EventSource clients that cannot set headers")),
    responses((status = 200, description = "The event stream (see docs/api.md for the events)", content_type = "text/event-stream", body = String), (status = 406, description = "Accept is not text/event-stream"), (status = 429, description = "Too many streams")))]
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

/// The wire frames of one published event, encoded by the first stream that sends it and
/// shared by every other: [for others, for the sender]. A 10,000-member group's message is
/// serialised twice, not 10,000 times.
#[derive(Default)]
struct Frames([OnceLock<Bytes>; 2]);

fn shared_frame(event: &Published, mine: bool, encode: impl FnOnce() -> Bytes) -> Bytes {
    match event.derived(Frames::default) {
        Some(Frames(frames)) => frames[usize::from(mine)].get_or_init(encode).clone(),
        None => encode(),
    }
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
        } => shared_frame(&event, mine, || {
            let Some(message) = event.message() else {
                return Bytes::new();
            };
            let json =
                serde_json::to_string(&MessageJson::with_mine(message, mine)).unwrap_or_default();
            Bytes::from(format!("id: {cursor}\ndata: {json}\n\n"))
        }),
        Frame::Change { cursor, event } => shared_frame(&event, false, || {
            let crate::model::EventKind::Change(change) = &event.kind else {
                return Bytes::new();
            };
            let json = serde_json::to_string(&ChangeJson::new(change)).unwrap_or_default();
            let name = change.change.event_name();
            Bytes::from(format!("event: {name}\nid: {cursor}\ndata: {json}\n\n"))
        }),
        // No `id:`: a signal is never replayed, and must not move the client's cursor.
        Frame::Signal { event } => shared_frame(&event, false, || {
            let (name, json) = match &event.kind {
                crate::model::EventKind::Typing(t) => {
                    ("typing", serde_json::to_string(&TypingJson::new(t)))
                }
                crate::model::EventKind::Presence(p) => {
                    ("presence", serde_json::to_string(&PresenceJson::new(p)))
                }
                crate::model::EventKind::Delivered(d) => {
                    ("delivered", serde_json::to_string(&DeliveredJson::new(d)))
                }
                crate::model::EventKind::Report(r) => (
                    "report",
                    serde_json::to_string(&super::admin::filed_json(r)),
                ),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cursor, Event, Message, MessageId, Recipient, UserId};
    use std::sync::Arc;

    #[test]
    fn a_frame_is_encoded_once_per_event_and_shared_by_every_stream() {
        let message: Message = serde_json::from_value(serde_json::json!({
            "id": 7,
            "conversation_id": 1,
            "sender_id": 1,
            "content": "hi",
            "created_at": "2026-01-01T00:00:00Z",
        }))
        .unwrap();
        let recipients = [1, 2]
            .map(|user| Recipient {
                user: UserId(user),
                prev: MessageId(6),
            })
            .to_vec();
        let event = Published::new(Arc::new(Event::new(message, recipients)));
        let cursor = Cursor::parse("i-7").unwrap();
        let send = |mine| {
            encode(Frame::Message {
                cursor: cursor.clone(),
                event: event.clone(),
                mine,
            })
        };
        let (theirs, again, mine) = (send(false), send(false), send(true));
        assert_eq!(
            theirs.as_ptr(),
            again.as_ptr(),
            "the same bytes, not a copy"
        );
        assert_ne!(theirs, mine, "the sender's frame says mine");
        assert!(
            std::str::from_utf8(&theirs)
                .unwrap()
                .starts_with("id: i-7\ndata: {")
        );
    }
}
