//! Typing and presence: `POST /conversations/{id}/typing`, `PUT /presence` (the client reports
//! itself away or back), and `GET`/`PATCH /me/settings` (whether others see last seen, whether
//! read receipts are shared).

use super::extract::{AppJson, AppPath, AuthUser, parse_id};
use super::{ApiError, ApiState};
use crate::model::ConversationId;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/conversations/{id}/typing", post(send_typing))
        .route("/presence", put(report_presence))
        .route("/me/settings", get(get_settings).patch(update_settings))
}

#[utoipa::path(post, path = "/api/conversations/{id}/typing", tag = "realtime", params(("id" = String, Path, description = "Conversation id")),
    responses((status = 204, description = "The other members' streams get `event: typing`"), (status = 404, description = "Not a member"), (status = 429, description = "Past the per-user limit")))]
async fn send_typing(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, ConversationId::parse, "conversation")?;
    state.signals.typing(me.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct PresenceBody {
    #[serde(default)]
    state: String,
}

#[utoipa::path(put, path = "/api/presence", tag = "realtime", request_body = PresenceBody,
    responses((status = 204, description = "This session's client is away or back"), (status = 422, description = "Another state")))]
async fn report_presence(
    State(state): State<ApiState>,
    me: AuthUser,
    AppJson(body): AppJson<PresenceBody>,
) -> Result<StatusCode, ApiError> {
    state
        .signals
        .report(me.id, &me.session, &body.state)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A person's own settings: whether others see their last seen, and whether they share (and
/// so see) read receipts.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SettingsJson {
    show_last_seen: bool,
    read_receipts: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SettingsBody {
    show_last_seen: Option<bool>,
    read_receipts: Option<bool>,
}

#[utoipa::path(get, path = "/api/me/settings", tag = "auth",
    responses((status = 200, description = "The caller's privacy settings", body = SettingsJson)))]
async fn get_settings(
    State(state): State<ApiState>,
    me: AuthUser,
) -> Result<Json<SettingsJson>, ApiError> {
    let presence = state.signals.settings(me.id).await?;
    let receipts = state.messenger.settings(me.id).await?;
    Ok(Json(SettingsJson {
        show_last_seen: presence.show_last_seen,
        read_receipts: receipts.read_receipts,
    }))
}

#[utoipa::path(patch, path = "/api/me/settings", tag = "auth", request_body = SettingsBody,
    responses((status = 200, description = "The settings after the change", body = SettingsJson), (status = 422, description = "Not a boolean")))]
async fn update_settings(
    State(state): State<ApiState>,
    me: AuthUser,
    AppJson(body): AppJson<SettingsBody>,
) -> Result<Json<SettingsJson>, ApiError> {
    let presence = match body.show_last_seen {
        Some(show) => state.signals.set_show_last_seen(me.id, show).await?,
        None => state.signals.settings(me.id).await?,
    };
    let receipts = state
        .messenger
        .update_settings(me.id, body.read_receipts)
        .await?;
    Ok(Json(SettingsJson {
        show_last_seen: presence.show_last_seen,
        read_receipts: receipts.read_receipts,
    }))
}
