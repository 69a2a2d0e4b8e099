//! Sign-in through an identity provider: the OAuth 2.0 authorization-code flow with `state`
//! and PKCE (S256), plus OpenID Connect's `nonce` and ID token checks. GitHub is a preset (it
//! speaks OAuth 2.0 but not OIDC); any number of OIDC providers come from discovery.
//!
//! The flow's secrets (state, PKCE verifier, nonce) travel in a short-lived cookie encrypted
//! (AES-256-GCM) with a key derived from the token secret, so any node of a cluster can finish
//! a flow another node started. Each flow has a random id that the callback spends in the
//! store, so a flow finishes at most once, whichever node its callback reaches.

use super::{Accounts, ServiceError, SignedIn};
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hkdf::Hkdf;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreProviderMetadata,
    CoreUserInfoClaims,
};
use openidconnect::{
    AccessToken, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use sha2_next::Sha256;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a started sign-in may take before its flow state expires.
pub const FLOW_LIFETIME: Duration = Duration::from_secs(600);
/// Discovery documents (and the signing keys they name) are fetched again after this long.
const DISCOVERY_TTL: Duration = Duration::from_secs(15 * 60);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// Where this server is reached, e.g. `https://chat.example.org`; redirect URIs hang off it.
    pub public_url: String,
    pub providers: Vec<ProviderSettings>,
}

#[derive(Clone)]
pub struct ProviderSettings {
    /// The route segment (`/api/oauth/{id}`) and the name identities are linked under.
    pub id: String,
    pub name: String,
    pub client_id: String,
    pub client_secret: String,
    /// Scopes beyond the preset's (`read:user` for GitHub, `openid profile` for OIDC).
    pub scopes: Vec<String>,
    pub kind: ProviderKind,
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("kind", &self.kind)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub enum ProviderKind {
    /// GitHub's OAuth apps: `{auth_url}`, `{token_url}`, then `GET {api_url}/user`.
    GitHub {
        auth_url: String,
        token_url: String,
        api_url: String,
    },
    /// Any OpenID Connect provider, found through `{issuer}/.well-known/openid-configuration`.
    Oidc { issuer: String },
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("no such sign-in provider")]
    UnknownProvider,
    /// The flow state is missing, forged, expired, or does not match this callback.
    #[error("{0}")]
    InvalidFlow(&'static str),
    /// The provider answered with `?error=…` (for example the person said no).
    #[error("the provider refused the sign-in: {0}")]
    Denied(String),
    /// The provider or its answer failed a check (code exchange, ID token, user info).
    #[error("the sign-in could not be verified")]
    Rejected,
    #[error("the provider could not be reached; try again later")]
    Unavailable,
    #[error(transparent)]
    Account(#[from] ServiceError),
}

/// What the browser needs to start a sign-in.
pub struct Started {
    /// The provider's authorization URL to redirect to.
    pub redirect: String,
    /// The sealed flow state, for the flow cookie.
    pub flow: String,
}

/// The query of a callback, as the provider sent it.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    /// RFC 9207: the issuer that sent this response, when the provider says so.
    pub iss: Option<String>,
}

pub struct Finished {
    pub signed_in: SignedIn,
    /// The same-origin path saved when the flow started.
    pub return_to: String,
}

/// A flow in progress, as kept in the sealed cookie. Short keys keep the cookie small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowState {
    /// Random, unique per flow: spent in the store when the callback is handled.
    #[serde(rename = "i", default)]
    pub id: String,
    #[serde(rename = "p")]
    pub provider: String,
    #[serde(rename = "s")]
    pub state: String,
    /// The PKCE verifier whose S256 challenge went to the provider.
    #[serde(rename = "v", default)]
    pub verifier: String,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(rename = "r")]
    pub return_to: String,
    /// Unix seconds after which the flow is refused.
    #[serde(rename = "e")]
    pub expires: i64,
}

type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

struct Provider {
    settings: ProviderSettings,
    redirect: RedirectUrl,
    /// OIDC only: the discovered metadata and when it was fetched (or last failed).
    discovery: tokio::sync::Mutex<Discovery>,
}

