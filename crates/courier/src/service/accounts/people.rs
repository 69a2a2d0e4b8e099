//! People and their accounts beyond signing in: first-run setup (the first account with a
//! credential becomes the server admin), invite links made in the app, password change and
//! one-time reset links, and deleting one's account.
//!
//! Race safety lives in the store: setup and invite uses are decided inside the account's
//! transaction (a one-row table's primary key, a conditional `UPDATE … uses < max_uses`), never
//! by a check here followed by a write.
//!
//! One-time tokens (invite codes, reset links) are 128 random bits; a reset token is kept only
//! as its SHA-256, and the links carry tokens in the URL fragment, which browsers never send,
//! so no server or proxy log sees them.

use super::{Accounts, SignedIn, Signup, parse_username};
use crate::model::{Password, Session, User, UserId};
use crate::service::{ServiceError, ServiceResult};
use crate::store::{AccountFlags, Admission, Invite, NewCredential, StoreError};
use chrono::{DateTime, TimeDelta, Utc};
use sha2::Digest;
use std::net::IpAddr;

/// How long after signing in a passwordless person may delete their account without signing in again.
pub const FRESH_SIGN_IN: TimeDelta = TimeDelta::minutes(10);

/// An invite as the person checking it sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteState {
    Valid,
    Spent,
    Expired,
    Revoked,
    Unknown,
}

impl InviteState {
    pub fn of(invite: &Invite, now: DateTime<Utc>) -> Self {
        if invite.revoked_at.is_some() {
            Self::Revoked
        } else if invite.expires_at <= now {
            Self::Expired
        } else if invite.uses >= invite.max_uses {
            Self::Spent
        } else {
            Self::Valid
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Spent => "spent",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Unknown => "unknown",
        }
    }

    pub fn explain(self) -> &'static str {
        match self {
            Self::Valid => "This invite is valid",
            Self::Spent => {
                "This invite link has been used as many times as it allows; ask for a new one"
            }
            Self::Expired => "This invite link has expired; ask for a new one",
            Self::Revoked => "This invite link was revoked; ask for a new one",
            Self::Unknown => "This invite code is not valid; check the link or ask for a new one",
        }
    }
}

/// A one-time password link, shown once.
#[derive(Debug, Clone)]
pub struct PasswordLink {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// 128 random bits, hex.
fn one_time_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.trim().as_bytes()))
}

