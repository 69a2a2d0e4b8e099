//! Accounts: sign-up and sign-in (dev, password, external identity), revocable sessions,
//! and the rate limits that guard password attempts.
//!
//! A token alone is not enough: every request also finds the token's session active in the
//! store, so signing out (one device or everywhere) ends that token at once.

use super::{ServiceError, ServiceResult, Tokens};
use crate::bus::Bus;
use crate::model::{Event, Password, Session, User, UserId, Username, limit_key};
use crate::store::{NewCredential, Store, StoreError};
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Utc};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod people;
pub use people::{FRESH_SIGN_IN, InviteState, PasswordLink};

/// `last_seen` is written at most this often per session, so reads stay reads.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);
/// Session touches are written at most this often, all in one statement, off the request:
/// thousands of sessions signed in together come due together, and one write each would
/// queue on the database (SQLite's one writer) beside the sends.
const WRITE_TOUCHES: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a session found active is trusted without asking the store again. A revocation
/// evicts it at once on every node (the bus carries it, see `watch_revocations`), and a bus
/// that may have lost one moves its generation, which ends all trust; so this only bounds
/// staleness after a revocation whose publish failed (logged by the node that revoked).
/// Long enough to cover a client's reconnects: each stream connect asked the store before.
const SESSION_TRUST: std::time::Duration = std::time::Duration::from_secs(10);
/// The same where the bus cannot carry revocations (`Bus::on_revocation` says no).
const SESSION_TRUST_UNHEARD: std::time::Duration = std::time::Duration::from_secs(1);
/// A session found active: its user, its expiry, when the store said so, and the bus
/// generation then.
type Trusted = (UserId, DateTime<Utc>, std::time::Instant, u64);
/// Above this many cached sessions, stale entries are swept on insert.
const SESSION_CACHE_SWEEP: usize = 50_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signup {
    Open,
    /// Each listed code admits one new account.
    Invite(HashSet<String>),
    Closed,
}

#[derive(Debug, Clone)]
pub struct AccountSettings {
    /// Password sign-up and sign-in; `false` turns both off.
    pub passwords: bool,
    pub password_min_len: usize,
    pub signup: Signup,
    /// Password attempts allowed per minute, per account and per client address.
    pub attempts_per_account: NonZeroU32,
    pub attempts_per_ip: NonZeroU32,
    /// Sessions kept per person; a new one evicts the least recently used beyond this.
    pub max_sessions: std::num::NonZeroUsize,
    /// Dev logins allowed per minute per client address; `None`: no limit.
    pub dev_logins_per_ip: Option<NonZeroU32>,
    /// Password hashes computed at once (each holds 19 MiB while it runs); at least 1.
    pub hash_concurrency: usize,
    /// Members, not only the admin, may create invite links.
    pub members_can_invite: bool,
    /// Longest lifetime and most uses of an invite link.
    pub invite_max_lifetime: chrono::TimeDelta,
    pub invite_max_uses: i64,
    /// How long a one-time password link stays usable.
    pub password_link_lifetime: chrono::TimeDelta,
    /// How long a deleted account's username stays reserved.
    pub username_reservation: chrono::TimeDelta,
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user: UserId,
    pub session: String,
}

/// A fresh session and its token.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: User,
    pub session: String,
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

pub struct Accounts {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    tokens: Tokens,
    settings: AccountSettings,
    per_account: DefaultKeyedRateLimiter<String>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    dev_per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    checks: AtomicU64,
    hashing: Hashing,
    /// Sessions recently found active: id → (user, expiry, when checked, bus generation).
    trusted: std::sync::Mutex<HashMap<String, Trusted>>,
    /// How long `trusted` holds: `SESSION_TRUST` once revocations are heard on the bus.
    trust_for: AtomicU64,
    /// Revocations seen here so far (moved under `trusted`'s lock): a session read before
    /// one and trusted after it could be one it revoked.
    revocations: AtomicU64,
    /// Sessions seen active and due a touch, not yet written (see `write_touches`).
    touched: std::sync::Mutex<HashMap<String, DateTime<Utc>>>,
    /// Verified against when the account does not exist, so timing tells nothing.
    dummy_hash: tokio::sync::OnceCell<String>,
    /// "Forgot password" mail, when `--smtp-url` is set (see `set_mailer`).
    mailer: std::sync::OnceLock<Arc<crate::service::Mailer>>,
}