#[derive(Default)]
struct Discovery {
    metadata: Option<(CoreProviderMetadata, Instant)>,
}

pub struct OAuth {
    providers: Vec<Arc<Provider>>,
    seal: FlowSeal,
    http: reqwest::Client,
    accounts: Arc<Accounts>,
}

impl OAuth {
    /// `secret` is the token signing secret; the flow cookie's key is derived from it.
    pub fn new(
        settings: OAuthSettings,
        secret: &[u8],
        accounts: Arc<Accounts>,
    ) -> Result<Self, String> {
        let base = settings.public_url.trim_end_matches('/');
        let mut providers = Vec::new();
        for p in settings.providers {
            if providers
                .iter()
                .any(|q: &Arc<Provider>| q.settings.id == p.id)
            {
                return Err(format!("two sign-in providers use the id {:?}", p.id));
            }
            let redirect = RedirectUrl::new(format!("{base}/api/oauth/{}/callback", p.id))
                .map_err(|e| format!("public URL {base:?}: {e}"))?;
            match &p.kind {
                ProviderKind::GitHub {
                    auth_url,
                    token_url,
                    api_url,
                } => {
                    for url in [auth_url, token_url, api_url] {
                        oauth2::url::Url::parse(url)
                            .map_err(|e| format!("GitHub URL {url:?}: {e}"))?;
                    }
                }
                ProviderKind::Oidc { issuer } => {
                    IssuerUrl::new(issuer.clone())
                        .map_err(|e| format!("issuer of {:?}: {e}", p.id))?;
                }
            }
            providers.push(Arc::new(Provider {
                settings: p,
                redirect,
                discovery: Default::default(),
            }));
        }
        let http = reqwest::Client::builder()
            // Redirects are not followed: a provider's endpoints are exact (and SSRF stays shut).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .user_agent(concat!("courier/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            providers,
            seal: FlowSeal::new(secret),
            http,
            accounts,
        })
    }

    /// `(id, display name)` of every configured provider, in configuration order.
    pub fn providers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.providers
            .iter()
            .map(|p| (p.settings.id.as_str(), p.settings.name.as_str()))
    }

    /// Fetches every OIDC discovery document in the background. A provider that is down is
    /// only logged: it is tried again when someone signs in through it.
    pub fn warm_up(self: &Arc<Self>) {
        for provider in &self.providers {
            if let ProviderKind::Oidc { issuer } = &provider.settings.kind {
                let (this, provider, issuer) = (self.clone(), provider.clone(), issuer.clone());
                tokio::spawn(async move {
                    match this.metadata(&provider).await {
                        Ok(_) => {
                            tracing::info!(provider = %provider.settings.id, %issuer, "OpenID provider discovered")
                        }
                        Err(_) => {
                            tracing::warn!(provider = %provider.settings.id, %issuer, "OpenID provider not reachable yet; will retry on first sign-in")
                        }
                    }
                });
            }
        }
    }

    /// Begins a sign-in: the provider's authorization URL and the flow state to keep.
    #[tracing::instrument(skip_all, fields(provider = provider_id))]
    pub async fn start(
        &self,
        provider_id: &str,
        return_to: Option<&str>,
    ) -> Result<Started, OAuthError> {
        let provider = self.provider(provider_id)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let return_to = return_to
            .and_then(safe_return_path)
            .unwrap_or_else(|| "/".to_owned());
        let (url, state, nonce) = match &provider.settings.kind {
            ProviderKind::GitHub { .. } => {
                let client = github_client(provider)?;
                let (url, state) = client
                    .authorize_url(CsrfToken::new_random)
                    .add_scope(oauth2::Scope::new("read:user".into()))
                    .add_scopes(scopes(&provider.settings.scopes))
                    .set_pkce_challenge(challenge)
                    .url();
                (url, state, None)
            }
            ProviderKind::Oidc { .. } => {
                let client = self.oidc_client(provider).await?;
                let (url, state, nonce) = client
                    .authorize_url(
                        CoreAuthenticationFlow::AuthorizationCode,
                        CsrfToken::new_random,
                        Nonce::new_random,
                    )
                    .add_scope(Scope::new("profile".into()))
                    .add_scopes(scopes(&provider.settings.scopes))
                    .set_pkce_challenge(challenge)
                    .url();
                (url, state, Some(nonce.secret().clone()))
            }
        };
        let flow = FlowState {
            id: FlowState::new_id(),
            provider: provider.settings.id.clone(),
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
            nonce,
            return_to,
            expires: chrono::Utc::now().timestamp() + FLOW_LIFETIME.as_secs() as i64,
        };
        Ok(Started {
            redirect: url.to_string(),
            flow: self.seal(&flow),
        })
    }

    /// Finishes a sign-in: checks the flow state against the callback, exchanges the code
    /// (with the PKCE verifier), verifies who the provider vouches for, and opens a session.
    #[tracing::instrument(skip_all, fields(provider = provider_id))]
    pub async fn finish(
        &self,
        provider_id: &str,
        flow: Option<&str>,
        params: &CallbackParams,
        device: &str,
    ) -> Result<Finished, OAuthError> {
        let provider = self.provider(provider_id)?;
        let flow = self.open(flow.ok_or(OAuthError::InvalidFlow(
            "this sign-in has no state here (expired, or cookies are off); start again",
        ))?)?;
        if flow.provider != provider.settings.id {
            return Err(OAuthError::InvalidFlow(
                "this sign-in was started with another provider; start again",
            ));
        }
        let state_matches = params
            .state
            .as_deref()
            .is_some_and(|s| constant_time_eq(s.as_bytes(), flow.state.as_bytes()));
        if !state_matches {
            return Err(OAuthError::InvalidFlow(
                "the sign-in state does not match; start again",
            ));
        }
        // Spent before anything else is done with it: a replayed callback (the same cookie,
        // state and code, on this node or another) is refused like an expired flow.
        if flow.id.is_empty() {
            return Err(OAuthError::InvalidFlow(
                "the sign-in state is not valid; start again",
            ));
        }
        let expires =
            chrono::DateTime::from_timestamp(flow.expires, 0).unwrap_or_else(chrono::Utc::now);
        if !self.accounts.spend_oauth_flow(&flow.id, expires).await? {
            tracing::warn!("a sign-in flow was replayed");
            return Err(OAuthError::InvalidFlow(
                "this sign-in was already used; start again",
            ));
        }
        if let Some(error) = &params.error {
            return Err(OAuthError::Denied(error_code(error)));
        }
        if flow.verifier.is_empty() {
            return Err(OAuthError::InvalidFlow(
                "the sign-in state has no PKCE verifier; start again",
            ));
        }
        let code = match params.code.as_deref() {
            Some(code) if !code.is_empty() => AuthorizationCode::new(code.to_owned()),
            _ => return Err(OAuthError::InvalidFlow("the provider sent no code")),
        };
        let verifier = PkceCodeVerifier::new(flow.verifier.clone());
        let identity = match &provider.settings.kind {
            ProviderKind::GitHub { api_url, .. } => {
                self.github_identity(provider, api_url, code, verifier)
                    .await?
            }
            ProviderKind::Oidc { issuer } => {
                // RFC 9207: a response that names another issuer is a mix-up attack.
                if params.iss.as_deref().is_some_and(|iss| iss != issuer) {
                    tracing::warn!("callback names another issuer");
                    return Err(OAuthError::Rejected);
                }
                let nonce = flow.nonce.clone().ok_or(OAuthError::InvalidFlow(
                    "the sign-in state has no nonce; start again",
                ))?;
                self.oidc_identity(provider, code, verifier, Nonce::new(nonce))
                    .await?
            }
        };
        let signed_in = self
            .accounts
            .sign_in_external(
                &provider.settings.id,
                &identity.subject,
                &identity.username,
                identity.avatar_url.as_deref(),
                device,
            )
            .await?;
        Ok(Finished {
            signed_in,
            return_to: flow.return_to,
        })
    }

    /// Seals a flow state for the cookie (public so tests can forge well-sealed states).
    pub fn seal(&self, flow: &FlowState) -> String {
        self.seal.seal(flow)
    }

    pub fn open(&self, sealed: &str) -> Result<FlowState, OAuthError> {
        self.seal.open(sealed)
    }

    fn provider(&self, id: &str) -> Result<&Arc<Provider>, OAuthError> {
        self.providers
            .iter()
            .find(|p| p.settings.id == id)
            .ok_or(OAuthError::UnknownProvider)
    }

    async fn github_identity(
        &self,
        provider: &Provider,
        api_url: &str,
        code: AuthorizationCode,
        verifier: PkceCodeVerifier,
    ) -> Result<Identity, OAuthError> {
        let token = github_client(provider)?
            .exchange_code(code)
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            // Display only: the Debug form of a parse error holds the response body.
            .map_err(|e| rejected("code exchange", &e))?;
        let user: GitHubUser = self
            .http
            .get(format!("{}/user", api_url.trim_end_matches('/')))
            .bearer_auth(token.access_token().secret())
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| unreachable_or_rejected("GitHub user", &e))?
            .json()
            .await
            .map_err(|e| rejected("GitHub user", &e))?;
        Ok(Identity {
            subject: user.id.to_string(),
            username: user.login,
            avatar_url: user.avatar_url.filter(|u| u.starts_with("https://")),
        })
    }

    async fn oidc_identity(
        &self,
        provider: &Provider,
        code: AuthorizationCode,
        verifier: PkceCodeVerifier,
        nonce: Nonce,
    ) -> Result<Identity, OAuthError> {
        let client = self.oidc_client(provider).await?;
        let response = client
            .exchange_code(code)
            .map_err(|e| rejected("token endpoint", &e))?
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| rejected("code exchange", &e))?;
        let id_token = response.id_token().ok_or_else(|| {
            tracing::warn!("the token response has no ID token");
            OAuthError::Rejected
        })?;
        // Signature (keys from discovery), issuer, audience, expiry and nonce.
        let verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &nonce)
            .map_err(|e| rejected("ID token", &e))?;
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(|e| rejected("ID token", &e))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| rejected("ID token", &e))?;
            let actual =
                openidconnect::AccessTokenHash::from_token(response.access_token(), alg, key)
                    .map_err(|e| rejected("ID token", &e))?;
            if actual != *expected {
                tracing::warn!("the ID token's at_hash does not match the access token");
                return Err(OAuthError::Rejected);
            }
        }
        let subject = claims.subject().clone();
        let mut username = claims.preferred_username().map(|u| u.to_string());
        let mut avatar = claims
            .picture()
            .and_then(|p| p.get(None))
            .map(|p| p.to_string());
        // Many providers keep profile claims out of the ID token: ask the userinfo endpoint.
        if username.is_none() && client.user_info_url().is_some() {
            let info: CoreUserInfoClaims = client
                .user_info(
                    AccessToken::new(response.access_token().secret().clone()),
                    Some(subject.clone()),
                )
                .map_err(|e| rejected("userinfo", &e))?
                .request_async(&self.http)
                .await
                .map_err(|e| rejected("userinfo", &e))?;
            username = info.preferred_username().map(|u| u.to_string());
            avatar = avatar.or_else(|| {
                info.picture()
                    .and_then(|p| p.get(None))
                    .map(|p| p.to_string())
            });
            if username.is_none() {
                username = info.name().and_then(|n| n.get(None)).map(|n| n.to_string());
            }
        }
        let username = username
            .or_else(|| {
                claims
                    .name()
                    .and_then(|n| n.get(None))
                    .map(|n| n.to_string())
            })
            .or_else(|| {
                claims
                    .email()
                    .map(|e| e.split('@').next().unwrap_or("").to_owned())
            })
            .unwrap_or_else(|| "user".to_owned());
        Ok(Identity {
            subject: subject.to_string(),
            username,
            avatar_url: avatar.filter(|u| u.starts_with("https://")),
        })
    }

    async fn oidc_client(&self, provider: &Provider) -> Result<OidcClient, OAuthError> {
        let metadata = self.metadata(provider).await?;
        // HTTP Basic is the default (and what a provider that names no method supports); use
        // the form body only for a provider that offers that and not Basic.
        let post_only = metadata
            .token_endpoint_auth_methods_supported()
            .is_some_and(|methods| {
                !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                    && methods.contains(&CoreClientAuthMethod::ClientSecretPost)
            });
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(provider.settings.client_id.clone()),
            Some(ClientSecret::new(provider.settings.client_secret.clone())),
        )
        .set_redirect_uri(provider.redirect.clone());
        Ok(if post_only {
            client.set_auth_type(oauth2::AuthType::RequestBody)
        } else {
            client
        })
    }

    /// The discovery document, fetched at most once per `DISCOVERY_TTL`; after a failure the
    /// next sign-in tries again. The lock makes concurrent sign-ins share one fetch.
    async fn metadata(&self, provider: &Provider) -> Result<CoreProviderMetadata, OAuthError> {
        let ProviderKind::Oidc { issuer } = &provider.settings.kind else {
            return Err(OAuthError::UnknownProvider);
        };
        let mut discovery = provider.discovery.lock().await;
        if let Some((metadata, at)) = &discovery.metadata
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(issuer.clone()).map_err(|_| OAuthError::UnknownProvider)?;
        match CoreProviderMetadata::discover_async(issuer, &self.http).await {
            Ok(metadata) => {
                discovery.metadata = Some((metadata.clone(), Instant::now()));
                Ok(metadata)
            }
            Err(e) => {
                // Discovery carries no secret, so its whole cause chain may be logged.
                let mut cause = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(inner) = source {
                    cause.push_str(&format!(": {inner}"));
                    source = inner.source();
                }
                tracing::warn!(provider = %provider.settings.id, error = %cause, "OpenID discovery failed");
                stale_or_unavailable(&discovery)
            }
        }
    }
}

