//! Web Push routes: the VAPID public key, and a browser's subscription added or removed.

use super::extract::{AppJson, AuthUser};
use super::{ApiError, ApiState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/push/vapid-public-key", get(get_vapid_public_key))
        .route(
            "/push/subscriptions",
            post(add_subscription).delete(remove_subscription),
        )
}

#[utoipa::path(get, path = "/api/push/vapid-public-key", tag = "push",
    responses((status = 200, description = "The VAPID public key (base64url)", body = super::openapi::VapidKeyJson), (status = 404, description = "Push is off")))]
async fn get_vapid_public_key(
    State(state): State<ApiState>,
    _me: AuthUser,
) -> Result<Json<Value>, ApiError> {
    let key = state
        .messenger
        .push_public_key()
        .ok_or_else(|| ApiError::NotFound("push is off on this server".into()))?;
    Ok(Json(json!({ "publicKey": key })))
}

/// `PushSubscription.toJSON()` plus Courier's `hideContent`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SubscriptionBody {
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    keys: Keys,
    #[serde(default)]
    hide_content: bool,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
struct Keys {
    #[serde(default)]
    p256dh: String,
    #[serde(default)]
    auth: String,
}

#[utoipa::path(post, path = "/api/push/subscriptions", tag = "push", request_body = SubscriptionBody,
    responses((status = 201, description = "Subscribed"), (status = 422, description = "Not an https endpoint, or bad keys")))]
async fn add_subscription(
    State(state): State<ApiState>,
    me: AuthUser,
    AppJson(body): AppJson<SubscriptionBody>,
) -> Result<StatusCode, ApiError> {
    state
        .messenger
        .subscribe_push(
            me.id,
            &body.endpoint,
            &body.keys.p256dh,
            &body.keys.auth,
            body.hide_content,
        )
        .await?;
    Ok(StatusCode::CREATED)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct EndpointBody {
    #[serde(default)]
    endpoint: String,
}

#[utoipa::path(delete, path = "/api/push/subscriptions", tag = "push", request_body = EndpointBody,
    responses((status = 204, description = "Unsubscribed"), (status = 404, description = "Not yours")))]
async fn remove_subscription(
    State(state): State<ApiState>,
    me: AuthUser,
    AppJson(body): AppJson<EndpointBody>,
) -> Result<StatusCode, ApiError> {
    state
        .messenger
        .unsubscribe_push(me.id, &body.endpoint)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
