//! Message routes: send (with `Idempotency-Key`, optionally a reply), page through history,
//! mark read, and a sent message's lifecycle: read one, edit, delete, react.

use super::extract::{AppJson, AppPath, AppQuery, AuthUser, parse_id};
use super::wire::{MessageJson, UserJson};
use super::{ApiError, ApiState, BeforeQuery};
use crate::model::{ConversationId, MessageId};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/conversations/{id}/messages",
            get(list_messages).post(send_message),
        )
        .route("/conversations/{id}/read_messages", post(read_messages))
        .route(
            "/conversations/{id}/messages/{message}",
            get(one_message).patch(edit_message).delete(delete_message),
        )
        .route(
            "/conversations/{id}/messages/{message}/reactions",
            get(reactors),
        )
        .route(
            "/conversations/{id}/messages/{message}/reactions/{emoji}",
            put(react).delete(react),
        )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SendBody {
    #[serde(default)]
    content: Option<String>,
    /// The id of a message of the same conversation that this one answers.
    #[serde(default)]
    reply_to: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct EditBody {
    #[serde(default)]
    content: Option<String>,
}

/// Conversation and message ids of a message route; a malformed one is a 404 like a missing one.
fn message_ids(ids: (String, String)) -> Result<(ConversationId, MessageId), ApiError> {
    Ok((
        parse_id(&ids.0, ConversationId::parse, "conversation")?,
        parse_id(&ids.1, MessageId::parse, "message")?,
    ))
}

#[utoipa::path(post, path = "/api/conversations/{id}/messages", tag = "messages",
    params(("id" = String, Path, description = "Conversation id"), ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key answers the first send")), request_body = SendBody,
    responses((status = 201, description = "Sent", body = MessageJson), (status = 404, description = "Not found"), (status = 422, description = "Empty or too long, or a bad replyTo")))]
async fn send_message(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(id): AppPath<String>,
    headers: HeaderMap,
    AppJson(body): AppJson<SendBody>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, ConversationId::parse, "conversation")?;
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::unprocessable("idempotencyKey", "must be visible ASCII"))?
                .to_owned(),
        ),
        None => None,
    };
    let content = body.content.unwrap_or_default();
    let reply_to =
        match body.reply_to.as_deref() {
            None => None,
            Some(raw) => Some(MessageId::parse(raw).ok_or_else(|| {
                ApiError::unprocessable("replyTo", "replyTo must be a message id")
            })?),
        };
    let message = state
        .messenger
        .send_message(me.id, id, &content, key, reply_to)
        .await?;
    Ok((StatusCode::CREATED, Json(MessageJson::new(&message, me.id))).into_response())
}

#[utoipa::path(get, path = "/api/conversations/{id}/messages/{message}", tag = "messages", params(("id" = String, Path, description = "Conversation id"), ("message" = String, Path, description = "Message id")),
    responses((status = 200, description = "The message", body = MessageJson), (status = 404, description = "Not found")))]
async fn one_message(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(ids): AppPath<(String, String)>,
) -> Result<Response, ApiError> {
    let (conversation, message) = message_ids(ids)?;
    let message = state
        .messenger
        .message(me.id, conversation, message)
        .await?;
    Ok(Json(MessageJson::new(&message, me.id)).into_response())
}

#[utoipa::path(patch, path = "/api/conversations/{id}/messages/{message}", tag = "messages", params(("id" = String, Path, description = "Conversation id"), ("message" = String, Path, description = "Message id")), request_body = EditBody,
    responses((status = 200, description = "Edited", body = MessageJson), (status = 403, description = "Not the author, or past the edit window"), (status = 404, description = "Not found"), (status = 422, description = "Deleted, empty or too long")))]
async fn edit_message(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(ids): AppPath<(String, String)>,
    AppJson(body): AppJson<EditBody>,
) -> Result<Response, ApiError> {
    let (conversation, message) = message_ids(ids)?;
    let content = body.content.unwrap_or_default();
    let message = state
        .messenger
        .edit_message(me.id, conversation, message, &content)
        .await?;
    Ok(Json(MessageJson::new(&message, me.id)).into_response())
}