/// Encrypts flow states with a key derived from the token secret, so every node that shares
/// the secret can open what another sealed, and nobody else can read or change them.
pub struct FlowSeal {
    cipher: Aes256Gcm,
}

/// Bytes of the random AES-GCM nonce put in front of every sealed state.
const SEAL_NONCE: usize = 12;

impl FlowSeal {
    pub fn new(secret: &[u8]) -> Self {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"courier oauth flow"), secret)
            .expand(b"courier oauth flow state v2 aes-256-gcm", &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self {
            cipher: Aes256Gcm::new_from_slice(&key).expect("32-byte key"),
        }
    }

    /// `base64url(nonce ‖ AES-256-GCM(key, nonce, json))`, with a fresh random 96-bit nonce.
    pub fn seal(&self, flow: &FlowState) -> String {
        let json = serde_json::to_vec(flow).expect("flow state serialises");
        let nonce: [u8; SEAL_NONCE] = rand::random();
        let sealed = self
            .cipher
            .encrypt(&nonce.into(), json.as_slice())
            .expect("AES-GCM encrypts a small message");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    /// The flow state in a sealed value, if it decrypts (so was sealed with this key and not
    /// changed) and has not expired. Whether it was spent already is the caller's check.
    pub fn open(&self, sealed: &str) -> Result<FlowState, OAuthError> {
        let forged = || OAuthError::InvalidFlow("the sign-in state is not valid; start again");
        let raw = B64.decode(sealed).map_err(|_| forged())?;
        if raw.len() < SEAL_NONCE {
            return Err(forged());
        }
        let (nonce, body) = raw.split_at(SEAL_NONCE);
        let nonce: [u8; SEAL_NONCE] = nonce.try_into().expect("split at the nonce length");
        let json = self
            .cipher
            .decrypt(&nonce.into(), body)
            .map_err(|_| forged())?;
        let flow: FlowState = serde_json::from_slice(&json).map_err(|_| forged())?;
        if flow.expires < chrono::Utc::now().timestamp() {
            return Err(OAuthError::InvalidFlow(
                "this sign-in took too long; start again",
            ));
        }
        Ok(flow)
    }
}

