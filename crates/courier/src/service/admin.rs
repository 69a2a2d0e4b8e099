//! Admin: the server admin's use cases, one implementation behind two transports. The web
//! app's `/api/admin/…` routes call the typed methods; `courier admin …` sends an
//! `AdminRequest` either to a running server over its control socket or, when none holds the
//! database, runs it here in its own process. Either way `execute` is the one code path.
//!
//! Account-level effects reuse the accounts rules: a disabled or deleted account is signed out
//! everywhere through `Accounts::sign_out`, which publishes the revocation on the bus, so open
//! streams close on every node; reset links and invites are the accounts' own.
//!
//! Reports: anyone may report a message they can see (visibility is the store's `message`
//! check, so a message they cannot see is 404, not 403). At most one open report per person
//! and message (the store's unique index), and a per-person rate limit.
//!
//! A new report reaches the server admins' open streams as `event: report`, an *ephemeral*
//! signal like typing, not a log entry. The reports table is already the durable record, and
//! `/api/admin/reports` is how an admin who was offline (or whose stream broke) catches up:
//! the moderation page reads it on open and on every stream `reset`. The log, by contrast, is
//! ordered and filtered per conversation membership; a report belongs to no admin's
//! conversations, and putting it there would give every replay a kind of entry whose
//! visibility follows a server role instead of membership. The event carries exactly what a
//! row of the list carries (the reported message's text, nothing else of its conversation).

use super::{Accounts, Messenger, ServiceError, ServiceResult};
use crate::model::{
    ConversationId, Event, EventKind, Message, MessageId, ReportFiled, UserId, Username,
};
use crate::store::{AdminUser, Report, Store, StoreError};
use chrono::{TimeDelta, Utc};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::num::NonZeroU32;
use std::sync::Arc;

/// Longest report reason kept, in characters.
pub const MAX_REASON_CHARS: usize = 1000;
/// Most people one admin listing returns.
pub const MAX_LISTED: u32 = 200;

/// One `courier admin …` command, as it crosses the control socket (one JSON line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum AdminRequest {
    ListUsers {
        search: Option<String>,
    },
    Disable {
        username: String,
    },
    Enable {
        username: String,
    },
    SetAdmin {
        username: String,
        admin: bool,
    },
    DeleteUser {
        username: String,
        remove_content: bool,
    },
    ResetPassword {
        username: String,
    },
    ListSessions {
        username: String,
    },
    RevokeSessions {
        username: String,
        session: Option<String>,
    },
    CreateInvite {
        expires_in_hours: i64,
        max_uses: i64,
    },
    ListInvites,
    ExportUser {
        username: String,
    },
    ListReports {
        all: bool,
    },
    ResolveReport {
        id: i64,
    },
    DeleteMessage {
        conversation_id: i64,
        message_id: i64,
    },
    DeleteConversation {
        conversation_id: i64,
    },
}

/// Who acts: an admin signed in to the web app, or the operator at the machine (the control
/// socket's file permissions, or direct access to the database, are their credential).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    Operator,
}

pub struct Admin {
    store: Arc<dyn Store>,
    accounts: Arc<Accounts>,
    messenger: Arc<Messenger>,
    reports_per_person: DefaultKeyedRateLimiter<UserId>,
}

impl Admin {
    pub fn new(
        store: Arc<dyn Store>,
        accounts: Arc<Accounts>,
        messenger: Arc<Messenger>,
        reports_per_hour: NonZeroU32,
    ) -> Self {
        Self {
            store,
            accounts,
            messenger,
            reports_per_person: DefaultKeyedRateLimiter::keyed(Quota::per_hour(reports_per_hour)),
        }
    }

