//! The signed-in person's profile: `PATCH /api/account/profile` (display name),
//! `PUT`/`DELETE /api/account/avatar` (picture), and `GET /api/avatars/{hash}`, which serves
//! current pictures to anyone who has the URL. A picture's URL carries the hash of its bytes,
//! so it never changes content and may be cached for good; a new picture is a new URL.

use super::extract::{AppJson, AuthUser};
use super::wire::UserJson;
use super::{ApiError, ApiState, BodyTimedOut};
use crate::service::{BodyError, UploadError};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, put};
use axum::{Json, Router};
use futures::TryStreamExt;
use serde::{Deserialize, Deserializer};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/account/profile", patch(update_profile))
        .route(
            "/account/avatar",
            // The picture counts its own bytes against `--max-avatar-bytes` as they arrive.
            put(set_avatar)
                .delete(remove_avatar)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/avatars/{hash}", get(get_avatar))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ProfileBody {
    /// A name to show instead of the username (1–64 characters, one line); null clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    display_name: Option<Option<String>>,
}

/// A key that is there, even as `null` (`Some(None)`), as opposed to one left out (`None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[utoipa::path(patch, path = "/api/account/profile", tag = "auth", request_body = ProfileBody,
    responses((status = 200, description = "The signed-in user as others now see them", body = UserJson), (status = 422, description = "A display name that is empty, too long or has control characters")))]
async fn update_profile(
    State(state): State<ApiState>,
    me: AuthUser,
    AppJson(body): AppJson<ProfileBody>,
) -> Result<Json<UserJson>, ApiError> {
    let Some(name) = body.display_name else {
        return Err(ApiError::Unprocessable(
            [(
                "displayName".to_owned(),
                "displayName is required (null shows the username)".to_owned(),
            )]
            .into(),
        ));
    };
    let user = state
        .messenger
        .set_display_name(me.id, name.as_deref())
        .await?;
    Ok(Json(user.into()))
}

#[utoipa::path(put, path = "/api/account/avatar", tag = "auth",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "A JPEG, PNG, GIF or WebP image"),
    responses((status = 200, description = "Stored cropped square, 256 px, without metadata; the user with its new `avatarURL`", body = UserJson), (status = 413, description = "Over --max-avatar-bytes"), (status = 422, description = "Not a readable image")))]
async fn set_avatar(
    State(state): State<ApiState>,
    me: AuthUser,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Json<UserJson>, ApiError> {
    let length = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let stream = body
        .into_data_stream()
        .map_err(|e| -> BodyError { Box::new(e) });
    let user = state
        .messenger
        .set_avatar(me.id, length, stream)
        .await
        .map_err(|e| match e {
            UploadError::TooLarge(why) => ApiError::TooLarge(why),
            UploadError::Interrupted(cause) if BodyTimedOut::caused(cause.as_ref()) => {
                ApiError::RequestTimeout
            }
            UploadError::Interrupted(_) => {
                ApiError::BadRequest("the upload was interrupted".into())
            }
            UploadError::Service(e) => e.into(),
        })?;
    Ok(Json(user.into()))
}

#[utoipa::path(delete, path = "/api/account/avatar", tag = "auth",
    responses((status = 200, description = "Back to the provider's or the generated picture", body = UserJson)))]
async fn remove_avatar(
    State(state): State<ApiState>,
    me: AuthUser,
) -> Result<Json<UserJson>, ApiError> {
    let user = state.messenger.remove_avatar(me.id).await?;
    Ok(Json(user.into()))
}

#[utoipa::path(get, path = "/api/avatars/{hash}", tag = "auth", security(()),
    params(("hash" = String, Path, description = "The picture's SHA-256, from an `avatarURL`")),
    responses((status = 200, description = "A JPEG, cacheable for good", content_type = "image/jpeg", body = Vec<u8>), (status = 404, description = "Nobody's current picture")))]
async fn get_avatar(
    State(state): State<ApiState>,
    Path(hash): Path<String>,
) -> Result<Response, ApiError> {
    if !state.messenger.avatar_exists(&hash).await? {
        return Err(ApiError::NotFound("no such picture".into()));
    }
    let bytes = state
        .uploads
        .files()
        .read(&hash, None)
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok((
        StatusCode::OK,
        [
            (CONTENT_TYPE, "image/jpeg"),
            (CACHE_CONTROL, "public, max-age=31536000, immutable"),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'",
            ),
            (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Body::from_stream(bytes),
    )
        .into_response())
}