/// A provider that is briefly down keeps working with the document it last served.
fn stale_or_unavailable(discovery: &Discovery) -> Result<CoreProviderMetadata, OAuthError> {
    discovery
        .metadata
        .as_ref()
        .map(|(m, _)| m.clone())
        .ok_or(OAuthError::Unavailable)
}

struct Identity {
    subject: String,
    username: String,
    avatar_url: Option<String>,
}

#[derive(Deserialize)]
struct GitHubUser {
    id: u64,
    login: String,
    avatar_url: Option<String>,
}

type GitHubClient = oauth2::basic::BasicClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

fn github_client(provider: &Provider) -> Result<GitHubClient, OAuthError> {
    let ProviderKind::GitHub {
        auth_url,
        token_url,
        ..
    } = &provider.settings.kind
    else {
        return Err(OAuthError::UnknownProvider);
    };
    // Checked in `OAuth::new`, so these parse.
    let auth = oauth2::AuthUrl::new(auth_url.clone()).map_err(|_| OAuthError::UnknownProvider)?;
    let token =
        oauth2::TokenUrl::new(token_url.clone()).map_err(|_| OAuthError::UnknownProvider)?;
    Ok(
        oauth2::basic::BasicClient::new(ClientId::new(provider.settings.client_id.clone()))
            .set_client_secret(ClientSecret::new(provider.settings.client_secret.clone()))
            .set_auth_uri(auth)
            .set_token_uri(token)
            .set_redirect_uri(provider.redirect.clone())
            // GitHub documents the client credentials in the form body.
            .set_auth_type(oauth2::AuthType::RequestBody),
    )
}

