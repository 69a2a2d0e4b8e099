//! `GET /api/usernames`: username suggestions for starting a conversation; `/api/settings`:
//! what a person decides about themselves (read receipts).

use super::extract::{AppJson, AppQuery, AuthUser};
use super::{ApiError, ApiState};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/usernames", get(search_usernames))
        .route("/settings", get(settings).patch(update_settings))
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SettingsJson {
    read_receipts: bool,
}

impl From<crate::service::UserSettings> for SettingsJson {
    fn from(s: crate::service::UserSettings) -> Self {
        Self {
            read_receipts: s.read_receipts,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SettingsBody {
    #[serde(default)]
    read_receipts: Option<bool>,
}

async fn settings(
    State(state): State<ApiState>,
    me: AuthUser,
) -> Result<Json<SettingsJson>, ApiError> {
    Ok(Json(state.messenger.settings(me.id).await?.into()))
}

async fn update_settings(
    State(state): State<ApiState>,
    me: AuthUser,
    AppJson(body): AppJson<SettingsBody>,
) -> Result<Json<SettingsJson>, ApiError> {
    let after = state
        .messenger
        .update_settings(me.id, body.read_receipts)
        .await?;
    Ok(Json(after.into()))
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    search: String,
}

async fn search_usernames(
    State(state): State<ApiState>,
    me: AuthUser,
    AppQuery(query): AppQuery<SearchQuery>,
) -> Result<Json<Vec<String>>, ApiError> {
    Ok(Json(
        state
            .messenger
            .search_usernames(me.id, &query.search)
            .await?,
    ))
}