#[utoipa::path(delete, path = "/api/conversations/{id}/messages/{message}", tag = "messages", params(("id" = String, Path, description = "Conversation id"), ("message" = String, Path, description = "Message id")),
    responses((status = 204, description = "Deleted (idempotent)"), (status = 403, description = "Neither the author nor a group admin"), (status = 404, description = "Not found")))]
async fn delete_message(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(ids): AppPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (conversation, message) = message_ids(ids)?;
    state
        .messenger
        .delete_message(me.id, conversation, message)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT` adds the caller's reaction, `DELETE` takes it back; both are idempotent.
#[utoipa::path(method(put, delete), path = "/api/conversations/{id}/messages/{message}/reactions/{emoji}", tag = "messages",
    params(("id" = String, Path, description = "Conversation id"), ("message" = String, Path, description = "Message id"), ("emoji" = String, Path, description = "Exactly one emoji")),
    responses((status = 204, description = "Reaction added (PUT) or removed (DELETE), idempotent"), (status = 404, description = "Not found"), (status = 422, description = "Not one emoji, a deleted message, or past the limits")))]
async fn react(
    State(state): State<ApiState>,
    me: AuthUser,
    method: Method,
    AppPath((conversation, message, emoji)): AppPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let (conversation, message) = message_ids((conversation, message))?;
    let on = method == Method::PUT;
    state
        .messenger
        .react(me.id, conversation, message, &emoji, on)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
struct ReactorsJson {
    emoji: String,
    users: Vec<UserJson>,
}

/// Who reacted with what: one entry per emoji (in the order first used), users oldest first.
#[utoipa::path(get, path = "/api/conversations/{id}/messages/{message}/reactions", tag = "messages", params(("id" = String, Path, description = "Conversation id"), ("message" = String, Path, description = "Message id")),
    responses((status = 200, description = "Who reacted with what", body = Vec<ReactorsJson>), (status = 404, description = "Not found")))]
async fn reactors(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(ids): AppPath<(String, String)>,
) -> Result<Response, ApiError> {
    let (conversation, message) = message_ids(ids)?;
    let pairs = state
        .messenger
        .reactors(me.id, conversation, message)
        .await?;
    let mut grouped: Vec<ReactorsJson> = Vec::new();
    for (emoji, user) in pairs {
        match grouped.iter_mut().find(|g| g.emoji == emoji) {
            Some(group) => group.users.push(user.into()),
            None => grouped.push(ReactorsJson {
                emoji,
                users: vec![user.into()],
            }),
        }
    }
    Ok(Json(grouped).into_response())
}

#[utoipa::path(get, path = "/api/conversations/{id}/messages", tag = "messages", params(("id" = String, Path, description = "Conversation id"), ("before" = Option<String>, Query, description = "Page before this message id")),
    responses((status = 200, description = "Up to 25, newest first; the newest page marks the conversation read", body = Vec<MessageJson>), (status = 404, description = "Not found")))]
async fn list_messages(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(id): AppPath<String>,
    AppQuery(query): AppQuery<BeforeQuery>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, ConversationId::parse, "conversation")?;
    let before = query
        .before
        .as_deref()
        .map(|b| parse_id(b, MessageId::parse, "message"))
        .transpose()?;
    let page = state.messenger.messages(me.id, id, before).await?;
    let body: Vec<_> = page.iter().map(|m| MessageJson::new(m, me.id)).collect();
    Ok(Json(body).into_response())
}

#[utoipa::path(post, path = "/api/conversations/{id}/read_messages", tag = "messages", params(("id" = String, Path, description = "Conversation id")),
    responses((status = 204, description = "Marked read"), (status = 404, description = "Not found")))]
async fn read_messages(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, ConversationId::parse, "conversation")?;
    state.messenger.mark_read(me.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