impl Accounts {
    /// Adds a provider identity to a live account (a password account linking GitHub or an
    /// OpenID provider): afterwards either signs it in. 422 `errors.identity` when that
    /// identity already belongs to an account.
    pub async fn link_identity(
        &self,
        user: UserId,
        provider: &str,
        subject: &str,
    ) -> ServiceResult<()> {
        let flags = self.flags(user).await?;
        if flags.deleted {
            return Err(ServiceError::NotFound("user"));
        }
        self.store
            .link_identity(user, provider, subject, Utc::now())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ServiceError::invalid(
                    "identity",
                    "that sign-in is already linked to an account",
                ),
                e => ServiceError::from_store("user")(e),
            })?;
        tracing::info!(provider, "provider linked to an account");
        Ok(())
    }

    /// The providers (ids) the account can sign in with.
    pub async fn linked_providers(&self, user: UserId) -> ServiceResult<Vec<String>> {
        self.store
            .linked_providers(user)
            .await
            .map_err(ServiceError::from_store("user"))
    }

    /// Frees the usernames of accounts deleted longer than `--username-reservation` ago;
    /// run before an account is made, so the period holds to the moment.
    pub(crate) async fn release_usernames(&self) -> ServiceResult<()> {
        let before = Utc::now()
            .checked_sub_signed(self.settings.username_reservation)
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        self.store
            .release_usernames(before)
            .await
            .map_err(ServiceError::from_store("user"))
    }

    /// Whether the server still waits for its first account.
    pub async fn setup_needed(&self) -> ServiceResult<bool> {
        let done = self
            .store
            .setup_done()
            .await
            .map_err(ServiceError::from_store("setup"))?;
        Ok(!done && self.settings.passwords)
    }

    /// First-run setup: the first account, made the admin. Whoever loses a race, or comes
    /// later, gets a conflict and nothing is written.
    #[tracing::instrument(skip_all)]
    pub async fn setup(
        &self,
        raw_username: &str,
        raw_password: &str,
        device: &str,
        ip: IpAddr,
    ) -> ServiceResult<SignedIn> {
        if !self.settings.passwords {
            return Err(ServiceError::NotFound("setup"));
        }
        self.limit(None, ip)?;
        if !self.setup_needed().await? {
            return Err(setup_done());
        }
        let username = parse_username(raw_username)?;
        let password = Password::parse(
            raw_password,
            self.settings.password_min_len,
            username.as_str(),
        )
        .map_err(|e| ServiceError::invalid("password", e))?;
        let hash = self.hashing.hash(password).await?;
        let user = self
            .store
            .create_account_as(
                &username,
                None,
                NewCredential::Password { hash },
                Admission::Setup,
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict("setup") => setup_done(),
                e => ServiceError::from_store("user")(e),
            })?;
        tracing::info!(user = %user.id, "first-run setup done: the server has its admin");
        self.open_session(user, device).await
    }

    /// An account made outside the web app (`courier admin create-user`): no invite needed,
    /// an admin when `admin` (or when it is the first account with a credential).
    pub async fn create_user(
        &self,
        raw_username: &str,
        raw_password: &str,
        admin: bool,
    ) -> ServiceResult<User> {
        let username = parse_username(raw_username)?;
        let password = Password::parse(
            raw_password,
            self.settings.password_min_len,
            username.as_str(),
        )
        .map_err(|e| ServiceError::invalid("password", e))?;
        let hash = self.hashing.hash(password).await?;
        let admission = if admin {
            Admission::Admin
        } else {
            Admission::Open
        };
        self.release_usernames().await?;
        self.store
            .create_account_as(&username, None, NewCredential::Password { hash }, admission)
            .await
            .map_err(ServiceError::from_store("user"))
    }

    /// The admission for a sign-up's invite: a `--invite-codes` code, else an invite link.
    pub(super) fn admission<'a>(&self, invite: Option<&'a str>) -> ServiceResult<Admission<'a>> {
        match &self.settings.signup {
            Signup::Open => Ok(Admission::Open),
            Signup::Closed => Err(ServiceError::Forbidden(
                "Sign-up is closed: ask the server's admin for an account",
            )),
            Signup::Invite(codes) => match invite.map(str::trim).filter(|c| !c.is_empty()) {
                Some(code) if codes.contains(code) => Ok(Admission::Code(code)),
                Some(code) => Ok(Admission::Link(code)),
                None => Err(ServiceError::invalid(
                    "invite",
                    "A valid invite code is required",
                )),
            },
        }
    }

    /// Why an invite link could not be used, for a sign-up that lost it.
    pub(super) async fn invite_refusal(&self, code: &str) -> ServiceError {
        let state = self.invite_state(code).await;
        ServiceError::invalid("invite", state.explain())
    }

    async fn invite_state(&self, code: &str) -> InviteState {
        match self.store.invite(code.trim()).await {
            Ok(invite) => InviteState::of(&invite, Utc::now()),
            Err(_) => InviteState::Unknown,
        }
    }

    /// Whether an invite code can be used, and why not; rate-limited like sign-in attempts.
    pub async fn check_invite(&self, code: &str, ip: IpAddr) -> ServiceResult<InviteState> {
        self.limit(None, ip)?;
        if let Signup::Invite(codes) = &self.settings.signup
            && codes.contains(code.trim())
        {
            return Ok(InviteState::Valid);
        }
        Ok(self.invite_state(code).await)
    }

    pub async fn flags(&self, user: UserId) -> ServiceResult<AccountFlags> {
        self.store
            .account_flags(user)
            .await
            .map_err(ServiceError::from_store("user"))
    }

    async fn require_admin(&self, user: UserId) -> ServiceResult<()> {
        if self.flags(user).await?.is_admin {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(
                "Only the server's admin may do this",
            ))
        }
    }

    /// Whether `user` may make invite links: the admin, and members when the admin allows it.
    pub async fn may_invite(&self, user: UserId) -> ServiceResult<bool> {
        Ok(self.settings.members_can_invite || self.flags(user).await?.is_admin)
    }

    pub async fn create_invite(
        &self,
        user: UserId,
        expires_in: TimeDelta,
        max_uses: i64,
    ) -> ServiceResult<Invite> {
        if !self.may_invite(user).await? {
            return Err(ServiceError::Forbidden(
                "Only the server's admin may create invite links",
            ));
        }
        if expires_in < TimeDelta::seconds(1) || expires_in > self.settings.invite_max_lifetime {
            return Err(ServiceError::invalid(
                "expiresInHours",
                format!(
                    "Must be between one second and {} hours",
                    self.settings.invite_max_lifetime.num_hours()
                ),
            ));
        }
        if !(1..=self.settings.invite_max_uses).contains(&max_uses) {
            return Err(ServiceError::invalid(
                "maxUses",
                format!("Must be between 1 and {}", self.settings.invite_max_uses),
            ));
        }
        self.store
            .create_invite(user, &one_time_token(), Utc::now() + expires_in, max_uses)
            .await
            .map_err(ServiceError::from_store("invite"))
    }

    /// The admin sees every invite; others see their own.
    pub async fn invites(&self, user: UserId) -> ServiceResult<Vec<Invite>> {
        let admin = self.flags(user).await?.is_admin;
        if !admin && !self.settings.members_can_invite {
            return Err(ServiceError::Forbidden(
                "Only the server's admin may see invite links",
            ));
        }
        self.store
            .invites((!admin).then_some(user))
            .await
            .map_err(ServiceError::from_store("invite"))
    }

    pub async fn revoke_invite(&self, user: UserId, id: i64) -> ServiceResult<()> {
        let admin = self.flags(user).await?.is_admin;
        self.store
            .revoke_invite(id, (!admin).then_some(user), Utc::now())
            .await
            .map_err(ServiceError::from_store("invite"))
    }

    /// Changes the password after checking the current one; rate-limited like sign-in.
    /// Returns how many other sessions were signed out.
    #[tracing::instrument(skip_all, fields(user = %user))]
    pub async fn change_password(
        &self,
        user: UserId,
        session: &str,
        current: &str,
        new: &str,
        sign_out_others: bool,
        ip: IpAddr,
    ) -> ServiceResult<usize> {
        let me = self
            .store
            .user(user)
            .await
            .map_err(ServiceError::from_store("user"))?;
        let username = parse_username(&me.username)?;
        self.limit(Some(&username), ip)?;
        let hash = self
            .store
            .password_hash_of(user)
            .await
            .map_err(ServiceError::from_store("user"))?;
        // Without a hash, a provider account adds its first password: the session proves who it is.
        if let Some(hash) = hash
            && !self.hashing.verify(current.to_owned(), hash).await?
        {
            return Err(ServiceError::invalid(
                "currentPassword",
                "The current password is wrong",
            ));
        }
        let password = Password::parse(new, self.settings.password_min_len, &me.username)
            .map_err(|e| ServiceError::invalid("newPassword", e))?;
        let hash = self.hashing.hash(password).await?;
        self.store
            .set_password(user, &hash)
            .await
            .map_err(ServiceError::from_store("user"))?;
        if sign_out_others {
            return self.sign_out_others(user, session).await;
        }
        Ok(0)
    }

    async fn sign_out_others(&self, user: UserId, keep: &str) -> ServiceResult<usize> {
        let sessions = self.sessions(user).await?;
        let mut count = 0;
        for session in sessions.iter().filter(|s| s.id != keep) {
            count += self.sign_out(user, Some(&session.id)).await?;
        }
        Ok(count)
    }

    /// The admin makes a one-time link that sets `username`'s password; shown once.
    pub async fn admin_password_link(
        &self,
        admin: UserId,
        raw_username: &str,
    ) -> ServiceResult<PasswordLink> {
        self.require_admin(admin).await?;
        let username = parse_username(raw_username)?;
        let user = self
            .store
            .user_by_username(&username)
            .await
            .map_err(ServiceError::from_store("user"))?;
        if self.flags(user.id).await?.deleted {
            return Err(ServiceError::NotFound("user"));
        }
        self.password_link(user.id).await
    }

    pub(super) async fn password_link(&self, user: UserId) -> ServiceResult<PasswordLink> {
        let token = one_time_token();
        let expires_at = Utc::now() + self.settings.password_link_lifetime;
        self.store
            .create_password_link(user, &token_hash(&token), expires_at)
            .await
            .map_err(ServiceError::from_store("password link"))?;
        Ok(PasswordLink { token, expires_at })
    }

    /// Spends a one-time link: sets the password and signs out every session of the account.
    #[tracing::instrument(skip_all)]
    pub async fn reset_password(&self, token: &str, new: &str, ip: IpAddr) -> ServiceResult<()> {
        self.limit(None, ip)?;
        let gone = || {
            ServiceError::invalid(
                "token",
                "This link was already used or has expired; ask for a new one",
            )
        };
        // The password is checked before the link is spent, so a weak one costs nothing.
        let password = Password::parse(new, self.settings.password_min_len, "")
            .map_err(|e| ServiceError::invalid("newPassword", e))?;
        let hash = self.hashing.hash(password).await?;
        let user = match self
            .store
            .spend_password_link(&token_hash(token), &hash, Utc::now())
            .await
        {
            Ok(user) => user,
            Err(StoreError::NotFound) => return Err(gone()),
            Err(e) => return Err(ServiceError::from_store("password link")(e)),
        };
        self.sign_out(user, None).await?;
        Ok(())
    }

    /// Turns on "forgot password" mail (set once, when the public address is known).
    pub fn set_mailer(&self, mailer: crate::service::Mailer) {
        let _ = self.mailer.set(std::sync::Arc::new(mailer));
    }

    pub fn mail_enabled(&self) -> bool {
        self.mailer.get().is_some()
    }

    pub async fn email(&self, user: UserId) -> ServiceResult<Option<String>> {
        self.store
            .email_of(user)
            .await
            .map_err(ServiceError::from_store("user"))
    }

    /// Sets (or, with an empty one, clears) where "forgot password" mail goes.
    pub async fn set_email(&self, user: UserId, raw: &str) -> ServiceResult<()> {
        let email = raw.trim().to_lowercase();
        let email = if email.is_empty() {
            None
        } else {
            let (local, domain) = email.split_once('@').unwrap_or_default();
            let valid = email.len() <= 254
                && !local.is_empty()
                && domain.contains('.')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
                && email.parse::<lettre::Address>().is_ok();
            if !valid {
                return Err(ServiceError::invalid(
                    "email",
                    "Enter an email address like name@example.org",
                ));
            }
            Some(email)
        };
        self.store
            .set_email(user, email.as_deref())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    ServiceError::invalid("email", "Another account uses this address")
                }
                e => ServiceError::from_store("user")(e),
            })
    }

    /// "Forgot password": mails a one-time link to the account with this address, if any. The
    /// answer (and its timing: the mail goes out in the background) is the same either way.
    #[tracing::instrument(skip_all)]
    pub async fn forgot_password(&self, raw_email: &str, ip: IpAddr) -> ServiceResult<()> {
        let Some(mailer) = self.mailer.get().cloned() else {
            return Err(ServiceError::NotFound("password reset by email"));
        };
        self.limit(None, ip)?;
        let email = raw_email.trim().to_lowercase();
        let found = self
            .store
            .user_by_email(&email)
            .await
            .map_err(ServiceError::from_store("user"))?;
        if let Some((user, username)) = found {
            let link = self.password_link(user).await?;
            tokio::spawn(async move {
                if let Err(e) = mailer.send_reset_link(&email, &username, &link.token).await {
                    tracing::warn!(error = %e, "could not send a password reset mail");
                }
            });
        }
        Ok(())
    }

    /// Deletes the account after confirming with the password, or, without one, a sign-in in
    /// the last `FRESH_SIGN_IN`. The row stays so the username stays reserved and messages keep
    /// their sender ("deleted account"). The caller ends the sessions (see the end).
    #[tracing::instrument(skip_all, fields(user = %user))]
    pub async fn delete_account(
        &self,
        user: UserId,
        session: &str,
        password: Option<&str>,
        remove_content: bool,
        ip: IpAddr,
    ) -> ServiceResult<()> {
        let me = self
            .store
            .user(user)
            .await
            .map_err(ServiceError::from_store("user"))?;
        self.limit(parse_username(&me.username).ok().as_ref(), ip)?;
        match self
            .store
            .password_hash_of(user)
            .await
            .map_err(ServiceError::from_store("user"))?
        {
            Some(hash) => {
                let given = password.unwrap_or_default().to_owned();
                if !self.hashing.verify(given, hash).await? {
                    return Err(ServiceError::invalid("password", "The password is wrong"));
                }
            }
            None => {
                let fresh = self
                    .sessions(user)
                    .await?
                    .into_iter()
                    .find(|s: &Session| s.id == session)
                    .is_some_and(|s| Utc::now() - s.created_at < FRESH_SIGN_IN);
                if !fresh {
                    return Err(ServiceError::Forbidden(
                        "Sign in again, then delete your account within ten minutes",
                    ));
                }
            }
        }
        // The messages go afterwards, one ordinary delete each (`Messenger::account_deleted`),
        // so open apps hear of them and search forgets them.
        self.store
            .delete_account(user, false, Utc::now())
            .await
            .map_err(ServiceError::from_store("user"))?;
        tracing::info!(remove_content, "account deleted");
        // The caller tells the account's conversations, then ends its sessions
        // (`sign_out(user, None)`), so the answer and `signed-out` still arrive together.
        Ok(())
    }
}

fn setup_done() -> ServiceError {
    ServiceError::Conflict("This server is already set up; sign in instead".into())
}