impl Accounts {
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        tokens: Tokens,
        settings: AccountSettings,
    ) -> Self {
        Self {
            per_account: DefaultKeyedRateLimiter::keyed(Quota::per_minute(
                settings.attempts_per_account,
            )),
            per_ip: DefaultKeyedRateLimiter::keyed(Quota::per_minute(settings.attempts_per_ip)),
            dev_per_ip: settings
                .dev_logins_per_ip
                .map(|n| DefaultKeyedRateLimiter::keyed(Quota::per_minute(n))),
            hashing: Hashing::new(settings.hash_concurrency),
            store,
            bus,
            tokens,
            settings,
            checks: AtomicU64::new(0),
            trusted: Default::default(),
            trust_for: AtomicU64::new(SESSION_TRUST_UNHEARD.as_millis() as u64),
            revocations: AtomicU64::new(0),
            touched: Default::default(),
            dummy_hash: tokio::sync::OnceCell::new(),
            mailer: std::sync::OnceLock::new(),
        }
    }

    /// Writes the session activity `authenticate` recorded, every `WRITE_TOUCHES` and once
    /// more at `shutdown`. Runs until then or until `self` is dropped.
    pub fn write_touches(self: &Arc<Self>, shutdown: CancellationToken, tasks: &TaskTracker) {
        let accounts = Arc::downgrade(self);
        tasks.spawn(async move {
            let mut every = tokio::time::interval(WRITE_TOUCHES);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let last = tokio::select! {
                    _ = shutdown.cancelled() => true,
                    _ = every.tick() => false,
                };
                let Some(accounts) = accounts.upgrade() else {
                    break;
                };
                let due: Vec<(String, DateTime<Utc>)> = {
                    let mut touched = accounts.touched.lock().unwrap_or_else(|e| e.into_inner());
                    touched.drain().collect()
                };
                // In chunks: one statement of thousands of rows would hold SQLite's writer
                // (and the sends queued behind it) for milliseconds.
                for chunk in due.chunks(crate::store::TOUCH_CHUNK) {
                    if let Err(e) = accounts.store.touch_sessions(chunk).await {
                        tracing::warn!(error = %e, sessions = chunk.len(), "could not record session activity");
                    }
                }
                if last {
                    break;
                }
            }
        });
    }

    /// Keeps the session cache honest across nodes: a revocation heard on the bus (from any
    /// node) evicts those sessions here before any stream of theirs hears `signed-out`.
    pub fn watch_revocations(self: &Arc<Self>) {
        let accounts = Arc::downgrade(self);
        let heard = self.bus.on_revocation(Box::new(move |sessions| {
            let Some(accounts) = accounts.upgrade() else {
                return;
            };
            accounts.forget(sessions);
        }));
        if heard {
            self.trust_for
                .store(SESSION_TRUST.as_millis() as u64, Ordering::Relaxed);
        }
    }

    pub fn settings(&self) -> &AccountSettings {
        &self.settings
    }

    /// The CSRF token bound to `session` (see `Tokens::csrf_token`).
    pub fn csrf_token(&self, session: &str) -> String {
        self.tokens.csrf_token(session)
    }

    pub fn verify_csrf(&self, session: &str, sent: &str) -> bool {
        self.tokens.verify_csrf(session, sent)
    }

    /// Development sign-in: the username alone, created on first use. Never into an account
    /// that signs in with a password or a provider: those are real people's.
    #[tracing::instrument(skip_all)]
    pub async fn dev_login(
        &self,
        raw_username: &str,
        device: &str,
        ip: IpAddr,
    ) -> ServiceResult<SignedIn> {
        if let Some(limiter) = &self.dev_per_ip {
            self.sweep_limiters();
            limiter
                .check_key(&limit_key(ip))
                .map_err(|_| ServiceError::TooManyRequests("Too many sign-ins; wait a minute"))?;
        }
        let username = parse_username(raw_username)?;
        let from_store = ServiceError::from_store("user");
        let user = self
            .store
            .find_or_create_user(&username)
            .await
            .map_err(from_store)?;
        if self
            .store
            .has_credentials(user.id)
            .await
            .map_err(ServiceError::from_store("user"))?
        {
            return Err(ServiceError::Forbidden(
                "This account signs in with a password or a provider",
            ));
        }
        if self.flags(user.id).await?.deleted {
            return Err(ServiceError::Forbidden("This account was deleted"));
        }
        self.open_session(user, device).await
    }

    #[tracing::instrument(skip_all)]
    pub async fn sign_up(
        &self,
        raw_username: &str,
        raw_password: &str,
        invite: Option<&str>,
        device: &str,
        ip: IpAddr,
    ) -> ServiceResult<SignedIn> {
        if !self.settings.passwords {
            return Err(ServiceError::NotFound("password sign-up"));
        }
        self.limit(None, ip)?;
        let username = parse_username(raw_username)?;
        let admission = self.admission(invite)?;
        let password = Password::parse(
            raw_password,
            self.settings.password_min_len,
            username.as_str(),
        )
        .map_err(|e| ServiceError::invalid("password", e))?;
        let hash = self.hashing.hash(password).await?;
        self.release_usernames().await?;
        let user = match self
            .store
            .create_account_as(&username, None, NewCredential::Password { hash }, admission)
            .await
        {
            Ok(user) => user,
            Err(StoreError::Conflict("invite link")) => {
                return Err(self.invite_refusal(invite.unwrap_or_default()).await);
            }
            Err(e) => return Err(ServiceError::from_store("user")(e)),
        };
        self.open_session(user, device).await
    }

    #[tracing::instrument(skip_all)]
    pub async fn sign_in(
        &self,
        raw_username: &str,
        raw_password: &str,
        device: &str,
        ip: IpAddr,
    ) -> ServiceResult<SignedIn> {
        if !self.settings.passwords {
            return Err(ServiceError::NotFound("password sign-in"));
        }
        let wrong = || ServiceError::invalid("password", "Wrong username or password");
        let username = Username::parse(raw_username).map_err(|_| wrong())?;
        self.limit(Some(&username), ip)?;
        let (user, hash) = match self.store.password_hash(&username).await {
            Ok(found) => found,
            Err(StoreError::NotFound) => {
                let dummy = self
                    .dummy_hash
                    .get_or_try_init(|| {
                        self.hashing
                            .hash(Password::unchecked("not a real password"))
                    })
                    .await?;
                let _ = self
                    .hashing
                    .verify(raw_password.to_owned(), dummy.clone())
                    .await;
                return Err(wrong());
            }
            Err(e) => return Err(ServiceError::from_store("user")(e)),
        };
        if !self.hashing.verify(raw_password.to_owned(), hash).await? {
            return Err(wrong());
        }
        self.open_session(user, device).await
    }

    /// Spends an OAuth flow id for good (on every node sharing the store); `false` when it was
    /// spent before, that is when its callback is being replayed.
    pub async fn spend_oauth_flow(
        &self,
        id: &str,
        expires_at: DateTime<Utc>,
    ) -> ServiceResult<bool> {
        match self.store.spend_oauth_flow(id, expires_at).await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(ServiceError::from_store("oauth flow")(e)),
        }
    }

    /// Signs in through an identity provider. The identity (provider, subject) is the link;
    /// a new person gets the provider's preferred name, or a numbered variant when it is taken.
    #[tracing::instrument(skip_all, fields(provider = provider))]
    pub async fn sign_in_external(
        &self,
        provider: &str,
        subject: &str,
        preferred_username: &str,
        avatar_url: Option<&str>,
        device: &str,
    ) -> ServiceResult<SignedIn> {
        let from_store = ServiceError::from_store("user");
        if let Some(user) = self
            .store
            .identity_user(provider, subject)
            .await
            .map_err(from_store)?
        {
            if avatar_url.is_some() && avatar_url != user.avatar_url.as_deref() {
                self.store
                    .update_avatar(user.id, avatar_url)
                    .await
                    .map_err(from_store)?;
            }
            return self
                .open_session(
                    User {
                        // An uploaded picture stays in front of the provider's.
                        avatar_url: match user.avatar_url {
                            Some(own) if own.starts_with("/api/avatars/") => Some(own),
                            _ => avatar_url.map(str::to_owned),
                        },
                        ..user
                    },
                    device,
                )
                .await;
        }
        self.release_usernames().await?;
        let base = sanitize_username(preferred_username);
        for attempt in 0..50u32 {
            let candidate = match attempt {
                0 => base.clone(),
                n => {
                    let suffix = format!("_{}", n + 1);
                    let keep = Username::MAX_LEN - suffix.len();
                    format!("{}{suffix}", base.chars().take(keep).collect::<String>())
                }
            };
            let Ok(username) = Username::parse(&candidate) else {
                continue;
            };
            let credential = NewCredential::Identity {
                provider: provider.to_owned(),
                subject: subject.to_owned(),
            };
            match self
                .store
                .create_account(&username, avatar_url, credential, None)
                .await
            {
                Ok(user) => return self.open_session(user, device).await,
                Err(StoreError::Conflict("username")) => continue,
                // Someone signed in with the same identity at the same moment: use theirs.
                Err(StoreError::Conflict("identity")) => {
                    if let Some(user) = self
                        .store
                        .identity_user(provider, subject)
                        .await
                        .map_err(from_store)?
                    {
                        return self.open_session(user, device).await;
                    }
                }
                Err(e) => return Err(from_store(e)),
            }
        }
        Err(ServiceError::invalid(
            "username",
            "No free username could be found",
        ))
    }

    /// The session behind a token: signature, expiry, and an active session record.
    pub async fn authenticate(&self, token: &str) -> ServiceResult<Authenticated> {
        let (user, session) = self
            .tokens
            .verify(token)
            .map_err(|_| ServiceError::Unauthorized)?;
        let now = Utc::now();
        if self.is_trusted(&session, user, now) {
            return Ok(Authenticated { user, session });
        }
        let seen = self.trust_marks();
        let record = match self.store.active_session(&session, now).await {
            Ok(record) if record.user == user => record,
            Ok(_) | Err(StoreError::NotFound) => return Err(ServiceError::Unauthorized),
            Err(e) => return Err(ServiceError::from_store("session")(e)),
        };
        if now - record.last_seen_at > TOUCH_EVERY {
            // Written by `write_touches` within a second.
            let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
            touched.insert(session.clone(), now);
        }
        self.trust(&session, user, record.expires_at, seen);
        Ok(Authenticated { user, session })
    }

    /// A fresh token for the same session, which now lives a full lifetime from now.
    pub async fn refresh(&self, auth: &Authenticated) -> ServiceResult<(String, DateTime<Utc>)> {
        let now = Utc::now();
        let expires_at = now + self.tokens.lifetime();
        self.store
            .touch_session(&auth.session, now, Some(expires_at))
            .await
            .map_err(ServiceError::from_store("session"))?;
        let token = self
            .tokens
            .issue(auth.user, &auth.session, expires_at)
            .map_err(internal)?;
        Ok((token, expires_at))
    }

    pub async fn sessions(&self, user: UserId) -> ServiceResult<Vec<Session>> {
        self.store
            .sessions(user, Utc::now())
            .await
            .map_err(ServiceError::from_store("session"))
    }

    /// Ends one of the user's sessions, or all of them; their open streams close at once.
    #[tracing::instrument(skip_all, fields(user = %user))]
    pub async fn sign_out(&self, user: UserId, session: Option<&str>) -> ServiceResult<usize> {
        let revoked = self
            .store
            .revoke_sessions(user, session, Utc::now())
            .await
            .map_err(ServiceError::from_store("session"))?;
        if session.is_some() && revoked.is_empty() {
            return Err(ServiceError::NotFound("session"));
        }
        self.forget(&revoked);
        let count = revoked.len();
        if count > 0 {
            let event = Arc::new(Event::sessions_revoked(user, revoked));
            if let Err(e) = self.bus.publish(event).await {
                tracing::warn!(error = %e, "could not announce revoked sessions; streams end at their next check");
            }
        }
        Ok(count)
    }

    async fn is_disabled(&self, user: UserId) -> ServiceResult<bool> {
        let found = self.store.admin_user(user).await;
        Ok(found
            .map_err(ServiceError::from_store("user"))?
            .disabled_at
            .is_some())
    }

    fn is_trusted(&self, session: &str, user: UserId, now: DateTime<Utc>) -> bool {
        let trust_for = std::time::Duration::from_millis(self.trust_for.load(Ordering::Relaxed));
        let generation = self.bus.generation();
        let trusted = self.trusted.lock().unwrap_or_else(|e| e.into_inner());
        trusted
            .get(session)
            .is_some_and(|(owner, expires_at, checked, heard)| {
                *owner == user
                    && *expires_at > now
                    && checked.elapsed() < trust_for
                    && *heard == generation
            })
    }

    /// Revoked sessions leave the cache.
    fn forget(&self, sessions: &[String]) {
        let mut trusted = self.trusted.lock().unwrap_or_else(|e| e.into_inner());
        self.revocations.fetch_add(1, Ordering::Relaxed);
        for id in sessions {
            trusted.remove(id);
        }
    }

    /// `seen` is what `trust_marks` gave before the store was asked: a revocation heard, or
    /// a bus that may have lost one, since then and the session is not trusted.
    fn trust(&self, session: &str, user: UserId, expires_at: DateTime<Utc>, seen: (u64, u64)) {
        let mut trusted = self.trusted.lock().unwrap_or_else(|e| e.into_inner());
        if self.trust_marks() != seen {
            return;
        }
        if trusted.len() >= SESSION_CACHE_SWEEP {
            trusted.retain(|_, (_, _, checked, _)| checked.elapsed() < SESSION_TRUST);
        }
        trusted.insert(
            session.to_owned(),
            (user, expires_at, std::time::Instant::now(), seen.1),
        );
    }

    /// (revocations heard here, bus generation).
    fn trust_marks(&self) -> (u64, u64) {
        (
            self.revocations.load(Ordering::Relaxed),
            self.bus.generation(),
        )
    }

    async fn open_session(&self, user: User, device: &str) -> ServiceResult<SignedIn> {
        if self.is_disabled(user.id).await? {
            return Err(ServiceError::Forbidden(
                "This account is disabled; ask the server's admin",
            ));
        }
        let now = Utc::now();
        let session = Session {
            id: Session::new_id(),
            user: user.id,
            device: device.chars().take(160).collect(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.tokens.lifetime(),
        };
        self.store
            .create_session(&session)
            .await
            .map_err(ServiceError::from_store("session"))?;
        self.evict_sessions(user.id, &session.id).await;
        let token = self
            .tokens
            .issue(user.id, &session.id, session.expires_at)
            .map_err(internal)?;
        Ok(SignedIn {
            user,
            session: session.id,
            token,
            expires_at: session.expires_at,
        })
    }

    /// Keeps at most `max_sessions` per person: those seen least recently (never the one just
    /// opened) are signed out like any other, their streams closed at once. A failure here
    /// costs nothing but a session too many, so it is logged, not returned.
    async fn evict_sessions(&self, user: UserId, keep: &str) {
        let sessions = match self.store.sessions(user, Utc::now()).await {
            Ok(sessions) => sessions,
            Err(e) => {
                tracing::warn!(error = %e, "could not list sessions to apply the cap");
                return;
            }
        };
        let max = self.settings.max_sessions.get();
        // Most recently seen first: everything past `max` goes, oldest last.
        let extra = sessions
            .iter()
            .filter(|s| s.id != keep)
            .skip(max.saturating_sub(1));
        for session in extra {
            if let Err(e) = self.sign_out(user, Some(&session.id)).await {
                tracing::warn!(error = %e, "could not evict a session over the cap");
            }
        }
    }

    /// Counts one password attempt against the account (if known) and the client address.
    fn limit(&self, username: Option<&Username>, ip: IpAddr) -> ServiceResult<()> {
        self.sweep_limiters();
        let too_many =
            || ServiceError::TooManyRequests("Too many attempts; wait a minute and try again");
        self.per_ip
            .check_key(&limit_key(ip))
            .map_err(|_| too_many())?;
        if let Some(username) = username {
            self.per_account
                .check_key(&username.as_str().to_lowercase())
                .map_err(|_| too_many())?;
        }
        Ok(())
    }

    /// Now and then forgets keys whose limits have recovered, so the maps stay small.
    fn sweep_limiters(&self) {
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(256)
        {
            self.per_ip.retain_recent();
            self.per_account.retain_recent();
            if let Some(dev) = &self.dev_per_ip {
                dev.retain_recent();
            }
        }
    }
}

