//! Message routes: send (with `Idempotency-Key`), page through history, mark read.

use super::extract::{AppJson, AppPath, AppQuery, AuthUser, parse_id};
use super::wire::MessageJson;
use super::{ApiError, ApiState, BeforeQuery};
use crate::model::{ConversationId, MessageId};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/conversations/{id}/messages",
            get(list_messages).post(send_message),
        )
        .route("/conversations/{id}/read_messages", post(read_messages))
}

#[derive(Deserialize)]
struct SendBody {
    #[serde(default)]
    content: Option<String>,
}

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
    let message = state
        .messenger
        .send_message(me.id, id, &content, key)
        .await?;
    Ok((StatusCode::CREATED, Json(MessageJson::new(&message, me.id))).into_response())
}

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

async fn read_messages(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, ConversationId::parse, "conversation")?;
    state.messenger.mark_read(me.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