fn scopes(extra: &[String]) -> impl Iterator<Item = Scope> + '_ {
    extra.iter().map(|s| Scope::new(s.clone()))
}

/// Logs why a provider's answer was refused. Only the error's own message is logged, never
/// its Debug form or source chain: those can hold response bodies, and so tokens.
fn rejected(what: &str, error: &dyn std::fmt::Display) -> OAuthError {
    tracing::warn!(%error, "{what} refused");
    OAuthError::Rejected
}

fn unreachable_or_rejected(what: &str, error: &reqwest::Error) -> OAuthError {
    if error.is_connect() || error.is_timeout() {
        tracing::warn!(%error, "{what}: provider unreachable");
        OAuthError::Unavailable
    } else {
        rejected(what, error)
    }
}

/// The provider's `error` value, reduced to the characters RFC 6749 allows in an error code.
fn error_code(raw: &str) -> String {
    let code: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    if code.is_empty() {
        "error".to_owned()
    } else {
        code
    }
}

/// A same-origin path to land on after sign-in: `/…` but never `//…` or `/\…` (which a
/// browser reads as another host), printable ASCII only, and not an API route. Dot segments,
/// plain or percent-encoded (`/./api/…`, `/%2e%2e/api/…`), are resolved first, as the
/// browser will resolve them, so they cannot smuggle an API route past the check.
pub fn safe_return_path(raw: &str) -> Option<String> {
    if !raw.starts_with('/')
        || raw.len() > 512
        || !raw.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'\\')
    {
        return None;
    }
    let (path, rest) = raw.split_at(raw.find(['?', '#']).unwrap_or(raw.len()));
    let path = path.replace("%2e", ".").replace("%2E", ".");
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
        if last && matches!(*segment, "." | "..") {
            kept.push("");
        }
    }
    let normalized = format!("/{}{rest}", kept.join("/"));
    let ok = !normalized.starts_with("//")
        && normalized != "/api"
        && !normalized.starts_with("/api/")
        && !normalized.starts_with("/api?")
        && !normalized.starts_with("/api#");
    ok.then_some(normalized)
}

