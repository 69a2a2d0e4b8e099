//! Web Push: a message to someone with no open stream reaches their browser's push service.
//!
//! - **Encryption** is RFC 8291 (`aes128gcm`, RFC 8188 one record): an ephemeral P-256 key
//!   agrees a secret with the subscription's `p256dh` key, salted with its `auth` secret.
//! - **Identification** is VAPID (RFC 8292): an ES256 JWT for the endpoint's origin, signed
//!   by the server's key, which is generated into the data directory on first start.
//! - **Delivery** (RFC 8030) carries `TTL` and `Urgency`, happens after the commit in its own
//!   task under a concurrency bound, and never slows a send. A subscription the push service
//!   says is gone (404, 410) is deleted.
//!
//! Written on RustCrypto primitives (p256, hkdf, aes-gcm) rather than the `web-push` crate,
//! which brings its own HTTP client and OpenSSL-backed `ece`; Courier already has reqwest.

use super::presence::Presence;
use crate::model::{ConversationKind, Message, UserId};
use crate::store::{PushTarget, Store};
use aes_gcm::Aes128Gcm;
use aes_gcm::aead::{Aead, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hkdf::Hkdf;
use p256::ecdsa::signature::Signer;
use p256::{PublicKey, SecretKey};
use sha2_next::Sha256;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// One RFC 8188 record holds the whole payload.
const RECORD_SIZE: u32 = 4096;
/// Pushes in flight at once, over all sends.
const CONCURRENT_PUSHES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("invalid subscription key: {0}")]
    BadKey(&'static str),
    #[error("payload too large for one record")]
    TooLarge,
}

/// The server's VAPID key pair.
#[derive(Clone)]
pub struct VapidKey {
    secret: SecretKey,
}

impl VapidKey {
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        SecretKey::from_slice(bytes)
            .ok()
            .map(|secret| Self { secret })
    }

    pub fn generate() -> Self {
        loop {
            if let Some(key) = Self::from_bytes(&rand::random::<[u8; 32]>()) {
                return key;
            }
        }
    }

    pub fn secret_bytes(&self) -> Vec<u8> {
        self.secret.to_bytes().to_vec()
    }

    /// The uncompressed public point, base64url: the browser's `applicationServerKey`.
    pub fn public_key(&self) -> String {
        B64.encode(self.secret.public_key().to_sec1_bytes())
    }

    /// `Authorization: vapid t=…, k=…` for a push service at `audience` (its origin).
    fn authorization(&self, audience: &str, subject: &str, now: i64) -> String {
        let header = B64.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({ "aud": audience, "exp": now + 12 * 3600, "sub": subject });
        let claims = B64.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let key = p256::ecdsa::SigningKey::from(&self.secret);
        let signature: p256::ecdsa::Signature = key.sign(signing_input.as_bytes());
        let token = format!("{signing_input}.{}", B64.encode(signature.to_bytes()));
        format!("vapid t={token}, k={}", self.public_key())
    }
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey").finish_non_exhaustive()
    }
}

/// RFC 8291: encrypts `payload` for a subscription's `p256dh` and `auth` (both base64url).
pub fn encrypt(payload: &[u8], p256dh: &str, auth: &str) -> Result<Vec<u8>, PushError> {
    let ua_public_bytes = B64
        .decode(p256dh.trim_end_matches('='))
        .map_err(|_| PushError::BadKey("p256dh is not base64url"))?;
    let ua_public = PublicKey::from_sec1_bytes(&ua_public_bytes)
        .map_err(|_| PushError::BadKey("p256dh is not a P-256 point"))?;
    let auth_secret = B64
        .decode(auth.trim_end_matches('='))
        .map_err(|_| PushError::BadKey("auth is not base64url"))?;
    if auth_secret.len() != 16 {
        return Err(PushError::BadKey("auth is not 16 bytes"));
    }
    if payload.len() + 1 + 16 > RECORD_SIZE as usize {
        return Err(PushError::TooLarge);
    }
    let ephemeral = VapidKey::generate().secret;
    let as_public = ephemeral.public_key().to_sec1_bytes();
    let shared = p256::ecdh::diffie_hellman(ephemeral.to_nonzero_scalar(), ua_public.as_affine());

    // IKM from the ECDH secret, keyed by the subscription's auth secret.
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(&ua_public_bytes);
    key_info.extend_from_slice(&as_public);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&auth_secret), shared.raw_secret_bytes())
        .expand(&key_info, &mut ikm)
        .expect("32 bytes is a valid HKDF length");

    let salt: [u8; 16] = rand::random();
    let prk = Hkdf::<Sha256>::new(Some(&salt), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .expect("16 bytes is a valid HKDF length");
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .expect("12 bytes is a valid HKDF length");

    let mut plaintext = payload.to_vec();
    plaintext.push(0x02); // the last (and only) record's delimiter
    let cipher = Aes128Gcm::new_from_slice(&cek).expect("16-byte key");
    let sealed = cipher
        .encrypt(&nonce.into(), plaintext.as_slice())
        .map_err(|_| PushError::TooLarge)?;

    let mut body = Vec::with_capacity(16 + 4 + 1 + as_public.len() + sealed.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.len() as u8);
    body.extend_from_slice(&as_public);
    body.extend_from_slice(&sealed);
    Ok(body)
}