    /// Forbidden unless `actor` is the operator or a server admin whose account is usable.
    pub async fn require(&self, actor: Actor) -> ServiceResult<()> {
        let Actor::User(user) = actor else {
            return Ok(());
        };
        let found = self
            .store
            .admin_user(user)
            .await
            .map_err(not_found("user"))?;
        if found.is_admin && !found.deleted && found.disabled_at.is_none() {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(
                "Only the server's admin may do this",
            ))
        }
    }

    /// The acting user for records that need one (an invite's creator, a reset link's
    /// issuer): the signed-in admin, or for the operator the oldest usable admin.
    async fn acting_admin(&self, actor: Actor) -> ServiceResult<UserId> {
        self.require(actor).await?;
        if let Actor::User(user) = actor {
            return Ok(user);
        }
        let mut admins = self
            .store
            .admin_users(None, u32::MAX)
            .await
            .map_err(store)?;
        admins.retain(|u| u.is_admin && !u.deleted && u.disabled_at.is_none());
        admins.sort_by_key(|u| u.id);
        admins.first().map(|u| u.id).ok_or(ServiceError::Conflict(
            "No server admin exists yet; create one with `courier admin create-user --admin`"
                .into(),
        ))
    }

    pub async fn users(&self, actor: Actor, search: Option<&str>) -> ServiceResult<Vec<AdminUser>> {
        self.require(actor).await?;
        self.store
            .admin_users(search.map(str::trim), MAX_LISTED)
            .await
            .map_err(store)
    }

    pub async fn user(&self, actor: Actor, user: UserId) -> ServiceResult<AdminUser> {
        self.require(actor).await?;
        self.store.admin_user(user).await.map_err(not_found("user"))
    }

    pub async fn user_named(&self, actor: Actor, raw: &str) -> ServiceResult<AdminUser> {
        self.require(actor).await?;
        let username = Username::parse(raw).map_err(|_| ServiceError::NotFound("user"))?;
        let user = self
            .store
            .user_by_username(&username)
            .await
            .map_err(not_found("user"))?;
        self.store
            .admin_user(user.id)
            .await
            .map_err(not_found("user"))
    }

    /// Disables an account: it cannot sign in until enabled, and every session ends now, its
    /// streams closing on every node. An admin cannot disable themselves.
    #[tracing::instrument(skip_all, fields(user = %user))]
    pub async fn disable(&self, actor: Actor, user: UserId) -> ServiceResult<AdminUser> {
        self.require(actor).await?;
        if actor == Actor::User(user) {
            return Err(ServiceError::Conflict(
                "You cannot disable your own account".into(),
            ));
        }
        self.store
            .set_disabled(user, Some(Utc::now()))
            .await
            .map_err(not_found("user"))?;
        self.accounts.sign_out(user, None).await?;
        tracing::info!("account disabled");
        self.store.admin_user(user).await.map_err(not_found("user"))
    }

    pub async fn enable(&self, actor: Actor, user: UserId) -> ServiceResult<AdminUser> {
        self.require(actor).await?;
        self.store
            .set_disabled(user, None)
            .await
            .map_err(not_found("user"))?;
        tracing::info!(user = %user, "account enabled");
        self.store.admin_user(user).await.map_err(not_found("user"))
    }

    pub async fn set_admin(
        &self,
        actor: Actor,
        user: UserId,
        admin: bool,
    ) -> ServiceResult<AdminUser> {
        self.require(actor).await?;
        if !admin && actor == Actor::User(user) {
            return Err(ServiceError::Conflict(
                "You cannot revoke your own admin role".into(),
            ));
        }
        self.store
            .set_admin(user, admin)
            .await
            .map_err(not_found("user"))?;
        tracing::info!(user = %user, admin, "admin role changed");
        self.store.admin_user(user).await.map_err(not_found("user"))
    }

    /// Reports a message `reporter` can see; returns the report's id.
    #[tracing::instrument(skip_all, fields(user = %reporter))]
    pub async fn report(
        &self,
        reporter: UserId,
        conversation: ConversationId,
        message: MessageId,
        reason: Option<&str>,
    ) -> ServiceResult<i64> {
        let reason = reason.unwrap_or_default().trim();
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(ServiceError::Invalid {
                field: "reason",
                message: format!("at most {MAX_REASON_CHARS} characters"),
            });
        }
        let reported = self
            .store
            .message(reporter, conversation, message)
            .await
            .map_err(not_found("message"))?;
        self.reports_per_person.check_key(&reporter).map_err(|_| {
            ServiceError::TooManyRequests("Too many reports; wait a while and try again")
        })?;
        let id = match self
            .store
            .create_report(reporter, conversation, message, reason, Utc::now())
            .await
        {
            Ok(id) => id,
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::Conflict(
                    "You have already reported this message".into(),
                ));
            }
            Err(e) => return Err(store(e)),
        };
        self.reports_per_person.retain_recent();
        tracing::info!(report = id, "message reported");
        self.tell_admins(id, reporter, &reported, reason).await;
        Ok(id)
    }

    /// Rings the server admins' open streams with the new report (an ephemeral `report`
    /// event). Best effort: the report is already stored, and the list is the record.
    async fn tell_admins(&self, id: i64, reporter: UserId, message: &Message, reason: &str) {
        let found = async {
            let admins = self.store.admin_users(None, u32::MAX).await?;
            let reporter = self.store.user(reporter).await?;
            let sender = self.store.user(message.sender_id).await?;
            Ok::<_, StoreError>((admins, reporter, sender))
        };
        let (admins, reporter, sender) = match found.await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "report not announced to the admins");
                return;
            }
        };
        let to = admins
            .iter()
            .filter(|u| u.is_admin && !u.deleted && u.disabled_at.is_none())
            .map(|u| u.id);
        let filed = ReportFiled {
            id,
            reporter: reporter.username,
            conversation_id: message.conversation_id,
            message_id: message.id,
            sender: sender.id,
            sender_name: sender.username,
            content: message.content.clone(),
            reason: reason.to_owned(),
            created_at: Utc::now(),
        };
        let event = Arc::new(Event::signal(EventKind::Report(filed), to));
        if let Err(e) = self.messenger.bus.publish(event).await {
            tracing::warn!(error = %e, "report not announced to the admins");
        }
    }

    pub async fn reports(&self, actor: Actor, all: bool) -> ServiceResult<Vec<Report>> {
        self.require(actor).await?;
        self.store.reports(!all, MAX_LISTED).await.map_err(store)
    }

    pub async fn resolve_report(&self, actor: Actor, id: i64) -> ServiceResult<()> {
        let by = self.acting_admin(actor).await?;
        self.store
            .resolve_report(id, by, Utc::now())
            .await
            .map_err(not_found("report"))
    }

    /// Deletes a message. The operator may delete any message (acting, in the log, as the
    /// oldest server admin); a signed-in admin only as a member may (`Messenger::delete_message`).
    #[tracing::instrument(skip_all, fields(conversation = %conversation, message = %message))]
    pub async fn delete_message(
        &self,
        actor: Actor,
        conversation: ConversationId,
        message: MessageId,
    ) -> ServiceResult<()> {
        match actor {
            Actor::User(me) => {
                self.messenger
                    .delete_message(me, conversation, message)
                    .await
            }
            Actor::Operator => {
                let by = self.acting_admin(actor).await?;
                self.messenger
                    .delete_message_as_operator(by, conversation, message)
                    .await?;
                tracing::info!("message deleted by the operator");
                Ok(())
            }
        }
    }

    /// Deletes a conversation (the operator only): see `Messenger::delete_conversation_as_operator`.
    /// Answers how many members were removed.
    #[tracing::instrument(skip_all, fields(conversation = %conversation))]
    pub async fn delete_conversation(
        &self,
        actor: Actor,
        conversation: ConversationId,
    ) -> ServiceResult<usize> {
        if actor != Actor::Operator {
            return Err(ServiceError::Forbidden(
                "Only the operator (courier admin) may delete a conversation",
            ));
        }
        let by = self.acting_admin(actor).await?;
        let removed = self
            .messenger
            .delete_conversation_as_operator(by, conversation)
            .await?;
        tracing::info!(removed, "conversation deleted by the operator");
        Ok(removed)
    }

    /// Runs one CLI command; the result is what the CLI prints (as JSON).
    pub async fn execute(&self, actor: Actor, request: AdminRequest) -> ServiceResult<Value> {
        use AdminRequest as R;
        Ok(match request {
            R::ListUsers { search } => {
                let users = self.users(actor, search.as_deref()).await?;
                Value::Array(users.iter().map(user_json).collect())
            }
            R::Disable { username } => {
                let user = self.user_named(actor, &username).await?;
                user_json(&self.disable(actor, user.id).await?)
            }
            R::Enable { username } => {
                let user = self.user_named(actor, &username).await?;
                user_json(&self.enable(actor, user.id).await?)
            }
            R::SetAdmin { username, admin } => {
                let user = self.user_named(actor, &username).await?;
                user_json(&self.set_admin(actor, user.id, admin).await?)
            }
            R::DeleteUser {
                username,
                remove_content,
            } => {
                let user = self.user_named(actor, &username).await?;
                self.store
                    .delete_account(user.id, remove_content, Utc::now())
                    .await
                    .map_err(not_found("user"))?;
                self.accounts.sign_out(user.id, None).await?;
                tracing::info!(user = %user.id, remove_content, "account deleted by the admin");
                json!({ "deleted": user.username })
            }
            R::ResetPassword { username } => {
                let admin = self.acting_admin(actor).await?;
                let link = self.accounts.admin_password_link(admin, &username).await?;
                json!({
                    "username": username,
                    "link": format!("/#reset={}", link.token),
                    "expiresAt": link.expires_at,
                })
            }
            R::ListSessions { username } => {
                let user = self.user_named(actor, &username).await?;
                let sessions = self.accounts.sessions(user.id).await?;
                Value::Array(
                    sessions
                        .iter()
                        .map(|s| {
                            json!({
                                "id": s.id, "device": s.device, "createdAt": s.created_at,
                                "lastSeenAt": s.last_seen_at, "expiresAt": s.expires_at,
                            })
                        })
                        .collect(),
                )
            }
            R::RevokeSessions { username, session } => {
                let user = self.user_named(actor, &username).await?;
                let revoked = self.accounts.sign_out(user.id, session.as_deref()).await?;
                json!({ "revoked": revoked })
            }
            R::CreateInvite {
                expires_in_hours,
                max_uses,
            } => {
                let admin = self.acting_admin(actor).await?;
                let invite = self
                    .accounts
                    .create_invite(admin, TimeDelta::hours(expires_in_hours), max_uses)
                    .await?;
                invite_json(&invite)
            }
            R::ListInvites => {
                let admin = self.acting_admin(actor).await?;
                let invites = self.accounts.invites(admin).await?;
                Value::Array(invites.iter().map(invite_json).collect())
            }
            R::ExportUser { username } => self.export(actor, &username).await?,
            R::ListReports { all } => {
                let reports = self.reports(actor, all).await?;
                Value::Array(reports.iter().map(report_json).collect())
            }
            R::ResolveReport { id } => {
                self.resolve_report(actor, id).await?;
                json!({ "resolved": id })
            }
            R::DeleteMessage {
                conversation_id,
                message_id,
            } => {
                let (conversation, message) =
                    (ConversationId(conversation_id), MessageId(message_id));
                self.delete_message(actor, conversation, message).await?;
                json!({ "conversationId": conversation_id, "deletedMessage": message_id })
            }
            R::DeleteConversation { conversation_id } => {
                let removed = self
                    .delete_conversation(actor, ConversationId(conversation_id))
                    .await?;
                json!({ "deletedConversation": conversation_id, "membersRemoved": removed })
            }
        })
    }
}