/// argon2id with the crate's defaults (19 MiB, 2 passes) on a fixed pool of `threads`
/// threads, so at most that many run at once: each hash allocates its 19 MiB for as long as it
/// runs, so 48 concurrent sign-ins once took a node from 140 MB to 1 GB. The rest wait in line,
/// which costs them time, not memory. Dedicated threads rather than `spawn_blocking`: the
/// allocator keeps a freed 19 MiB block in the arena of the thread that used it, so hashes
/// spread over the blocking pool's many threads leave up to one block per arena behind.
struct Hashing {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
    /// Most hashes seen running at once (read by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    peak: Arc<AtomicU64>,
}

impl Hashing {
    fn new(threads: usize) -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        let running = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::default());
        for n in 0..threads.max(1) {
            let (queue, running, peak) = (queue.clone(), running.clone(), peak.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("password-hash-{n}"))
                .spawn(move || {
                    loop {
                        // Ends when `Hashing` (the sender) is dropped.
                        let job = match queue.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        };
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        job();
                        running.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        Self { jobs, peak }
    }

    async fn hash(&self, password: Password) -> ServiceResult<String> {
        self.run(move || {
            argon2::Argon2::default()
                .hash_password(password.expose().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| ServiceError::Internal(e.to_string().into()))
        })
        .await?
    }

    async fn verify(&self, password: String, hash: String) -> ServiceResult<bool> {
        self.run(move || {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> ServiceResult<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(work());
            }))
            .map_err(|_| ServiceError::Internal("password hashing stopped".into()))?;
        result
            .await
            .map_err(|_| ServiceError::Internal("password hashing stopped".into()))
    }
}

