//! People and their accounts: first-run setup, invite links, password change and one-time
//! reset links, deleting one's account. The rules live in `service::Accounts`; tokens travel
//! in JSON bodies, never in URLs (the web app reads them from the link's fragment).

use super::auth::{session_cookies, signed_in_response};
use super::extract::{AppJson, AppPath, AuthUser, ClientIp, device};
use super::wire::time;
use super::{ApiError, ApiState};
use crate::service::{Invite, InviteState};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/setup", get(setup_status).post(setup))
        .route("/account", get(account).delete(delete_account))
        .route("/account/password", post(change_password))
        .route("/invites", get(list_invites).post(create_invite))
        .route("/invites/check", post(check_invite))
        .route("/invites/{id}", delete(revoke_invite))
        .route("/admin/password_links", post(admin_password_link))
        .route("/password_reset", post(reset_password))
        .route("/password_forgot", post(forgot_password))
        .route("/account/email", axum::routing::put(set_email))
}

#[utoipa::path(get, path = "/api/setup", tag = "auth", security(()), responses((status = 200, description = "`{needed, passwordMail}`: whether first-run setup is open", body = Object)))]
async fn setup_status(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let needed = state.accounts.setup_needed().await?;
    Ok(Json(
        json!({ "needed": needed, "passwordMail": state.accounts.mail_enabled() }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct SetupBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

#[utoipa::path(post, path = "/api/setup", tag = "auth", security(()), request_body = SetupBody, responses((status = 201, description = "The first account, a server admin, signed in", body = super::openapi::SignedInJson), (status = 409, description = "Setup is done"), (status = 422, description = "Bad username or weak password")))]
async fn setup(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    AppJson(body): AppJson<SetupBody>,
) -> Result<Response, ApiError> {
    let signed_in = state
        .accounts
        .setup(&body.username, &body.password, &device(&headers), ip)
        .await?;
    Ok(signed_in_response(
        &state,
        &headers,
        StatusCode::CREATED,
        signed_in,
    ))
}

/// The signed-in person's account: what the settings page needs beyond `GET /api/auth_user`.
#[utoipa::path(get, path = "/api/account", tag = "auth", responses((status = 200, description = "`{isAdmin, hasPassword, mayInvite, email, passwordMail, providers}`", body = Object)))]
async fn account(State(state): State<ApiState>, me: AuthUser) -> Result<Json<Value>, ApiError> {
    let flags = state.accounts.flags(me.id).await?;
    Ok(Json(json!({
        "isAdmin": flags.is_admin,
        "hasPassword": flags.has_password,
        "email": state.accounts.email(me.id).await?,
        "passwordMail": state.accounts.mail_enabled(),
        "mayInvite": state.accounts.may_invite(me.id).await?,
        "providers": state.accounts.linked_providers(me.id).await?,
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct PasswordChange {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    sign_out_others: bool,
}

#[utoipa::path(post, path = "/api/account/password", tag = "auth", request_body = PasswordChange, responses((status = 200, description = "`{signedOut}`: how many other sessions ended", body = Object), (status = 422, description = "Wrong current password or a weak new one"), (status = 429, description = "Too many attempts")))]
async fn change_password(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    me: AuthUser,
    AppJson(body): AppJson<PasswordChange>,
) -> Result<Json<Value>, ApiError> {
    let signed_out = state
        .accounts
        .change_password(
            me.id,
            &me.session,
            &body.current_password,
            &body.new_password,
            body.sign_out_others,
            ip,
        )
        .await?;
    Ok(Json(json!({ "signedOut": signed_out })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct DeleteAccount {
    #[serde(default)]
    password: Option<String>,
    /// Turn every message the person sent into a deleted message.
    #[serde(default)]
    remove_messages: bool,
}

#[utoipa::path(delete, path = "/api/account", tag = "auth", request_body = DeleteAccount, responses((status = 204, description = "Deleted: sessions end, streams close"), (status = 403, description = "A fresh sign-in is needed"), (status = 422, description = "Wrong password")))]
async fn delete_account(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    me: AuthUser,
    AppJson(body): AppJson<DeleteAccount>,
) -> Result<Response, ApiError> {
    state
        .accounts
        .delete_account(
            me.id,
            &me.session,
            body.password.as_deref(),
            body.remove_messages,
            ip,
        )
        .await?;
    // Its conversations hear of it (and lose its messages, if asked) before its sessions end.
    let told = state
        .messenger
        .account_deleted(me.id, body.remove_messages)
        .await;
    state.accounts.sign_out(me.id, None).await?;
    told?;
    Ok((
        StatusCode::NO_CONTENT,
        session_cookies(&state, &headers, None),
    )
        .into_response())
}

fn invite_json(invite: Invite) -> Value {
    let state = InviteState::of(&invite, chrono::Utc::now());
    json!({
        "id": invite.id.to_string(),
        "code": invite.code,
        "link": format!("/#invite={}", invite.code),
        "createdBy": invite.created_by.to_string(),
        "createdAt": time(&invite.created_at),
        "expiresAt": time(&invite.expires_at),
        "maxUses": invite.max_uses,
        "uses": invite.uses,
        "revokedAt": invite.revoked_at.as_ref().map(time),
        "state": state.as_str(),
    })
}

#[utoipa::path(get, path = "/api/invites", tag = "auth", responses((status = 200, description = "Invite links, newest first", body = Vec<Object>), (status = 403, description = "Not allowed to invite")))]
async fn list_invites(
    State(state): State<ApiState>,
    me: AuthUser,
) -> Result<Json<Vec<Value>>, ApiError> {
    let invites = state.accounts.invites(me.id).await?;
    Ok(Json(invites.into_iter().map(invite_json).collect()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct NewInvite {
    #[serde(default = "default_hours")]
    expires_in_hours: f64,
    #[serde(default = "default_uses")]
    max_uses: i64,
}

fn default_hours() -> f64 {
    7.0 * 24.0
}

fn default_uses() -> i64 {
    1
}

#[utoipa::path(post, path = "/api/invites", tag = "auth", request_body = NewInvite, responses((status = 201, description = "The new invite link", body = Object), (status = 403, description = "Not allowed to invite"), (status = 422, description = "Bad expiry or uses")))]
async fn create_invite(
    State(state): State<ApiState>,
    me: AuthUser,
    AppJson(body): AppJson<NewInvite>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !body.expires_in_hours.is_finite() || body.expires_in_hours <= 0.0 {
        return Err(ApiError::unprocessable(
            "expiresInHours",
            "Must be a positive number of hours",
        ));
    }
    let seconds = (body.expires_in_hours * 3600.0).min(1e9) as i64;
    let invite = state
        .accounts
        .create_invite(me.id, chrono::TimeDelta::seconds(seconds), body.max_uses)
        .await?;
    Ok((StatusCode::CREATED, Json(invite_json(invite))))
}

#[utoipa::path(delete, path = "/api/invites/{id}", tag = "auth", params(("id" = String, Path, description = "Invite id")), responses((status = 204, description = "Revoked"), (status = 404, description = "No such invite of yours")))]
async fn revoke_invite(
    State(state): State<ApiState>,
    me: AuthUser,
    AppPath(id): AppPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = id
        .parse::<i64>()
        .map_err(|_| ApiError::NotFound("invite not found".into()))?;
    state.accounts.revoke_invite(me.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct CodeBody {
    #[serde(default)]
    code: String,
}

#[utoipa::path(post, path = "/api/invites/check", tag = "auth", security(()), request_body = CodeBody, responses((status = 200, description = "`{state, valid, message}`", body = Object), (status = 429, description = "Too many checks")))]
async fn check_invite(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<CodeBody>,
) -> Result<Json<Value>, ApiError> {
    let found = state.accounts.check_invite(&body.code, ip).await?;
    Ok(Json(json!({
        "state": found.as_str(),
        "valid": found == InviteState::Valid,
        "message": found.explain(),
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct UsernameBody {
    #[serde(default)]
    username: String,
}

/// A one-time link that sets the person's password, shown to the admin once.
#[utoipa::path(post, path = "/api/admin/password_links", tag = "auth", request_body = UsernameBody, responses((status = 201, description = "A one-time password link, shown once", body = Object), (status = 403, description = "Not a server admin"), (status = 404, description = "No such user")))]
async fn admin_password_link(
    State(state): State<ApiState>,
    me: AuthUser,
    AppJson(body): AppJson<UsernameBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let link = state
        .accounts
        .admin_password_link(me.id, &body.username)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "link": format!("/#reset={}", link.token),
            "token": link.token,
            "expiresAt": time(&link.expires_at),
        })),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ResetBody {
    #[serde(default)]
    token: String,
    #[serde(default)]
    new_password: String,
}

#[utoipa::path(post, path = "/api/password_reset", tag = "auth", security(()), request_body = ResetBody, responses((status = 204, description = "The password is set; every session ended"), (status = 422, description = "A spent, expired or unknown link, or a weak password"), (status = 429, description = "Too many attempts")))]
async fn reset_password(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<ResetBody>,
) -> Result<StatusCode, ApiError> {
    state
        .accounts
        .reset_password(&body.token, &body.new_password, ip)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct EmailBody {
    #[serde(default)]
    email: String,
}

#[utoipa::path(put, path = "/api/account/email", tag = "auth", request_body = EmailBody, responses((status = 204, description = "Saved (empty clears it)"), (status = 422, description = "Malformed or taken")))]
async fn set_email(
    State(state): State<ApiState>,
    me: AuthUser,
    AppJson(body): AppJson<EmailBody>,
) -> Result<StatusCode, ApiError> {
    state.accounts.set_email(me.id, &body.email).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Always the same answer, whether or not an account has the address.
#[utoipa::path(post, path = "/api/password_forgot", tag = "auth", security(()), request_body = EmailBody, responses((status = 202, description = "The same answer whether or not the account exists", body = Object), (status = 404, description = "Mail is not set up"), (status = 429, description = "Too many requests")))]
async fn forgot_password(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<EmailBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    state.accounts.forgot_password(&body.email, ip).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "message": "If an account has this address, a link to reset its password is on its way. It works once, within the hour."
        })),
    ))
}
