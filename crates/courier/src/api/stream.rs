//! `GET /api/messages`: the user's realtime stream, framed as Server-Sent Events.

use super::extract::{AppJson, AuthUser, query_param};
use super::wire::{ChangeJson, DeliveredJson, MessageJson, PresenceJson, TypingJson};
use super::{ApiError, ApiState};
use crate::model::MessageId;
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
    let instance = state.realtime.instance();
    let body =
        Body::from_stream(frames.map(move |frame| Ok::<_, Infallible>(encode(frame, &instance))));
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

/// `encode`'s result, kept on `event` for the other streams when it is `shared` (live); a
/// replayed entry is one stream's alone, and keeping it would only cost an allocation.
fn shared_frame(
    event: &Published,
    mine: bool,
    shared: bool,
    encode: impl FnOnce() -> Bytes,
) -> Bytes {
    if !shared {
        return encode();
    }
    match event.derived(Frames::default) {
        Some(Frames(frames)) => frames[usize::from(mine)].get_or_init(encode).clone(),
        None => encode(),
    }
}

/// One SSE event, written straight into one buffer: `event:` when named, `id:` when it has
/// a position (`{instance}-{position}`, the cursor), and `data:` from `json`.
fn sse(
    name: Option<&str>,
    cursor: Option<(&str, MessageId)>,
    json: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
) -> Bytes {
    use std::io::Write;
    let mut out = Vec::with_capacity(384);
    if let Some(name) = name {
        let _ = writeln!(out, "event: {name}");
    }
    if let Some((instance, position)) = cursor {
        let _ = writeln!(out, "id: {instance}-{position}");
    }
    out.extend_from_slice(b"data: ");
    if json(&mut out).is_err() {
        return Bytes::new();
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn encode(frame: Frame, instance: &str) -> Bytes {
    use crate::model::EventKind;
    match frame {
        Frame::Open { retry, position } => Bytes::from(format!(
            ": connected\nretry: {}\nid: {instance}-{position}\n\n",
            retry.as_millis()
        )),
        Frame::Message {
            position,
            event,
            mine,
            shared,
        } => shared_frame(&event, mine, shared, || {
            let Some(message) = event.message() else {
                return Bytes::new();
            };
            sse(None, Some((instance, position)), |out| {
                serde_json::to_writer(out, &MessageJson::with_mine(message, mine))
            })
        }),
        Frame::Change {
            position,
            event,
            shared,
        } => shared_frame(&event, false, shared, || {
            let EventKind::Change(change) = &event.kind else {
                return Bytes::new();
            };
            let name = change.change.event_name();
            sse(Some(name), Some((instance, position)), |out| {
                serde_json::to_writer(out, &ChangeJson::new(change))
            })
        }),
        // No `id:`: a signal is never replayed, and must not move the client's cursor.
        Frame::Signal { event } => shared_frame(&event, false, true, || match &event.kind {
            EventKind::Typing(t) => sse(Some("typing"), None, |out| {
                serde_json::to_writer(out, &TypingJson::new(t))
            }),
            EventKind::Presence(p) => sse(Some("presence"), None, |out| {
                serde_json::to_writer(out, &PresenceJson::new(p))
            }),
            EventKind::Delivered(d) => sse(Some("delivered"), None, |out| {
                serde_json::to_writer(out, &DeliveredJson::new(d))
            }),
            EventKind::Report(r) => sse(Some("report"), None, |out| {
                serde_json::to_writer(out, &super::admin::filed_json(r))
            }),
            _ => Bytes::new(),
        }),
        Frame::Reset { reason } => sse(Some("reset"), None, |out| {
            serde_json::to_writer(out, &serde_json::json!({ "reason": reason }))
        }),
        Frame::SignedOut => Bytes::from_static(b"event: signed-out\ndata: {}\n\n"),
        Frame::Heartbeat => Bytes::from_static(b": heartbeat\n\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Event, Message, MessageId, Recipient, UserId};
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
        let send = |mine| {
            encode(
                Frame::Message {
                    position: MessageId(7),
                    event: event.clone(),
                    mine,
                    shared: true,
                },
                "i",
            )
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
