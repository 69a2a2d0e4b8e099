//! Moderation: reporting a message (anyone who can see it), and the server admin's
//! `/api/admin/…` routes (people, reports, disabling accounts). Every admin route asks
//! `service::Admin` to check the caller's role on each request; the rules live there.

use super::extract::{AppJson, AppPath, AppQuery, AuthUser, parse_id};
use super::wire::time;
use super::{ApiError, ApiState};
use crate::model::{ConversationId, MessageId, ReportFiled, UserId};
use crate::service::Actor;
use crate::service::{AdminUser, Report};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/conversations/{id}/messages/{message}/report",
            post(report_message),
        )
        .route("/admin/users", get(list_users))
        .route("/admin/users/{id}/disable", post(disable_user))
        .route("/admin/users/{id}/enable", post(enable_user))
        .route("/admin/reports", get(list_reports))
        .route("/admin/reports/{id}/resolve", post(resolve_report))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ReportBody {
    /// Why the message is reported (optional, at most 1,000 characters).
    #[serde(default)]
    reason: Option<String>,
}

#[utoipa::path(post, path = "/api/conversations/{id}/messages/{message}/report", tag = "moderation",
    params(("id" = String, Path, description = "Conversation id"), ("message" = String, Path, description = "Message id")), request_body = ReportBody,
    responses((status = 201, description = "Reported; the server's admins see it", body = Object), (status = 404, description = "No such message visible to the caller"), (status = 409, description = "The caller already has an open report on this message"), (status = 422, description = "Reason too long"), (status = 429, description = "Too many reports")))]
async fn report_message(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath((conversation, message)): AppPath<(String, String)>,
    AppJson(body): AppJson<ReportBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let conversation = parse_id(&conversation, ConversationId::parse, "conversation")?;
    let message = parse_id(&message, MessageId::parse, "message")?;
    let id = state
        .admin
        .report(me.id, conversation, message, body.reason.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id.to_string() }))))
}

#[derive(Deserialize)]
struct UsersQuery {
    #[serde(default)]
    search: Option<String>,
}

fn user_json(user: &AdminUser) -> Value {
    json!({
        "id": user.id.to_string(),
        "username": user.username,
        "createdAt": time(&user.created_at),
        "isAdmin": user.is_admin,
        "deleted": user.deleted,
        "disabledAt": user.disabled_at.as_ref().map(time),
    })
}

fn report_json(report: &Report) -> Value {
    json!({
        "id": report.id.to_string(),
        "reporter": report.reporter_name,
        "conversationId": report.conversation.to_string(),
        "messageId": report.message.to_string(),
        "sender": report.sender_name,
        "senderId": report.sender.to_string(),
        "content": report.content,
        "reason": report.reason,
        "createdAt": time(&report.created_at),
        "resolvedAt": report.resolved_at.as_ref().map(time),
    })
}

/// A live `report` event: the same shape as a row of `/api/admin/reports`.
pub(super) fn filed_json(report: &ReportFiled) -> Value {
    json!({
        "id": report.id.to_string(),
        "reporter": report.reporter,
        "conversationId": report.conversation_id.to_string(),
        "messageId": report.message_id.to_string(),
        "sender": report.sender_name,
        "senderId": report.sender.to_string(),
        "content": report.content,
        "reason": report.reason,
        "createdAt": time(&report.created_at),
        "resolvedAt": null,
    })
}

#[utoipa::path(get, path = "/api/admin/users", tag = "moderation",
    params(("search" = Option<String>, Query, description = "Part of a username, any case")),
    responses((status = 200, description = "Up to 200 people, by username", body = Vec<Object>), (status = 403, description = "Not the server's admin")))]
async fn list_users(
    State(state): State<ApiState>,
    me: AuthUser,
    AppQuery(query): AppQuery<UsersQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let users = state
        .admin
        .users(Actor::User(me.id), query.search.as_deref())
        .await?;
    Ok(Json(users.iter().map(user_json).collect()))
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    parse_id(raw, |s| s.parse().ok().map(UserId), "user")
}

#[utoipa::path(post, path = "/api/admin/users/{id}/disable", tag = "moderation", params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "Disabled: signed out everywhere, streams closed, sign-in refused until enabled", body = Object), (status = 403, description = "Not the server's admin"), (status = 404, description = "No such user"), (status = 409, description = "One's own account")))]
async fn disable_user(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    let user = state
        .admin
        .disable(Actor::User(me.id), user_id(&id)?)
        .await?;
    Ok(Json(user_json(&user)))
}

#[utoipa::path(post, path = "/api/admin/users/{id}/enable", tag = "moderation", params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "Enabled: may sign in again", body = Object), (status = 403, description = "Not the server's admin"), (status = 404, description = "No such user")))]
async fn enable_user(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(id): AppPath<String>,
) -> Result<Json<Value>, ApiError> {
    let user = state
        .admin
        .enable(Actor::User(me.id), user_id(&id)?)
        .await?;
    Ok(Json(user_json(&user)))
}

#[derive(Deserialize)]
struct ReportsQuery {
    #[serde(default)]
    all: bool,
}

#[utoipa::path(get, path = "/api/admin/reports", tag = "moderation",
    params(("all" = Option<bool>, Query, description = "Include resolved reports")),
    responses((status = 200, description = "Up to 200 reports, newest first; open ones only unless all=true", body = Vec<Object>), (status = 403, description = "Not the server's admin")))]
async fn list_reports(
    State(state): State<ApiState>,
    me: AuthUser,
    AppQuery(query): AppQuery<ReportsQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let reports = state.admin.reports(Actor::User(me.id), query.all).await?;
    Ok(Json(reports.iter().map(report_json).collect()))
}

#[utoipa::path(post, path = "/api/admin/reports/{id}/resolve", tag = "moderation", params(("id" = String, Path, description = "Report id")),
    responses((status = 204, description = "Resolved"), (status = 403, description = "Not the server's admin"), (status = 404, description = "No such open report")))]
async fn resolve_report(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, |s| s.parse().ok(), "report")?;
    state.admin.resolve_report(Actor::User(me.id), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
