//! `GET /api/search`: full-text search over the messages the caller may read, and the
//! `around` page of history a hit opens (`GET /conversations/{id}/messages?around=`).
//!
//! A hit's `snippet` is a list of `{text, hit}` segments, never HTML: clients render each as
//! text and style the `hit` ones, so nothing a person wrote is ever markup.

use super::extract::{AppQuery, AuthUser, parse_id};
use super::wire::{MessageJson, UserJson, time};
use super::{ApiError, ApiState};
use crate::model::{ConversationId, MessageId, SearchQuery, Segment, UserId, snippet};
use crate::service::{PAGE_SIZE, SearchHit, SearchRequest};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub fn router() -> Router<ApiState> {
    Router::new().route("/search", get(search))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchParams {
    #[serde(default)]
    q: Option<String>,
    conversation_id: Option<String>,
    before: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SearchPage {
    results: Vec<HitJson>,
    /// Pass as `before` for the next page; null on the last page.
    next_before: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct HitJson {
    conversation_id: String,
    message_id: String,
    /// `direct` or `group`; a group's title (null for a direct conversation).
    conversation_kind: String,
    conversation_title: Option<String>,
    sender: UserJson,
    mine: bool,
    created_at: String,
    edited_at: Option<String>,
    #[schema(value_type = Vec<super::openapi::SegmentJson>)]
    snippet: Vec<Segment>,
}

fn hit_json(hit: SearchHit, query: &SearchQuery, me: UserId) -> HitJson {
    HitJson {
        conversation_id: hit.message.conversation_id.to_string(),
        message_id: hit.message.id.to_string(),
        conversation_kind: hit.conversation_kind,
        conversation_title: hit.conversation_title,
        mine: hit.sender.id == me,
        sender: hit.sender.into(),
        created_at: time(&hit.message.created_at),
        edited_at: hit.message.edited_at.as_ref().map(time),
        snippet: snippet(&hit.message.content, query),
    }
}

#[utoipa::path(get, path = "/api/search", tag = "messages",
    params(("q" = String, Query, description = "Words, \"phrases\", -exclusions, from:username"), ("conversationId" = Option<String>, Query, description = "Only this conversation"), ("before" = Option<String>, Query, description = "The previous page's nextBefore")),
    responses((status = 200, description = "A page of hits, newest first", body = SearchPage), (status = 400, description = "An empty or unusable query"), (status = 404, description = "Not a member of that conversation")))]
async fn search(
    State(state): State<ApiState>,
    me: AuthUser,
    AppQuery(params): AppQuery<SearchParams>,
) -> Result<Response, ApiError> {
    let query = SearchQuery::parse(params.q.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let conversation = params
        .conversation_id
        .as_deref()
        .map(|c| parse_id(c, ConversationId::parse, "conversation"))
        .transpose()?;
    let before = params
        .before
        .as_deref()
        .map(|b| {
            MessageId::parse(b)
                .ok_or_else(|| ApiError::BadRequest("before must be a message id".into()))
        })
        .transpose()?;
    let request = SearchRequest {
        query,
        conversation,
        before,
        limit: PAGE_SIZE,
    };
    let hits = state.messenger.search(me.id, &request).await?;
    let next_before = (hits.len() == PAGE_SIZE as usize)
        .then(|| hits.last().map(|h| h.message.id.to_string()))
        .flatten();
    let results = hits
        .into_iter()
        .map(|h| hit_json(h, &request.query, me.id))
        .collect();
    Ok(Json(SearchPage {
        results,
        next_before,
    })
    .into_response())
}

/// `?around={messageId}` of the history route: the messages around that one, newest first.
pub async fn around_page(
    state: &ApiState,
    me: UserId,
    conversation: ConversationId,
    around: &str,
) -> Result<Response, ApiError> {
    let around = parse_id(around, MessageId::parse, "message")?;
    let page = state
        .messenger
        .messages_around(me, conversation, around)
        .await?;
    let body: Vec<_> = page.iter().map(|m| MessageJson::new(m, me)).collect();
    Ok(Json(body).into_response())
}