#[derive(Debug, Clone)]
pub struct PushSettings {
    /// VAPID `sub`: a `mailto:` or the server's public URL.
    pub subject: String,
    pub ttl: Duration,
    /// Allow `http://` and loopback endpoints (tests and private push services only).
    pub allow_insecure_endpoints: bool,
}

/// Sends pushes for committed messages.
pub struct Pusher {
    store: Arc<dyn Store>,
    presence: Arc<Presence>,
    key: VapidKey,
    settings: PushSettings,
    http: reqwest::Client,
    permits: Arc<Semaphore>,
    /// Every push task, so shutdown can wait for them (they hold the store).
    tasks: TaskTracker,
    subscribers: Subscribers,
}

/// Who has a push subscription, so a send to people without one costs no read.
///
/// Most messages reach nobody's push subscription, and asking the store on every send was
/// 14 % of the server's CPU under `courier-bench send`. The set is read whole at most every
/// [`SUBSCRIBERS_REFRESH`] and a subscription made on this node joins it at once; one made on
/// another node of a cluster is seen at the next refresh, so its first pushes for messages
/// sent through this node may come up to that late. Until the first read lands every user
/// counts as subscribed (the store is asked, as before).
#[derive(Default)]
struct Subscribers {
    state: RwLock<SubscriberSet>,
    refreshing: AtomicBool,
}

#[derive(Default)]
struct SubscriberSet {
    /// As last read, plus this node's subscriptions since; `None` before the first read.
    users: Option<HashSet<UserId>>,
    read_at: Option<Instant>,
    /// This node's subscriptions since the running (or last) read began: a read that started
    /// before one was saved cannot contain it, so it is added back when the read lands.
    added: HashSet<UserId>,
}

/// How stale the subscriber set may get before it is read again.
const SUBSCRIBERS_REFRESH: Duration = Duration::from_secs(30);

impl Subscribers {
    /// Keeps in `users` those who may have a subscription (everyone, before the first read);
    /// true when the set is due to be read again.
    fn keep_subscribed(&self, users: &mut HashSet<UserId>) -> bool {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = &state.users {
            users.retain(|user| set.contains(user));
        }
        state
            .read_at
            .is_none_or(|read_at| read_at.elapsed() >= SUBSCRIBERS_REFRESH)
    }

    /// Called after the subscription is saved.
    fn add(&self, user: UserId) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = &mut state.users {
            set.insert(user);
        }
        state.added.insert(user);
    }

    /// A read is about to begin: what was added before it is in the database it reads.
    fn read_begins(&self) -> Instant {
        self.state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .added
            .clear();
        Instant::now()
    }

    fn read_landed(&self, mut users: HashSet<UserId>, read_at: Instant) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        users.extend(state.added.iter().copied());
        state.users = Some(users);
        state.read_at = Some(read_at);
    }
}

impl Pusher {
    pub fn new(
        store: Arc<dyn Store>,
        presence: Arc<Presence>,
        key: VapidKey,
        settings: PushSettings,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        Self {
            store,
            presence,
            key,
            settings,
            http,
            permits: Arc::new(Semaphore::new(CONCURRENT_PUSHES)),
            tasks: TaskTracker::new(),
            subscribers: Subscribers::default(),
        }
    }

    /// A subscription was just saved on this node: push to `user` from now on.
    pub fn subscribed(&self, user: UserId) {
        self.subscribers.add(user);
    }

    /// Reads the subscriber set again, once at a time, in the background.
    fn refresh_subscribers(self: &Arc<Self>) {
        if self.subscribers.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        self.tasks.spawn(async move {
            let read_at = this.subscribers.read_begins();
            match this.store.push_subscribers().await {
                Ok(users) => this
                    .subscribers
                    .read_landed(users.into_iter().collect(), read_at),
                Err(e) => tracing::warn!(error = %e, "push subscribers unavailable"),
            }
            this.subscribers.refreshing.store(false, Ordering::Release);
        });
    }

    /// Waits (at most `limit`) for pushes in flight; none start afterwards.
    pub async fn finish(&self, limit: Duration) {
        self.tasks.close();
        let _ = tokio::time::timeout(limit, self.tasks.wait()).await;
    }

    pub fn public_key(&self) -> String {
        self.key.public_key()
    }

    /// Whether an endpoint may be stored: https (or, when allowed, http) with a host.
    pub fn endpoint_allowed(&self, endpoint: &str) -> bool {
        let Ok(url) = reqwest::Url::parse(endpoint) else {
            return false;
        };
        match url.scheme() {
            "https" => url.host().is_some(),
            "http" => self.settings.allow_insecure_endpoints && url.host().is_some(),
            _ => false,
        }
    }

