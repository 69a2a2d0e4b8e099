//! Conversation routes: start (or find) one, list, show, the other participant.

use super::extract::{AppJson, AuthUser, parse_id};
use super::wire::{ConversationJson, UserJson};
use super::{ApiError, ApiState, BeforeQuery};
use crate::model::ConversationId;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header::LOCATION};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/conversations",
            get(list_conversations).post(start_conversation),
        )
        .route("/conversations/{id}", get(get_conversation))
        .route(
            "/conversations/{id}/other_participant",
            get(get_other_participant),
        )
}

#[derive(Deserialize)]
struct StartBody {
    #[serde(default)]
    username: Option<String>,
}

async fn start_conversation(
    State(state): State<ApiState>,
    me: AuthUser,
    AppJson(body): AppJson<StartBody>,
) -> Result<Response, ApiError> {
    let username = body.username.unwrap_or_default();
    let (conversation, created) = state.messenger.start_conversation(me.id, &username).await?;
    if created {
        Ok((
            StatusCode::CREATED,
            Json(ConversationJson::new(&conversation, me.id)),
        )
            .into_response())
    } else {
        let location = format!("/api/conversations/{}", conversation.id);
        Ok((StatusCode::FOUND, [(LOCATION, location)]).into_response())
    }
}

async fn list_conversations(
    State(state): State<ApiState>,
    me: AuthUser,
    Query(query): Query<BeforeQuery>,
) -> Result<Response, ApiError> {
    let before = query
        .before
        .as_deref()
        .map(|b| parse_id(b, ConversationId::parse, "conversation"))
        .transpose()?;
    let list = state.messenger.conversations(me.id, before).await?;
    let body: Vec<_> = list
        .iter()
        .map(|c| ConversationJson::new(c, me.id))
        .collect();
    Ok(Json(body).into_response())
}

async fn get_conversation(
    State(state): State<ApiState>,
    me: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, ConversationId::parse, "conversation")?;
    let conversation = state.messenger.conversation(me.id, id).await?;
    Ok(Json(ConversationJson::new(&conversation, me.id)).into_response())
}

async fn get_other_participant(
    State(state): State<ApiState>,
    me: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<UserJson>, ApiError> {
    let id = parse_id(&id, ConversationId::parse, "conversation")?;
    Ok(Json(
        state.messenger.other_participant(me.id, id).await?.into(),
    ))
}
