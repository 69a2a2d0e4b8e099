//! `GET /api/usernames`: username suggestions for starting a conversation.

use super::extract::{AppQuery, AuthUser};
use super::{ApiError, ApiState};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

pub fn router() -> Router<ApiState> {
    Router::new().route("/usernames", get(search_usernames))
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    search: String,
}

#[utoipa::path(get, path = "/api/usernames", tag = "conversations", params(("search" = String, Query, description = "A case-insensitive prefix")),
    responses((status = 200, description = "Up to 5 usernames, the caller excluded", body = Vec<String>), (status = 422, description = "Empty search or control characters")))]
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