fn parse_username(raw: &str) -> ServiceResult<Username> {
    Username::parse(raw).map_err(|e| ServiceError::invalid("username", e))
}

/// A provider's name made into a valid username: disallowed characters become `_`.
fn sanitize_username(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(Username::MAX_LEN)
        .collect();
    if cleaned.trim_matches('_').is_empty() {
        "user".to_owned()
    } else {
        cleaned
    }
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> ServiceError {
    ServiceError::Internal(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::{Hashing, sanitize_username};
    use crate::model::Password;
    use std::sync::atomic::Ordering;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_hashes_run_at_once_than_the_pool_allows() {
        let hashing = std::sync::Arc::new(Hashing::new(2));
        let hash = hashing
            .hash(Password::unchecked("violet-harbor-tractor-91"))
            .await
            .unwrap();
        let checks: Vec<_> = (0..12)
            .map(|i| {
                let (hashing, hash) = (hashing.clone(), hash.clone());
                let password = if i % 2 == 0 {
                    "violet-harbor-tractor-91"
                } else {
                    "wrong"
                };
                tokio::spawn(async move { hashing.verify(password.into(), hash).await.unwrap() })
            })
            .collect();
        let mut right = 0;
        for check in checks {
            right += usize::from(check.await.unwrap());
        }
        assert_eq!(right, 6, "every verification still gives its answer");
        let peak = hashing.peak.load(Ordering::SeqCst);
        assert!(peak <= 2, "{peak} hashes ran at once with 2 permits");
    }

    mod trust {
        use crate::bus::{Bus, BusError, LocalBus, RevocationHook, Subscription};
        use crate::model::{Event, UserId};
        use crate::service::{AccountSettings, Accounts, ServiceError, Signup, Tokens};
        use crate::store::{SqliteOptions, SqliteStore, Store};
        use std::num::NonZeroU32;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};

        /// A local bus whose generation the test moves, as a NATS reconnect would.
        #[derive(Default)]
        struct LossyBus {
            local: LocalBus,
            generation: AtomicU64,
        }

        #[async_trait::async_trait]
        impl Bus for LossyBus {
            async fn publish(&self, event: Arc<Event>) -> Result<(), BusError> {
                self.local.publish(event).await
            }
            async fn subscribe(
                &self,
                user: UserId,
                capacity: usize,
            ) -> Result<Subscription, BusError> {
                self.local.subscribe(user, capacity).await
            }
            fn on_revocation(&self, hook: RevocationHook) -> bool {
                self.local.on_revocation(hook)
            }
            fn deliver_local(&self, event: &Arc<Event>) {
                self.local.deliver(event);
            }
            fn generation(&self) -> u64 {
                self.generation.load(Ordering::SeqCst)
            }
        }

        /// Accounts on a fresh store and a `LossyBus`, and alice signed in.
        struct Signed {
            accounts: Arc<Accounts>,
            store: Arc<dyn Store>,
            bus: Arc<LossyBus>,
            alice: crate::service::SignedIn,
        }

        async fn alice_signed_in(dir: &std::path::Path) -> Signed {
            let url = format!("sqlite://{}", dir.join("courier.db").display());
            let store: Arc<dyn Store> = Arc::new(
                SqliteStore::open(&url, &SqliteOptions::default())
                    .await
                    .unwrap(),
            );
            let bus = Arc::new(LossyBus::default());
            let tokens = Tokens::new(&[7; 32], std::time::Duration::from_secs(3600)).unwrap();
            let settings = AccountSettings {
                passwords: true,
                password_min_len: 12,
                signup: Signup::Open,
                attempts_per_account: NonZeroU32::new(10).unwrap(),
                attempts_per_ip: NonZeroU32::new(50).unwrap(),
                max_sessions: std::num::NonZeroUsize::new(10).unwrap(),
                dev_logins_per_ip: None,
                hash_concurrency: 1,
                members_can_invite: false,
                invite_max_lifetime: chrono::TimeDelta::days(30),
                invite_max_uses: 100,
                password_link_lifetime: chrono::TimeDelta::hours(1),
                username_reservation: chrono::TimeDelta::days(30),
            };
            let accounts = Arc::new(Accounts::new(store.clone(), bus.clone(), tokens, settings));
            accounts.watch_revocations();
            let ip = "127.0.0.1".parse().unwrap();
            let alice = accounts.dev_login("alice", "test", ip).await.unwrap();
            Signed {
                accounts,
                store,
                bus,
                alice,
            }
        }

        #[tokio::test]
        async fn a_trusted_session_is_read_again_once_the_bus_may_have_lost_a_revocation() {
            let dir = tempfile::tempdir().unwrap();
            let Signed {
                accounts,
                store,
                bus,
                alice,
            } = alice_signed_in(dir.path()).await;
            accounts.authenticate(&alice.token).await.unwrap();
            // Revoked behind the bus's back: its event is lost.
            let now = chrono::Utc::now();
            let revoked = store.revoke_sessions(alice.user.id, Some(&alice.session), now);
            assert_eq!(revoked.await.unwrap().len(), 1);
            assert!(
                accounts.authenticate(&alice.token).await.is_ok(),
                "within its trust the session is not read again"
            );
            bus.generation.fetch_add(1, Ordering::SeqCst);
            assert!(matches!(
                accounts.authenticate(&alice.token).await,
                Err(ServiceError::Unauthorized)
            ));
        }

        #[tokio::test]
        async fn a_session_read_before_a_revocation_is_not_trusted_after_it() {
            let dir = tempfile::tempdir().unwrap();
            let Signed {
                accounts, alice, ..
            } = alice_signed_in(dir.path()).await;
            let (user, session) = (alice.user.id, alice.session.as_str());
            let now = chrono::Utc::now();
            let seen = accounts.trust_marks();
            // The store said "active"; then, before that answer is cached, a revocation.
            accounts.forget(&[session.to_owned()]);
            accounts.trust(session, user, alice.expires_at, seen);
            assert!(!accounts.is_trusted(session, user, now));
            accounts.trust(session, user, alice.expires_at, accounts.trust_marks());
            assert!(accounts.is_trusted(session, user, now));
        }
    }

    #[test]
    fn provider_names_become_valid_usernames() {
        assert_eq!(sanitize_username("Jane Doe"), "Jane_Doe");
        assert_eq!(sanitize_username("ñ"), "user");
        assert_eq!(sanitize_username(&"a".repeat(40)).len(), 32);
    }
}
