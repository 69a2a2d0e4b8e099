//! Conversation routes: start (or find) a direct one, create a group, list, show, rename, the
//! other participant, and group membership (list, add, remove, leave, change a role).

use super::extract::{AppJson, AppPath, AppQuery, AuthUser, parse_id, query_param};
use super::wire::{ConversationJson, MemberJson, UserJson};
use super::{ApiError, ApiState, BeforeQuery};
use crate::model::{ConversationId, UserId};
use axum::extract::State;
use axum::http::{StatusCode, Uri, header::LOCATION};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;

/// Members listed per page unless `?limit=` says otherwise (at most 1000).
const MEMBERS_PAGE: u32 = 100;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/conversations",
            get(list_conversations).post(start_conversation),
        )
        .route(
            "/conversations/{id}",
            get(get_conversation).patch(rename_conversation),
        )
        .route(
            "/conversations/{id}/other_participant",
            get(get_other_participant),
        )
        .route(
            "/conversations/{id}/members",
            get(list_members).post(add_members),
        )
        .route(
            "/conversations/{id}/members/{user}",
            delete(remove_member).patch(change_role),
        )
        .route("/conversations/{id}/leave", post(leave_conversation))
        .route(
            "/conversations/{id}/mute",
            axum::routing::put(mute_conversation).delete(unmute_conversation),
        )
}

/// `{"username"}` opens the direct conversation (the seed); `{"usernames", "title",
/// "history"?}` creates a group.
#[derive(Deserialize, utoipa::ToSchema)]
struct StartBody {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    usernames: Option<Vec<String>>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    history: Option<String>,
}

#[utoipa::path(post, path = "/api/conversations", tag = "conversations", request_body = StartBody,
    responses((status = 201, description = "Created (a direct conversation, or a group with the caller as owner)", body = ConversationJson), (status = 302, description = "The pair already has a conversation: `Location`"), (status = 403, description = "A conversation with yourself"), (status = 404, description = "Unknown user"), (status = 422, description = "Invalid input")))]
async fn start_conversation(
    State(state): State<ApiState>,
    me: AuthUser,
    AppJson(body): AppJson<StartBody>,
) -> Result<Response, ApiError> {
    if let Some(usernames) = &body.usernames {
        let group = state
            .messenger
            .create_group(
                me.id,
                usernames,
                body.title.as_deref(),
                body.history.as_deref(),
            )
            .await?;
        return Ok((
            StatusCode::CREATED,
            Json(ConversationJson::new(&group, me.id)),
        )
            .into_response());
    }
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

#[utoipa::path(get, path = "/api/conversations", tag = "conversations", params(("before" = Option<String>, Query, description = "Page after this conversation id")),
    responses((status = 200, description = "Up to 25, newest last message first", body = Vec<ConversationJson>)))]
async fn list_conversations(
    State(state): State<ApiState>,
    me: AuthUser,
    AppQuery(query): AppQuery<BeforeQuery>,
) -> Result<Response, ApiError> {
    let before = query
        .before
        .as_deref()
        .map(|b| parse_id(b, ConversationId::parse, "conversation"))
        .transpose()?;
    let list = state.messenger.conversations(me.id, before).await?;
    let others: Vec<_> = list
        .iter()
        .filter_map(|c| c.other_participant.as_ref().map(|u| u.id))
        .collect();
    let presence = state.signals.presence_of(&others).await?;
    let body: Vec<_> = list
        .iter()
        .map(|c| {
            let other = c.other_participant.as_ref();
            ConversationJson::with_presence(c, me.id, other.and_then(|u| presence.get(&u.id)))
        })
        .collect();
    Ok(Json(body).into_response())
}

#[utoipa::path(get, path = "/api/conversations/{id}", tag = "conversations", params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, description = "The conversation with its last message", body = ConversationJson), (status = 404, description = "Not found or not a member")))]
async fn get_conversation(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(id): AppPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, ConversationId::parse, "conversation")?;
    let conversation = state.messenger.conversation(me.id, id).await?;
    let others: Vec<_> = conversation
        .other_participant
        .iter()
        .map(|u| u.id)
        .collect();
    let presence = state.signals.presence_of(&others).await?;
    let view = others.first().and_then(|u| presence.get(u));
    Ok(Json(ConversationJson::with_presence(&conversation, me.id, view)).into_response())
}

#[utoipa::path(get, path = "/api/conversations/{id}/other_participant", tag = "conversations", params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, description = "The other person of a direct conversation", body = UserJson), (status = 404, description = "Not found, not a member, or a group")))]
async fn get_other_participant(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(id): AppPath<String>,
) -> Result<Json<UserJson>, ApiError> {
    let id = parse_id(&id, ConversationId::parse, "conversation")?;
    let other = state.messenger.other_participant(me.id, id).await?;
    let presence = state.signals.presence_of(&[other.id]).await?;
    let view = presence.get(&other.id).copied();
    Ok(Json(UserJson::from(other).with_presence(view.as_ref())))
}

fn conversation_id(raw: &str) -> Result<ConversationId, ApiError> {
    parse_id(raw, ConversationId::parse, "conversation")
}