impl FlowState {
    /// A fresh flow id: 128 random bits, base64url.
    pub fn new_id() -> String {
        B64.encode(rand::random::<[u8; 16]>())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> FlowState {
        FlowState {
            id: "flow-id".into(),
            provider: "github".into(),
            state: "st".into(),
            verifier: "v".into(),
            nonce: None,
            return_to: "/".into(),
            expires: chrono::Utc::now().timestamp() + 60,
        }
    }

    #[test]
    fn a_sealed_flow_opens_with_its_key_only() {
        let seal = FlowSeal::new(b"secret-one-secret-one-secret-one");
        let sealed = seal.seal(&flow());
        assert_eq!(seal.open(&sealed).unwrap(), flow());
        let other = FlowSeal::new(b"secret-two-secret-two-secret-two");
        assert!(other.open(&sealed).is_err());
    }

    #[test]
    fn a_tampered_or_expired_flow_is_refused() {
        let seal = FlowSeal::new(b"secret-one-secret-one-secret-one");
        let sealed = seal.seal(&flow());
        let raw = B64.decode(&sealed).unwrap();
        // Any one bit flipped anywhere (nonce, ciphertext or tag) breaks it.
        for i in 0..raw.len() {
            let mut changed = raw.clone();
            changed[i] ^= 0x01;
            assert!(seal.open(&B64.encode(&changed)).is_err(), "byte {i}");
        }
        assert!(seal.open(&B64.encode(&raw[..raw.len() - 1])).is_err());
        assert!(seal.open(&B64.encode(&raw[..SEAL_NONCE])).is_err());
        assert!(seal.open(&format!("{sealed}.x")).is_err());
        assert!(seal.open("").is_err());
        // The old signed-JSON format is not accepted either.
        let plain = B64.encode(serde_json::to_vec(&flow()).unwrap());
        assert!(seal.open(&plain).is_err());
        let expired = FlowState {
            expires: chrono::Utc::now().timestamp() - 1,
            ..flow()
        };
        assert!(seal.open(&seal.seal(&expired)).is_err());
    }

    #[test]
    fn a_sealed_flow_shows_none_of_its_secrets() {
        let seal = FlowSeal::new(b"secret-one-secret-one-secret-one");
        let (_, verifier) = PkceCodeChallenge::new_random_sha256();
        let secret = FlowState {
            verifier: verifier.secret().clone(),
            state: "state-4b1d0c2e9f7a".into(),
            nonce: Some("nonce-77e0a1f3c5d9".into()),
            ..flow()
        };
        let sealed = seal.seal(&secret);
        let raw = B64.decode(&sealed).unwrap();
        // Neither the cookie itself nor any decoding of it (whole, or after the nonce, in
        // any base64 alphabet) shows the verifier, state or nonce.
        let mut views: Vec<Vec<u8>> = vec![sealed.clone().into_bytes(), raw.clone()];
        for engine in [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE,
        ] {
            views.push(engine.encode(&raw).into_bytes());
        }
        for skip in 0..=SEAL_NONCE {
            views.push(raw[skip..].to_vec());
            views.push(
                String::from_utf8_lossy(&raw[skip..])
                    .into_owned()
                    .into_bytes(),
            );
        }
        for view in &views {
            for needle in [
                secret.verifier.as_bytes(),
                &secret.verifier.as_bytes()[..16],
                b"state-4b1d0c2e9f7a",
                b"nonce-77e0a1f3c5d9",
            ] {
                assert!(
                    !view.windows(needle.len()).any(|w| w == needle),
                    "a secret shows in the sealed cookie"
                );
            }
        }
        // Two seals of the same state differ (fresh nonce), and both open.
        let again = seal.seal(&secret);
        assert_ne!(sealed, again);
        assert_eq!(seal.open(&again).unwrap(), secret);
        assert_eq!(seal.open(&sealed).unwrap(), secret);
    }

    #[test]
    fn flow_ids_are_random() {
        let a = FlowState::new_id();
        assert_eq!(a.len(), 22);
        assert_ne!(a, FlowState::new_id());
    }

    #[test]
    fn only_same_origin_paths_are_return_paths() {
        for ok in ["/", "/c/12", "/c/12?x=1#y"] {
            assert_eq!(safe_return_path(ok).as_deref(), Some(ok));
        }
        assert_eq!(safe_return_path("/c/./12").as_deref(), Some("/c/12"));
        assert_eq!(safe_return_path("/c/x/../12").as_deref(), Some("/c/12"));
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "evil",
            "/a b",
            "/api/logout",
            "/x\\y",
            "",
            "/./api/logout",
            "/%2e/api/logout",
            "/%2E%2e/api/logout",
            "/c/../api/sessions",
            "/c/%2e%2e/api",
            "/.//evil.example",
            "/%2e//evil.example",
        ] {
            assert_eq!(safe_return_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn provider_error_codes_are_reduced_to_safe_characters() {
        assert_eq!(error_code("access_denied"), "access_denied");
        assert_eq!(error_code("<script>"), "script");
        assert_eq!(error_code("%%"), "error");
    }
}