    /// Pushes `message`, in the background, to those of `recipients` who had no open stream
    /// here when it committed (judged now: a stream that closes a moment later saw it).
    pub fn message_committed(
        self: &Arc<Self>,
        message: Message,
        recipients: impl Iterator<Item = UserId>,
    ) {
        if self.tasks.is_closed() {
            return;
        }
        let sender = message.sender_id;
        let mut offline = self
            .presence
            .offline_among(recipients.filter(|&user| user != sender));
        if offline.is_empty() {
            return;
        }
        if self.subscribers.keep_subscribed(&mut offline) {
            self.refresh_subscribers();
        }
        if offline.is_empty() {
            return;
        }
        let this = self.clone();
        self.tasks.spawn(async move {
            let targets = match this
                .store
                .push_targets(message.conversation_id, message.sender_id)
                .await
            {
                Ok(targets) => targets,
                Err(e) => {
                    tracing::warn!(error = %e, "push targets unavailable");
                    return;
                }
            };
            // Most sends reach nobody's push subscription: ask that first, so such a send
            // costs one read here, not three.
            let targets: Vec<_> = targets
                .into_iter()
                .filter(|target| offline.contains(&target.user))
                .collect();
            if targets.is_empty() {
                return;
            }
            let sender = match this.store.user(message.sender_id).await {
                Ok(user) => user,
                Err(e) => {
                    tracing::warn!(error = %e, "push sender unavailable");
                    return;
                }
            };
            let title = match this
                .store
                .conversation(message.sender_id, message.conversation_id)
                .await
            {
                Ok(c) if c.kind == ConversationKind::Group => {
                    format!("{} in {}", sender.username, c.title.unwrap_or_default())
                }
                _ => sender.username.clone(),
            };
            for target in targets {
                let Ok(permit) = this.permits.clone().acquire_owned().await else {
                    return;
                };
                let (this, message, title) = (this.clone(), message.clone(), title.clone());
                this.clone().tasks.spawn(async move {
                    this.push(&target, &message, &title).await;
                    drop(permit);
                });
            }
        });
    }

    async fn push(&self, target: &PushTarget, message: &Message, title: &str) {
        let payload = serde_json::json!({
            "title": title,
            "body": if target.hide_content { "New message" } else { message.content.as_str() },
            "conversationId": message.conversation_id.to_string(),
            "messageId": message.id.to_string(),
            "url": format!("/c/{}", message.conversation_id),
        });
        let body = match encrypt(payload.to_string().as_bytes(), &target.p256dh, &target.auth) {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(error = %e, "push subscription unusable; removing it");
                let _ = self.store.drop_push_endpoint(&target.endpoint).await;
                return;
            }
        };
        let Ok(url) = reqwest::Url::parse(&target.endpoint) else {
            return;
        };
        let audience = url.origin().ascii_serialization();
        let now = chrono::Utc::now().timestamp();
        let response = self
            .http
            .post(url)
            .header("content-encoding", "aes128gcm")
            .header("content-type", "application/octet-stream")
            .header("ttl", self.settings.ttl.as_secs().to_string())
            .header("urgency", "high")
            .header(
                "authorization",
                self.key
                    .authorization(&audience, &self.settings.subject, now),
            )
            .body(body)
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() => {}
            Ok(r) if matches!(r.status().as_u16(), 404 | 410) => {
                tracing::info!("push subscription gone; removing it");
                let _ = self.store.drop_push_endpoint(&target.endpoint).await;
            }
            Ok(r) => tracing::warn!(status = %r.status(), "push refused"),
            Err(e) => tracing::warn!(error = %e, "push failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_saved_while_the_set_is_being_read_is_kept() {
        let subscribers = Subscribers::default();
        let (alice, bob, carol) = (UserId(1), UserId(2), UserId(3));
        let mut everyone = HashSet::from([alice, bob, carol]);
        assert!(
            subscribers.keep_subscribed(&mut everyone),
            "due before the first read"
        );
        assert_eq!(everyone.len(), 3, "everyone counts before the first read");

        let read_at = subscribers.read_begins();
        subscribers.add(carol); // saved after the read began: the read cannot contain it
        subscribers.read_landed(HashSet::from([alice]), read_at);

        let mut recipients = HashSet::from([alice, bob, carol]);
        assert!(!subscribers.keep_subscribed(&mut recipients), "fresh");
        assert_eq!(recipients, HashSet::from([alice, carol]));

        subscribers.add(bob); // on a loaded set: at once
        let mut recipients = HashSet::from([bob]);
        subscribers.keep_subscribed(&mut recipients);
        assert_eq!(recipients, HashSet::from([bob]));
    }

    #[test]
    fn the_encrypted_body_has_the_rfc_8188_header_and_one_sealed_record() {
        let ua = VapidKey::generate();
        let p256dh = B64.encode(ua.secret.public_key().to_sec1_bytes());
        let auth = B64.encode([7u8; 16]);
        let body = encrypt(b"hello", &p256dh, &auth).unwrap();
        assert_eq!(&body[16..20], &4096u32.to_be_bytes());
        assert_eq!(
            body[20], 65,
            "the key id is the sender's uncompressed point"
        );
        assert_eq!(body.len(), 16 + 4 + 1 + 65 + 5 + 1 + 16);
        assert!(encrypt(b"x", "not a key", &auth).is_err());
        assert!(encrypt(&[0u8; 5000], &p256dh, &auth).is_err());
    }
}