fn member_id(raw: &str) -> Result<UserId, ApiError> {
    parse_id(raw, UserId::parse, "member")
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RenameBody {
    #[serde(default)]
    title: String,
}

#[utoipa::path(patch, path = "/api/conversations/{id}", tag = "conversations", params(("id" = String, Path, description = "Conversation id")), request_body = RenameBody,
    responses((status = 200, description = "Renamed", body = ConversationJson), (status = 403, description = "Not an admin"), (status = 404, description = "Not found"), (status = 409, description = "A direct conversation"), (status = 422, description = "Bad title")))]
async fn rename_conversation(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<RenameBody>,
) -> Result<Response, ApiError> {
    let id = conversation_id(&id)?;
    let conversation = state.messenger.rename_group(me.id, id, &body.title).await?;
    Ok(Json(ConversationJson::new(&conversation, me.id)).into_response())
}

/// `?after=<user id>&limit=N`: members in user id order.
#[utoipa::path(get, path = "/api/conversations/{id}/members", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id"), ("after" = Option<String>, Query, description = "Page after this user id"), ("limit" = Option<u32>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, description = "Members in user id order", body = Vec<MemberJson>), (status = 404, description = "Not found"), (status = 422, description = "Bad after or limit")))]
async fn list_members(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(id): AppPath<String>,
    uri: Uri,
) -> Result<Json<Vec<MemberJson>>, ApiError> {
    let id = conversation_id(&id)?;
    let after = query_param(uri.query(), "after")
        .map(|raw| {
            UserId::parse(&raw).ok_or_else(|| ApiError::unprocessable("after", "not a user id"))
        })
        .transpose()?;
    let limit = match query_param(uri.query(), "limit") {
        None => MEMBERS_PAGE,
        Some(raw) => raw
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::unprocessable("limit", "must be 1 to 1000"))?,
    };
    let members = state.messenger.members(me.id, id, after, limit).await?;
    Ok(Json(members.into_iter().map(Into::into).collect()))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct UsernamesBody {
    #[serde(default)]
    usernames: Vec<String>,
}

#[utoipa::path(post, path = "/api/conversations/{id}/members", tag = "conversations", params(("id" = String, Path, description = "Conversation id")), request_body = UsernamesBody,
    responses((status = 200, description = "The users added", body = Vec<UserJson>), (status = 403, description = "Not an admin"), (status = 404, description = "Not found"), (status = 409, description = "Already members, or a direct conversation"), (status = 422, description = "Unknown usernames or over the size limit")))]
async fn add_members(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(id): AppPath<String>,
    AppJson(body): AppJson<UsernamesBody>,
) -> Result<Json<Vec<UserJson>>, ApiError> {
    let id = conversation_id(&id)?;
    let added = state
        .messenger
        .add_members(me.id, id, &body.usernames)
        .await?;
    Ok(Json(added.into_iter().map(Into::into).collect()))
}

#[utoipa::path(delete, path = "/api/conversations/{id}/members/{user}", tag = "conversations", params(("id" = String, Path, description = "Conversation id"), ("user" = String, Path, description = "User id")),
    responses((status = 204, description = "Removed"), (status = 403, description = "Not allowed to remove them"), (status = 404, description = "Not a member"), (status = 409, description = "The last owner")))]
async fn remove_member(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath((id, user)): AppPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = conversation_id(&id)?;
    let user = member_id(&user)?;
    state.messenger.remove_member(me.id, id, user).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RoleBody {
    #[serde(default)]
    role: String,
}

#[utoipa::path(patch, path = "/api/conversations/{id}/members/{user}", tag = "conversations", params(("id" = String, Path, description = "Conversation id"), ("user" = String, Path, description = "User id")), request_body = RoleBody,
    responses((status = 200, description = "The member after the change", body = MemberJson), (status = 403, description = "Not the owner"), (status = 404, description = "Not found"), (status = 409, description = "Demoting the last owner"), (status = 422, description = "Bad role")))]
async fn change_role(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath((id, user)): AppPath<(String, String)>,
    AppJson(body): AppJson<RoleBody>,
) -> Result<Json<MemberJson>, ApiError> {
    let id = conversation_id(&id)?;
    let user = member_id(&user)?;
    let member = state
        .messenger
        .set_role(me.id, id, user, &body.role)
        .await?;
    Ok(Json(member.into()))
}

#[utoipa::path(put, path = "/api/conversations/{id}/mute", tag = "conversations", params(("id" = String, Path, description = "Conversation id")),
    responses((status = 204, description = "Muted on every device of the caller"), (status = 404, description = "Not found")))]
async fn mute_conversation(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = conversation_id(&id)?;
    state.messenger.set_muted(me.id, id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/conversations/{id}/mute", tag = "conversations", params(("id" = String, Path, description = "Conversation id")),
    responses((status = 204, description = "Unmuted"), (status = 404, description = "Not found")))]
async fn unmute_conversation(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = conversation_id(&id)?;
    state.messenger.set_muted(me.id, id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/conversations/{id}/leave", tag = "conversations", params(("id" = String, Path, description = "Conversation id")),
    responses((status = 204, description = "Left"), (status = 404, description = "Not found"), (status = 409, description = "A direct conversation")))]
async fn leave_conversation(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = conversation_id(&id)?;
    state.messenger.leave(me.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