impl Admin {
    /// One person's data as a data-protection request asks for it: profile, sessions (metadata,
    /// never tokens), memberships, the messages they sent, their reactions and settings.
    pub async fn export(&self, actor: Actor, raw: &str) -> ServiceResult<Value> {
        let person = self.user_named(actor, raw).await?;
        let user = self
            .store
            .user(person.id)
            .await
            .map_err(not_found("user"))?;
        let sessions = self.accounts.sessions(person.id).await?;
        let rows = self.store.export_rows(person.id).await.map_err(store)?;
        let read_receipts = self.store.read_receipts(person.id).await.map_err(store)?;
        let ms = |t: i64| chrono::DateTime::from_timestamp_millis(t);
        Ok(json!({
            "exportedAt": Utc::now(),
            "profile": {
                "id": person.id.0, "username": person.username, "avatarUrl": user.avatar_url,
                "displayName": user.display_name,
                "createdAt": person.created_at, "isAdmin": person.is_admin,
                "deleted": person.deleted, "disabledAt": person.disabled_at,
            },
            "settings": { "readReceipts": read_receipts },
            "sessions": sessions.iter().map(|s| json!({
                "device": s.device, "createdAt": s.created_at,
                "lastSeenAt": s.last_seen_at, "expiresAt": s.expires_at,
            })).collect::<Vec<_>>(),
            "memberships": rows.memberships.iter().map(|(c, kind, title, role)| json!({
                "conversationId": c, "kind": kind, "title": title, "role": role,
            })).collect::<Vec<_>>(),
            "messages": rows.messages.iter().map(|(c, id, content, at, edited, deleted)| json!({
                "conversationId": c, "id": id, "content": content, "createdAt": ms(*at),
                "editedAt": edited.and_then(ms), "deletedAt": deleted.and_then(ms),
            })).collect::<Vec<_>>(),
            "reactions": rows.reactions.iter().map(|(m, emoji, at)| json!({
                "messageId": m, "emoji": emoji, "createdAt": ms(*at),
            })).collect::<Vec<_>>(),
        }))
    }
}

fn user_json(user: &AdminUser) -> Value {
    json!({
        "id": user.id.0, "username": user.username, "createdAt": user.created_at,
        "isAdmin": user.is_admin, "deleted": user.deleted, "disabledAt": user.disabled_at,
    })
}

fn invite_json(invite: &crate::store::Invite) -> Value {
    json!({
        "id": invite.id, "code": invite.code, "link": format!("/#invite={}", invite.code),
        "createdAt": invite.created_at, "expiresAt": invite.expires_at,
        "maxUses": invite.max_uses, "uses": invite.uses, "revokedAt": invite.revoked_at,
    })
}

fn report_json(report: &Report) -> Value {
    json!({
        "id": report.id, "reporter": report.reporter_name,
        "conversationId": report.conversation.0, "messageId": report.message.0,
        "sender": report.sender_name, "content": report.content, "reason": report.reason,
        "createdAt": report.created_at, "resolvedAt": report.resolved_at,
    })
}

fn not_found(what: &'static str) -> impl Fn(StoreError) -> ServiceError + Copy {
    ServiceError::from_store(what)
}

fn store(e: StoreError) -> ServiceError {
    ServiceError::from_store("record")(e)
}
